"""invoke seal-secrets: the controller's format, strict scope, the values file, and no churn."""

from __future__ import annotations

import base64
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devtools.gitops import sealed_secrets, sealing
from devtools.gitops.sealed_secrets import CATALOG, ClusterPaths, namespace_of
from devtools.gitops.sealing import SealingError
from devtools.testing.tools import needs_tool


@pytest.fixture(scope="module")
def key_pair() -> sealing.KeyPair:
    return sealing.new_key_pair()


@pytest.fixture
def paths(tmp_path: Path, key_pair: sealing.KeyPair, monkeypatch: pytest.MonkeyPatch) -> ClusterPaths:
    monkeypatch.setenv("MOVIESTREAM_KEYS_DIR", str(tmp_path / "keys"))
    paths = ClusterPaths("test", root=tmp_path)
    paths.sealed_dir.mkdir(parents=True)
    paths.certificate.write_bytes(key_pair.certificate_pem)
    return paths


def private_key(pair: sealing.KeyPair):
    return serialization.load_pem_private_key(pair.private_key_pem, password=None)


def certificate(pair: sealing.KeyPair) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pair.certificate_pem)


def sealed_files(paths: ClusterPaths) -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(paths.sealed_dir.rglob("*-sealedsecret.yaml"))}


def test_the_output_has_the_controllers_layout(key_pair: sealing.KeyPair) -> None:
    sealed = base64.b64decode(sealing.seal(certificate(key_pair), "ns", "name", b"secret value"))
    rsa_length = int.from_bytes(sealed[:2], "big")
    assert rsa_length == 512  # a 4096-bit RSA ciphertext
    assert len(sealed) == 2 + rsa_length + len(b"secret value") + 16  # GCM adds a 16-byte tag


def test_a_value_opens_only_under_its_own_namespace_and_name(key_pair: sealing.KeyPair) -> None:
    sealed = sealing.seal(certificate(key_pair), "moviestream", "rabbitmq", b"p@ss")
    assert sealing.unseal(private_key(key_pair), "moviestream", "rabbitmq", sealed) == b"p@ss"
    for namespace, name in [("moviestream", "billing-db"), ("default", "rabbitmq")]:
        with pytest.raises(ValueError, match="Decryption failed"):
            sealing.unseal(private_key(key_pair), namespace, name, sealed)


def test_sealing_twice_gives_different_ciphertexts(key_pair: sealing.KeyPair) -> None:
    cert = certificate(key_pair)
    assert sealing.seal(cert, "a", "b", b"same") != sealing.seal(cert, "a", "b", b"same")


def test_seal_secrets_writes_every_secret_and_they_decrypt_to_the_values(paths: ClusterPaths, key_pair) -> None:
    paths.values.parent.mkdir()
    paths.values.write_text("# mine\nRABBITMQ_PASSWORD=given-password\nBILLING_DB_USERNAME=biller\n")
    sealed_secrets.seal_all(paths)
    values = sealed_secrets.parse_values(paths.values.read_text(), "values")
    assert values["RABBITMQ_PASSWORD"] == "given-password"
    assert values["BILLING_DB_USERNAME"] == "biller"
    assert values["INVENTORY_DB_USERNAME"] == "inventory"
    assert len(values["INVENTORY_DB_PASSWORD"]) == 43
    assert values["INVENTORY_DB_PASSWORD"] != values["BILLING_DB_PASSWORD"]
    assert stat.S_IMODE(paths.values.stat().st_mode) == 0o600
    documents = sealed_files(paths)
    assert set(documents) == {f"{name}-sealedsecret.yaml" for name in CATALOG}
    for name, keys in CATALOG.items():
        document = documents[f"{name}-sealedsecret.yaml"]
        assert document["metadata"]["name"] == document["spec"]["template"]["metadata"]["name"] == name
        namespace = namespace_of(name)
        assert document["metadata"]["namespace"] == document["spec"]["template"]["metadata"]["namespace"] == namespace
        for key, entry in keys.items():
            opened = sealing.unseal(private_key(key_pair), namespace, name, document["spec"]["encryptedData"][key])
            assert opened.decode() == values[entry.variable]
    kustomization = yaml.safe_load((paths.sealed_dir / "kustomization.yaml").read_text())
    assert kustomization["resources"] == sorted(
        f"{name}-sealedsecret.yaml" for name in CATALOG if name != "grafana-admin"
    )


