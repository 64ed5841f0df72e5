"""The code behind tasks.py, grouped by job: gitops/ (manifests, lint, sealing, images, cluster
bootstrap), stack/ (the services as local processes), bench/, loadtest/, e2e/, and testing/
(helpers the test suites share)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
