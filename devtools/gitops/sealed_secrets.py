"""Which Secrets the platform needs, where their plaintext and keys live, and writing them as SealedSecrets.

.secrets/<cluster>.env                      plaintext values (git-ignored, mode 0600)
~/.config/moviestream/<cluster>/sealing-key.pem   the controller's private key (never in git)
~/.config/moviestream/<cluster>/sealing-cert.pem  its certificate, kept with it
~/.config/moviestream/<cluster>/sealing-key-<fingerprint>{.pem,.crt.pem}  pairs replaced by --force
sealed-secrets/<cluster>/sealing-cert.pem   the certificate, committed
sealed-secrets/<cluster>/*-sealedsecret.yaml  what Argo CD deploys into namespace moviestream (committed)
sealed-secrets/<cluster>/<namespace>/*-sealedsecret.yaml  the same for another namespace (observability)
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from devtools import ROOT
from devtools.gitops import sealing
from devtools.gitops.sealing import SealingError

NAMESPACE = "moviestream"
MAX_VALUE_LENGTH = 4096
SYNC_WAVE = "0"  # after the namespace, before the databases that read them


@dataclass(frozen=True)
class Entry:
    variable: str
    default: str | None  # None: a random password when missing


# SealedSecret name -> key in the Secret -> where its value comes from
CATALOG: dict[str, dict[str, Entry]] = {
    "inventory-db": {
        "username": Entry("INVENTORY_DB_USERNAME", "inventory"),
        "password": Entry("INVENTORY_DB_PASSWORD", None),
    },
    "billing-db": {
        "username": Entry("BILLING_DB_USERNAME", "billing"),
        "password": Entry("BILLING_DB_PASSWORD", None),
    },
    "rabbitmq": {
        "username": Entry("RABBITMQ_USERNAME", "moviestream"),
        "password": Entry("RABBITMQ_PASSWORD", None),
    },
    "grafana-admin": {
        "admin-user": Entry("GRAFANA_ADMIN_USER", "admin"),
        "admin-password": Entry("GRAFANA_ADMIN_PASSWORD", None),
    },
}
# The Secrets that live outside NAMESPACE, each sealed for its own namespace
# and written to sealed-secrets/<cluster>/<namespace>/.
NAMESPACES = {"grafana-admin": "observability"}
VARIABLES = {entry.variable for keys in CATALOG.values() for entry in keys.values()}
LINE = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


@dataclass(frozen=True)
class ClusterPaths:
    cluster: str
    root: Path = ROOT

    @property
    def values(self) -> Path:
        return self.root / ".secrets" / f"{self.cluster}.env"

    @property
    def sealed_dir(self) -> Path:
        return self.root / "sealed-secrets" / self.cluster

    def directory_of(self, name: str) -> Path:
        """Where the SealedSecret `name` is written: one kustomization per namespace."""
        namespace = namespace_of(name)
        return self.sealed_dir if namespace == NAMESPACE else self.sealed_dir / namespace

    @property
    def certificate(self) -> Path:
        return self.sealed_dir / "sealing-cert.pem"

    @property
    def keys_dir(self) -> Path:
        base = Path(os.environ.get("MOVIESTREAM_KEYS_DIR") or Path.home() / ".config" / "moviestream")
        return base / self.cluster

    @property
    def private_key(self) -> Path:
        return self.keys_dir / "sealing-key.pem"

    @property
    def kept_certificate(self) -> Path:
        return self.keys_dir / "sealing-cert.pem"


def namespace_of(name: str) -> str:
    return NAMESPACES.get(name, NAMESPACE)


def key_secret_name(certificate: x509.Certificate) -> str:
    """The controller's key Secret, named by the key: a new key is a new Secret, and old keys stay."""
    return f"sealed-secrets-key-{sealing.fingerprint(certificate)[:16]}"