def test_a_secret_of_another_namespace_is_sealed_for_it_in_a_kustomization_of_its_own(
    paths: ClusterPaths, key_pair
) -> None:
    sealed_secrets.seal_all(paths)
    directory = paths.sealed_dir / "observability"
    assert yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"] == [
        "grafana-admin-sealedsecret.yaml"
    ]
    document = yaml.safe_load((directory / "grafana-admin-sealedsecret.yaml").read_text())
    assert document["metadata"]["namespace"] == "observability"
    values = sealed_secrets.parse_values(paths.values.read_text(), "values")
    encrypted = document["spec"]["encryptedData"]["admin-password"]
    opened = sealing.unseal(private_key(key_pair), "observability", "grafana-admin", encrypted)
    assert opened.decode() == values["GRAFANA_ADMIN_PASSWORD"]
    with pytest.raises(
        ValueError, match="Decryption failed"
    ):  # strict scope: the same value would not open as a Secret of moviestream
        sealing.unseal(private_key(key_pair), "moviestream", "grafana-admin", encrypted)


def test_resealing_with_the_key_at_hand_changes_only_what_changed(paths: ClusterPaths, key_pair) -> None:
    paths.private_key.parent.mkdir(parents=True)
    paths.private_key.write_bytes(key_pair.private_key_pem)
    sealed_secrets.seal_all(paths)
    before = sealed_files(paths)
    sealed_secrets.seal_all(paths)
    assert sealed_files(paths) == before
    paths.values.write_text(
        paths.values.read_text().replace("RABBITMQ_USERNAME=moviestream", "RABBITMQ_USERNAME=other")
    )
    sealed_secrets.seal_all(paths)
    after = sealed_files(paths)
    changed = {
        (file, key)
        for file, document in after.items()
        for key, value in document["spec"]["encryptedData"].items()
        if before[file]["spec"]["encryptedData"][key] != value
    }
    assert changed == {("rabbitmq-sealedsecret.yaml", "username")}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("RABBITMQ_PASSWORD\n", "values:1: expected NAME=value"),
        ("# ok\n\nexport RABBITMQ_PASSWORD=x\n", "values:3: expected NAME=value"),
        ("RABBITMQ_PASWORD=x\n", "values:1: unknown variable RABBITMQ_PASWORD"),
        ("RABBITMQ_PASSWORD=a\nRABBITMQ_PASSWORD=b\n", "values:2: RABBITMQ_PASSWORD is set twice"),
        ("RABBITMQ_PASSWORD=" + "x" * 4097 + "\n", "values:1: the value of RABBITMQ_PASSWORD is longer than 4096"),
    ],
)
def test_a_bad_values_file_is_refused_with_its_line_and_nothing_is_written(paths: ClusterPaths, text, message) -> None:
    paths.values.parent.mkdir()
    paths.values.write_text(text)
    with pytest.raises(SealingError, match=message.replace("(", r"\(")):
        sealed_secrets.parse_values(text, "values")
    with pytest.raises(SealingError):
        sealed_secrets.seal_all(paths)
    assert sealed_files(paths) == {}
    assert paths.values.read_text() == text


def test_without_a_certificate_it_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(SealingError, match="run `invoke sealing-key` first"):
        sealed_secrets.seal_all(ClusterPaths("nowhere", root=tmp_path))


def test_sealing_key_keeps_an_existing_key_unless_forced_and_keeps_the_replaced_one(paths: ClusterPaths) -> None:
    assert sealed_secrets.create_key_pair(paths, force=False) == sealed_secrets.KEY_CREATED
    first_key, first_cert = paths.private_key.read_bytes(), paths.certificate.read_bytes()
    assert stat.S_IMODE(paths.private_key.stat().st_mode) == 0o600
    assert paths.kept_certificate.read_bytes() == first_cert
    assert sealed_secrets.create_key_pair(paths, force=False) == sealed_secrets.KEY_KEPT
    assert (paths.private_key.read_bytes(), paths.certificate.read_bytes()) == (first_key, first_cert)
    assert sealed_secrets.create_key_pair(paths, force=True) == sealed_secrets.KEY_CREATED
    assert paths.private_key.read_bytes() != first_key
    key = sealing.load_private_key(paths.private_key)
    assert sealing.belongs_to(key, sealing.load_certificate(paths.certificate))
    old_fingerprint = sealing.fingerprint(x509.load_pem_x509_certificate(first_cert))[:16]
    assert (paths.keys_dir / f"sealing-key-{old_fingerprint}.pem").read_bytes() == first_key
    assert (paths.keys_dir / f"sealing-key-{old_fingerprint}.crt.pem").read_bytes() == first_cert


