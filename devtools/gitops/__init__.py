"""GitOps tooling: rendering and linting manifests, sealing secrets, images, cluster bootstrap."""