def parse_values(text: str, source: str) -> dict[str, str]:
    """KEY=value lines; blank lines and # comments are skipped. Anything else is an error naming the line."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = LINE.match(line)
        if not match:
            raise SealingError(f"{source}:{number}: expected NAME=value, got {raw!r}")
        name, value = match["name"], match["value"]
        if name not in VARIABLES:
            raise SealingError(f"{source}:{number}: unknown variable {name}; known: {', '.join(sorted(VARIABLES))}")
        if name in values:
            raise SealingError(f"{source}:{number}: {name} is set twice")
        if len(value) > MAX_VALUE_LENGTH:
            raise SealingError(f"{source}:{number}: the value of {name} is longer than {MAX_VALUE_LENGTH} characters")
        if value:
            values[name] = value
    return values


def complete_values(values: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Fill in what is missing: defaults for names, random passwords. Returns the values and what was added."""
    completed = dict(values)
    added = []
    for keys in CATALOG.values():
        for entry in keys.values():
            if entry.variable not in completed:
                completed[entry.variable] = entry.default if entry.default is not None else sealing.random_password()
                added.append(entry.variable)
    return completed, added


def render_values(values: dict[str, str]) -> str:
    lines = ["# Plaintext values for `invoke seal-secrets`. Never commit this file.", ""]
    lines += [f"{name}={values[name]}" for name in sorted(values)]
    return "\n".join(lines) + "\n"


def sealed_secret(name: str, encrypted: dict[str, str]) -> dict:
    namespace = namespace_of(name)
    return {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {"argocd.argoproj.io/sync-wave": SYNC_WAVE},
        },
        "spec": {
            "encryptedData": dict(sorted(encrypted.items())),
            "template": {
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {"app.kubernetes.io/part-of": "moviestream"},
                },
                "type": "Opaque",
            },
        },
    }


def _previous(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    document = yaml.safe_load(path.read_text()) or {}
    return (document.get("spec") or {}).get("encryptedData") or {}


def _unchanged(private_key: rsa.RSAPrivateKey | None, name: str, previous: str | None, value: bytes) -> bool:
    if private_key is None or previous is None:
        return False
    try:
        return sealing.unseal(private_key, namespace_of(name), name, previous) == value
    except (ValueError, SealingError):
        return False


def seal_all(paths: ClusterPaths) -> list[Path]:
    """Seal every catalog Secret from the values file (completing it first); return the files written.

    A value that has not changed keeps its old ciphertext when the private
    key is at hand, so re-running this leaves git clean. A private key that
    does not belong to the committed certificate is refused: what it can
    open, the cluster (which has the certificate's key) might not.
    """
    certificate = sealing.load_certificate(paths.certificate)
    private_key = sealing.load_private_key(paths.private_key) if paths.private_key.exists() else None
    if private_key is not None and not sealing.belongs_to(private_key, certificate):
        raise SealingError(
            f"{paths.private_key} does not belong to {paths.certificate}; "
            f"`invoke sealing-key --cluster {paths.cluster}` restores your key's certificate, "
            "or `--force` makes a new key (see the README's key rotation)"
        )
    existing = parse_values(paths.values.read_text(), str(paths.values)) if paths.values.exists() else {}
    values, added = complete_values(existing)
    if added or not paths.values.exists():
        paths.values.parent.mkdir(parents=True, exist_ok=True)
        paths.values.touch(mode=0o600)
        paths.values.write_text(render_values(values))
        paths.values.chmod(0o600)
    written = [_seal_one(paths, name, values, certificate, private_key) for name in CATALOG]
    for directory in sorted({path.parent for path in written}):
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": sorted(path.name for path in written if path.parent == directory),
        }
        (directory / "kustomization.yaml").write_text(
            "# Written by `invoke seal-secrets`.\n" + yaml.safe_dump(kustomization, sort_keys=False)
        )
    return written


