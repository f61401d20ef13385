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
    (``server.pem``, ``server-key.pem``) in ``directory``. An existing CA is kept (every
    deployed ``ca.pem`` stays good); the node certificate is issued again, by that CA,
    when it is missing or names other hosts."""
    directory.mkdir(parents=True, exist_ok=True)
    files = NodeTls(directory / "server.pem", directory / "server-key.pem", directory / "ca.pem")
    ca_cert, ca_key = _certificate_authority(files.ca, directory / "ca-key.pem")
    if not (files.key.exists() and _names(files.cert) == set(hosts)):
        node_key = ec.generate_private_key(ec.SECP256R1())
        node_cert = _node_certificate(ca_cert, ca_key, node_key, hosts)
        write_private(files.key, _key_pem(node_key))
        files.cert.write_bytes(node_cert.public_bytes(serialization.Encoding.PEM))
    return files


def _certificate_authority(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA in ``cert_path``/``key_path``, made there first if either is missing."""
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path}: not the elliptic-curve key blaze generates")
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("blaze-cluster CA")
    usage = x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=True,
        crl_sign=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        _builder(name, name, key, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _node_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    node_key: ec.EllipticCurvePrivateKey,
    hosts: tuple[str, ...],
) -> x509.Certificate:
    """One certificate for every NATS node: serves clients, and both ends of a route
    (nats-server verifies both), hence server and client use."""
    usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    return (
        _builder(_name("blaze-cluster NATS"), ca_cert.subject, node_key, NODE_DAYS)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _names(cert_path: Path) -> set[str]:
    """The host names and addresses a certificate is for (empty if there is none)."""
    if not cert_path.exists():
        return set()
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return ips | set(san.get_values_for_type(x509.DNSName))
