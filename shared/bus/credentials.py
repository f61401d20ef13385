"""Credentials (issue 7): each identity's nkey seed, the TLS a client trusts, and the
secrets directory ``blaze up`` and ``blaze secrets`` generate.

A secrets directory holds one ``<identity>.nk`` per identity (an nkey user seed, mode
0600), ``auth.conf`` (nats-server's ``authorization`` block: public keys only), and,
with TLS, ``ca.pem`` plus ``server.pem``/``server-key.pem``. The directory is 0700.
Generating again keeps every existing seed and adds the missing ones, so processes
already running keep working.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import ConfigError

# nkeys (libsodium) and permissions (nats.micro) are imported where used: ``blaze
# status`` without credentials needs neither, and it has half a second in all (issue 8).

SEED_SUFFIX = ".nk"
AUTH_FILE = "auth.conf"
ROUTE_SECRET_FILE = "route.secret"  # noqa: S105 (a file name, not a password)


@dataclass(frozen=True)
class Access:
    """How one process proves who it is to NATS (``creds``, an nkey seed file) and
    which certificate authority it trusts for TLS (``tls_ca``). Empty: no auth, no TLS."""

    creds: Path | None = None
    tls_ca: Path | None = None
    agent: bool = False
    """A recording server's agent: its inbox is in the agents' branch (permissions.py)."""

    def connect_options(self) -> dict[str, Any]:
        """nats-py ``connect`` keywords: the seed, the inbox only this identity may read,
        and a TLS context that checks the server's certificate against ``tls_ca``."""
        options: dict[str, Any] = {}
        if self.creds is not None:
            from shared.bus import permissions  # noqa: PLC0415 - see the imports

            seed = read_seed(self.creds)
            options["nkeys_seed_str"] = seed
            options["inbox_prefix"] = permissions.inbox_prefix(public_key(seed), agent=self.agent)
        if self.tls_ca is not None:
            options["tls"] = client_tls(self.tls_ca)
        return options


def add_access_arguments(parser: argparse.ArgumentParser) -> None:
    """``--creds`` and ``--tls-ca``: who this process is to NATS, and the CA it trusts
    (issue 7). Containers pass them as ``BLAZE_NATS_CREDS`` and ``BLAZE_NATS_CA``.
    Here rather than in ``shared.lifecycle``, whose imports (config, metrics) the
    command line's ``blaze status`` cannot afford (issue 8)."""
    parser.add_argument(
        "--creds",
        type=Path,
        default=os.environ.get("BLAZE_NATS_CREDS") or None,
        help="this identity's nkey seed file (default: $BLAZE_NATS_CREDS; none: no auth)",
    )
    parser.add_argument(
        "--tls-ca",
        type=Path,
        default=os.environ.get("BLAZE_NATS_CA") or None,
        help="CA certificate that signed the NATS servers' (default: $BLAZE_NATS_CA)",
    )


def access_of(args: argparse.Namespace) -> Access:
    """The ``Access`` that ``--creds`` and ``--tls-ca`` describe."""
    return Access(args.creds, args.tls_ca)


def read_seed(path: Path) -> str:
    """An nkey user seed from its file; a clear ConfigError if unreadable, malformed, or
    readable by others (a seed is a password)."""
    try:
        info = path.stat()
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"credentials {path}: {exc.strerror or exc}") from exc
    if not seed_file_is_private(info):
        raise ConfigError(f"credentials {path}: readable by others; chmod 600 it")
    if not text.startswith("SU"):
        raise ConfigError(f"credentials {path}: not an nkey user seed (it starts with SU)")
    try:
        public_key(text)
    except Exception as exc:  # nkeys raises its own, un-exported error types
        raise ConfigError(f"credentials {path}: not a valid nkey seed ({exc})") from exc
    return text


def seed_file_is_private(info: os.stat_result) -> bool:
    """Readable by its owner only; or owned by root and readable by its group too, as
    Kubernetes mounts a Secret for a pod's ``fsGroup`` (PostgreSQL's rule for its key)."""
    mode = info.st_mode
    if mode & (stat.S_IRWXO | stat.S_IWGRP | stat.S_IXGRP):
        return False
    return not mode & stat.S_IRGRP or info.st_uid == 0


def public_key(seed: str) -> str:
    """The public key (``U…``) of an nkey user seed."""
    import nkeys  # noqa: PLC0415 - see the imports

    key = nkeys.from_seed(bytearray(seed.encode()))
    try:
        return str(key.public_key.decode())
    finally:
        key.wipe()


def new_seed() -> str:
    """A fresh nkey user seed."""
    import nkeys  # noqa: PLC0415 - see the imports

    return str(nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER).decode())


def client_tls(ca: Path) -> ssl.SSLContext:
    """A client context that trusts only ``ca`` and checks the server's name."""
    try:
        context = ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS CA {ca}: {exc}") from exc
    logging.getLogger("asyncio").addFilter(_quiet_tls_close)
    return context


def _quiet_tls_close(record: logging.LogRecord) -> bool:
    """Drop asyncio's "returning true from eof_received() has no effect when using ssl",
    which nats-py's stream protocol causes at every TLS close: noise on every command."""
    return "eof_received() has no effect" not in record.getMessage()


def write_private(path: Path, data: str | bytes) -> None:
    """Write ``data`` readable by its owner only, never briefly by anyone else."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT: close it first
    os.ftruncate(fd, 0)
    with os.fdopen(fd, "wb") as out:
        out.write(data.encode() if isinstance(data, str) else data)


@dataclass(frozen=True)
class SecretsDir:
    """A directory of generated credentials (see the module docstring)."""

    path: Path

    def creds(self, identity: str) -> Path:
        """The seed file of one identity."""
        return self.path / f"{identity}{SEED_SUFFIX}"

    @property
    def auth_conf(self) -> Path:
        """nats-server's ``authorization`` block, to include in its config."""
        return self.path / AUTH_FILE

    def route_secret(self) -> str:
        """The password nats-server nodes of one cluster route to each other with."""
        path = self.path / ROUTE_SECRET_FILE
        if not path.exists():
            write_private(path, secrets.token_urlsafe(24))
        return path.read_text().strip()

    def generate(self, servers: list[str]) -> str:
        """Make sure every identity of a cluster with ``servers`` has a seed (keeping
        those that exist); write ``auth.conf``; return the authorization block."""
        from shared.bus import permissions  # noqa: PLC0415 - see the imports

        self.path.mkdir(parents=True, exist_ok=True)
        self.path.chmod(0o700)
        keys = {}
        for identity in permissions.identities(servers):
            path = self.creds(identity)
            if not path.exists():
                write_private(path, new_seed() + "\n")
            keys[identity] = public_key(read_seed(path))
        block = permissions.render_authorization(keys)
        write_private(self.auth_conf, block)
        return block