def _seal_one(
    paths: ClusterPaths,
    name: str,
    values: dict[str, str],
    certificate: x509.Certificate,
    private_key: rsa.RSAPrivateKey | None,
) -> Path:
    target = paths.directory_of(name) / f"{name}-sealedsecret.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    previous = _previous(target)
    encrypted = {}
    for key, entry in CATALOG[name].items():
        value = values[entry.variable].encode()
        old = previous.get(key)
        encrypted[key] = (
            old
            if _unchanged(private_key, name, old, value)
            else sealing.seal(certificate, namespace_of(name), name, value)
        )
    target.write_text(yaml.safe_dump(sealed_secret(name, encrypted), sort_keys=False, width=1_000_000))
    return target


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600)
    path.write_bytes(data)
    path.chmod(0o600)


def _matching(path: Path, private_key: rsa.RSAPrivateKey) -> bytes | None:
    """The certificate at `path` if it is the key's, else None."""
    if not path.exists():
        return None
    try:
        certificate = sealing.load_certificate(path)
    except SealingError:
        return None
    return path.read_bytes() if sealing.belongs_to(private_key, certificate) else None


KEY_CREATED, KEY_KEPT, CERTIFICATE_RESTORED = "created", "kept", "certificate restored"


def create_key_pair(paths: ClusterPaths, *, force: bool) -> str:
    """Make sure the cluster has a key pair, its certificate in the checkout; say what was done.

    An existing key is always kept (its certificate is written into the
    checkout if that holds another); --force makes a new one and keeps the
    old pair beside it under its fingerprint.
    """
    if paths.private_key.exists() and not force:
        private_key = sealing.load_private_key(paths.private_key)
        kept = _matching(paths.kept_certificate, private_key) or _matching(paths.certificate, private_key)
        if kept is None:
            raise SealingError(
                f"no certificate for {paths.private_key} (neither {paths.kept_certificate} nor {paths.certificate}); "
                "restore it, or make a new key with --force"
            )
        paths.kept_certificate.write_bytes(kept)
        if _matching(paths.certificate, private_key) is None:
            paths.sealed_dir.mkdir(parents=True, exist_ok=True)
            paths.certificate.write_bytes(kept)
            return CERTIFICATE_RESTORED
        return KEY_KEPT
    if paths.private_key.exists():
        old_key = sealing.load_private_key(paths.private_key)
        old_certificate = _matching(paths.kept_certificate, old_key) or _matching(paths.certificate, old_key)
        if old_certificate is not None:
            stem = f"sealing-key-{sealing.fingerprint(x509.load_pem_x509_certificate(old_certificate))[:16]}"
            (paths.keys_dir / f"{stem}.crt.pem").write_bytes(old_certificate)
        else:
            stem = f"sealing-key-replaced-{int(paths.private_key.stat().st_mtime)}"
        _write_private(paths.keys_dir / f"{stem}.pem", paths.private_key.read_bytes())
    pair = sealing.new_key_pair()
    _write_private(paths.private_key, pair.private_key_pem)
    paths.kept_certificate.write_bytes(pair.certificate_pem)
    paths.sealed_dir.mkdir(parents=True, exist_ok=True)
    paths.certificate.write_bytes(pair.certificate_pem)
    return KEY_CREATED


def commit_sealed(paths: ClusterPaths, message: str) -> bool:
    """Commit sealed-secrets/<cluster>/ alone, if it changed; True if a commit was made."""
    relative = str(paths.sealed_dir.relative_to(paths.root))
    git = ["git", "-C", str(paths.root)]
    subprocess.run([*git, "add", "--", relative], check=True)
    staged = subprocess.run([*git, "diff", "--cached", "--quiet", "--", relative], check=False)
    if staged.returncode == 0:
        return False
    identity = subprocess.run([*git, "config", "user.email"], capture_output=True, text=True, check=False)
    if not identity.stdout.strip():  # a fresh machine: say who made it rather than fail
        git += ["-c", "user.name=moviestream tasks", "-c", "user.email=tasks@moviestream.invalid"]
    subprocess.run([*git, "commit", "--quiet", "-m", message, "--", relative], check=True)
    return True