def test_a_checkout_with_another_certificate_gets_the_existing_keys_back(paths: ClusterPaths, key_pair) -> None:
    """A fresh clone holds the certificate it was cloned with; the key on this machine wins, and is not replaced."""
    sealed_secrets.create_key_pair(paths, force=False)
    mine = paths.certificate.read_bytes()
    paths.certificate.write_bytes(key_pair.certificate_pem)  # what a fresh clone brings
    assert sealed_secrets.create_key_pair(paths, force=False) == sealed_secrets.CERTIFICATE_RESTORED
    assert paths.certificate.read_bytes() == mine


def test_a_key_without_any_certificate_of_its_own_is_refused(paths: ClusterPaths, key_pair) -> None:
    paths.private_key.parent.mkdir(parents=True)
    paths.private_key.write_bytes(sealing.new_key_pair().private_key_pem)  # not the checkout's certificate's key
    with pytest.raises(SealingError, match="no certificate for"):
        sealed_secrets.create_key_pair(paths, force=False)
    assert paths.certificate.read_bytes() == key_pair.certificate_pem


def test_seal_secrets_refuses_a_key_that_does_not_belong_to_the_certificate(paths: ClusterPaths) -> None:
    """Else it would keep ciphertext this key opens but the cluster, which has the certificate's key, cannot."""
    paths.private_key.parent.mkdir(parents=True)
    paths.private_key.write_bytes(sealing.new_key_pair().private_key_pem)
    with pytest.raises(SealingError, match="does not belong to"):
        sealed_secrets.seal_all(paths)
    assert sealed_files(paths) == {}


def test_key_secrets_are_named_by_their_key(key_pair) -> None:
    name = sealed_secrets.key_secret_name(certificate(key_pair))
    assert name == sealed_secrets.key_secret_name(certificate(key_pair))
    assert name != sealed_secrets.key_secret_name(certificate(sealing.new_key_pair()))
    assert re.fullmatch(r"sealed-secrets-key-[0-9a-f]{16}", name)


def test_commit_sealed_commits_the_sealed_secrets_alone_and_only_when_they_changed(paths: ClusterPaths) -> None:
    root = paths.root
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    (root / "README.md").write_text("hello\n")
    subprocess.run(["git", "add", "README.md"], cwd=root, check=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "commit", "-qm", "first"], cwd=root, check=True)
    (root / "README.md").write_text("an unrelated change\n")
    sealed_secrets.seal_all(paths)
    assert sealed_secrets.commit_sealed(paths, "Seal") is True
    listed = subprocess.run(
        ["git", "show", "--name-only", "--format=%s"], cwd=root, capture_output=True, text=True, check=True
    )
    assert listed.stdout.split() == [
        "Seal",
        *sorted(str(p.relative_to(root)) for p in paths.sealed_dir.rglob("*") if p.is_file()),
    ]
    assert sealed_secrets.commit_sealed(paths, "Seal again") is False
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert status == " M README.md\n?? .secrets/\n", "the plaintext is left alone (a checkout git-ignores it)"


def test_committed_sealed_secrets_match_the_catalog() -> None:
    for cluster in ("vagrant", "cloud", "e2e"):
        paths = ClusterPaths(cluster)
        documents = sealed_files(paths)
        assert {name: set(doc["spec"]["encryptedData"]) for name, doc in documents.items()} == {
            f"{name}-sealedsecret.yaml": set(keys) for name, keys in CATALOG.items()
        }
        sealing.load_certificate(paths.certificate)


@needs_tool("kubeseal")
def test_kubeseal_output_opens_with_our_unseal(key_pair, tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_bytes(key_pair.certificate_pem)
    sealed = subprocess.run(
        ["kubeseal", "--raw", "--cert", str(cert), "--namespace", "ns", "--name", "n", "--from-file=/dev/stdin"],
        input=b"cross-checked",
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert sealing.unseal(private_key(key_pair), "ns", "n", sealed) == b"cross-checked"
