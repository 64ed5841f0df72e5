"""invoke seal-secrets: the controller's format, strict scope, the values file, and no churn."""

from __future__ import annotations

import base64
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devtools.gitops import sealed_secrets, sealing
from devtools.gitops.sealed_secrets import CATALOG, NAMESPACE, ClusterPaths
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
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(paths.sealed_dir.glob("*-sealedsecret.yaml"))}


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
        assert document["metadata"]["namespace"] == document["spec"]["template"]["metadata"]["namespace"] == NAMESPACE
        for key, entry in keys.items():
            opened = sealing.unseal(private_key(key_pair), NAMESPACE, name, document["spec"]["encryptedData"][key])
            assert opened.decode() == values[entry.variable]
    kustomization = yaml.safe_load((paths.sealed_dir / "kustomization.yaml").read_text())
    assert kustomization["resources"] == sorted(documents)


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


def test_sealing_key_keeps_an_existing_key_unless_forced(paths: ClusterPaths) -> None:
    assert sealed_secrets.create_key_pair(paths, force=False) is True
    first = paths.private_key.read_bytes()
    assert stat.S_IMODE(paths.private_key.stat().st_mode) == 0o600
    assert sealed_secrets.create_key_pair(paths, force=False) is False
    assert paths.private_key.read_bytes() == first
    assert sealed_secrets.create_key_pair(paths, force=True) is True
    assert paths.private_key.read_bytes() != first
    key = sealing.load_private_key(paths.private_key)
    cert = sealing.load_certificate(paths.certificate)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()


def test_committed_sealed_secrets_match_the_catalog() -> None:
    for cluster in ("vagrant", "cloud"):
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
