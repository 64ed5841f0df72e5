"""Sealing Secrets offline, in the Bitnami Sealed Secrets controller's own format.

Per value: a fresh 32-byte AES-256-GCM session key encrypts the value with
an all-zero nonce (safe because the key is never reused); RSA-OAEP with
SHA-256 wraps the session key, with the label `namespace/name` (strict
scope, so a sealed value only opens as that Secret). The result is the
RSA ciphertext's length as 2 big-endian bytes, the RSA ciphertext, then
the GCM ciphertext and tag, base64-encoded.
"""

from __future__ import annotations

import base64
import datetime
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

SESSION_KEY_BYTES = 32
ZERO_NONCE = bytes(12)
KEY_BITS = 4096
CERT_DAYS = 3650


class SealingError(RuntimeError):
    pass


def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label)


def scope_label(namespace: str, name: str) -> bytes:
    return f"{namespace}/{name}".encode()


def seal(certificate: x509.Certificate, namespace: str, name: str, value: bytes) -> str:
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SealingError("the sealing certificate must hold an RSA key")
    session_key = os.urandom(SESSION_KEY_BYTES)
    wrapped = public_key.encrypt(session_key, _oaep(scope_label(namespace, name)))
    sealed = AESGCM(session_key).encrypt(ZERO_NONCE, value, None)
    return base64.b64encode(struct.pack(">H", len(wrapped)) + wrapped + sealed).decode()


def unseal(private_key: rsa.RSAPrivateKey, namespace: str, name: str, encrypted: str) -> bytes:
    data = base64.b64decode(encrypted, validate=True)
    if len(data) < 2:
        raise SealingError("sealed value too short")
    (length,) = struct.unpack(">H", data[:2])
    wrapped, sealed = data[2 : 2 + length], data[2 + length :]
    session_key = private_key.decrypt(wrapped, _oaep(scope_label(namespace, name)))
    return AESGCM(session_key).decrypt(ZERO_NONCE, sealed, None)


@dataclass(frozen=True)
class KeyPair:
    private_key_pem: bytes
    certificate_pem: bytes


def new_key_pair(now: datetime.datetime | None = None) -> KeyPair:
    """A key pair like the controller's own: RSA 4096, self-signed, CN and O `sealed-secret`."""
    now = now or datetime.datetime.now(datetime.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealed-secret"),
            x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret"),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                key_cert_sign=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
    )


def load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise SealingError(f"no sealing certificate at {path}; run `invoke sealing-key` first") from None
    except ValueError as exc:
        raise SealingError(f"{path} is not a PEM certificate: {exc}") from None


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise SealingError(f"no sealing key at {path}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SealingError(f"{path} does not hold an RSA private key")
    return key


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the certificate's public key (DER SubjectPublicKeyInfo), in hex: names a key for good."""
    der = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


def belongs_to(private_key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> bool:
    public = certificate.public_key()
    return isinstance(public, rsa.RSAPublicKey) and public.public_numbers() == private_key.public_key().public_numbers()


def random_password() -> str:
    """43 URL-safe characters: 256 bits, nothing a shell or a connection string trips on."""
    return secrets.token_urlsafe(32)
