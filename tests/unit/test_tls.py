"""The generated CA (issue 7): kept across runs, so deployed ``ca.pem`` files stay
good; the node certificate is issued again by it when the hosts change."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509

from shared.bus.tls import generate


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _hosts(path: Path) -> set[str]:
    san = _cert(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(
        san.get_values_for_type(x509.DNSName)
    )


def test_issue7_new_hosts_get_a_new_node_certificate_from_the_same_ca(tmp_path: Path) -> None:
    first = generate(tmp_path, ("127.0.0.1", "nats-1"))
    ca, cert = first.ca.read_bytes(), first.cert.read_bytes()
    assert _hosts(first.cert) == {"127.0.0.1", "nats-1"}
    again = generate(tmp_path, ("127.0.0.1", "nats-1"))
    assert (again.ca.read_bytes(), again.cert.read_bytes()) == (ca, cert), "nothing to do"
    moved = generate(tmp_path, ("127.0.0.1", "nats-1", "nats-2"))
    assert moved.ca.read_bytes() == ca
    assert _hosts(moved.cert) == {"127.0.0.1", "nats-1", "nats-2"}
    _cert(moved.cert).verify_directly_issued_by(_cert(moved.ca))


def test_issue7_private_keys_are_owner_only(tmp_path: Path) -> None:
    files = generate(tmp_path)
    for key in (files.key, tmp_path / "ca-key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    files.cert.unlink()
    generate(tmp_path)  # a lost node certificate is issued again, by the same CA
    _cert(files.cert).verify_directly_issued_by(_cert(files.ca))
