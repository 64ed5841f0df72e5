"""Which Secrets the platform needs, where their plaintext and keys live, and writing them as SealedSecrets.

.secrets/<cluster>.env                      plaintext values (git-ignored, mode 0600)
~/.config/moviestream/<cluster>/sealing-key.pem   the controller's private key (never in git)
sealed-secrets/<cluster>/sealing-cert.pem   its public certificate (committed)
sealed-secrets/<cluster>/*-sealedsecret.yaml  what Argo CD deploys (committed)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
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
}
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

    @property
    def certificate(self) -> Path:
        return self.sealed_dir / "sealing-cert.pem"

    @property
    def private_key(self) -> Path:
        base = Path(os.environ.get("MOVIESTREAM_KEYS_DIR") or Path.home() / ".config" / "moviestream")
        return base / self.cluster / "sealing-key.pem"


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
    return {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "annotations": {"argocd.argoproj.io/sync-wave": SYNC_WAVE},
        },
        "spec": {
            "encryptedData": dict(sorted(encrypted.items())),
            "template": {
                "metadata": {
                    "name": name,
                    "namespace": NAMESPACE,
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
        return sealing.unseal(private_key, NAMESPACE, name, previous) == value
    except (ValueError, SealingError):
        return False


def seal_all(paths: ClusterPaths) -> list[Path]:
    """Seal every catalog Secret from the values file (completing it first); return the files written.

    A value that has not changed keeps its old ciphertext when the private
    key is at hand, so re-running this leaves git clean.
    """
    certificate = sealing.load_certificate(paths.certificate)
    existing = parse_values(paths.values.read_text(), str(paths.values)) if paths.values.exists() else {}
    values, added = complete_values(existing)
    if added or not paths.values.exists():
        paths.values.parent.mkdir(parents=True, exist_ok=True)
        paths.values.touch(mode=0o600)
        paths.values.write_text(render_values(values))
        paths.values.chmod(0o600)
    private_key = sealing.load_private_key(paths.private_key) if paths.private_key.exists() else None
    written = []
    for name, keys in CATALOG.items():
        target = paths.sealed_dir / f"{name}-sealedsecret.yaml"
        previous = _previous(target)
        encrypted = {}
        for key, entry in keys.items():
            value = values[entry.variable].encode()
            old = previous.get(key)
            encrypted[key] = (
                old if _unchanged(private_key, name, old, value) else sealing.seal(certificate, NAMESPACE, name, value)
            )
        target.write_text(yaml.safe_dump(sealed_secret(name, encrypted), sort_keys=False, width=1_000_000))
        written.append(target)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(path.name for path in written),
    }
    (paths.sealed_dir / "kustomization.yaml").write_text(
        "# Written by `invoke seal-secrets`.\n" + yaml.safe_dump(kustomization, sort_keys=False)
    )
    return written


def create_key_pair(paths: ClusterPaths, *, force: bool) -> bool:
    """Write a new key pair unless one exists; True if one was written."""
    if paths.private_key.exists() and not force:
        return False
    pair = sealing.new_key_pair()
    paths.private_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths.private_key.touch(mode=0o600)
    paths.private_key.write_bytes(pair.private_key_pem)
    paths.private_key.chmod(0o600)
    paths.sealed_dir.mkdir(parents=True, exist_ok=True)
    paths.certificate.write_bytes(pair.certificate_pem)
    return True
