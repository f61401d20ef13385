"""A certificate authority of one's own for NATS TLS (issue 7): ``blaze up --tls`` and
``blaze secrets --tls`` generate a CA and one certificate the NATS nodes use, both to
serve clients and between each other (cluster routes verify both ends).

Elliptic-curve keys (P-256), SHA-256 signatures; the CA lives ten years, the node
certificate about two. The CA key stays beside the certificates so more can be issued;
deploy it nowhere (docs/security.md).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.bus.credentials import write_private

CA_DAYS = 3650
NODE_DAYS = 825
DEFAULT_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class NodeTls:
    """The files a NATS node's ``tls`` blocks name."""

    cert: Path
    key: Path
    ca: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "blaze-cluster"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # clocks a little apart
        .not_valid_after(now + dt.timedelta(days=days))
    )


def generate(directory: Path, hosts: tuple[str, ...] = DEFAULT_HOSTS) -> NodeTls:
    """A CA (``ca.pem``, ``ca-key.pem``) and a node certificate for ``hosts``
    (``server.pem``, ``server-key.pem``) in ``directory``; existing files are kept."""
    files = NodeTls(directory / "server.pem", directory / "server-key.pem", directory / "ca.pem")
    if files.cert.exists() and files.key.exists() and files.ca.exists():
        return files
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("blaze-cluster CA")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    node_key = ec.generate_private_key(ec.SECP256R1())
    node_cert = (
        _builder(_name("blaze-cluster NATS"), ca_name, node_key, NODE_DAYS)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # Routes verify both ends with the same certificate: server and client use.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    write_private(directory / "ca-key.pem", _key_pem(ca_key))
    write_private(files.key, _key_pem(node_key))
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(node_cert.public_bytes(serialization.Encoding.PEM))
    return files
