"""Errors shared by every service and the command line.

BlazeError                     base; ``retryable`` says whether trying again can help
├── ConfigError                the cluster config is invalid (names the entry)
├── NatsServerError            no usable nats-server binary, or it would not start
├── ClusterUnreachableError    the command line cannot reach the cluster
│   └── LoginRefusedError      NATS refused these credentials (or their absence)
├── RequestRefusedError        a service refused an administrator's request (with reason)
├── PermissionDeniedError      NATS does not let this identity publish there (issue 7)
└── BusError                   a bus operation did not complete (retryable)
    ├── NoRespondersError      nobody listens on the subject
    ├── RequestTimeoutError    no answer in time
    ├── MalformedReplyError    an answer that does not validate (junk proves nothing)
    └── WriteConflictError     compare-and-set lost (not retryable: re-read first)
"""

from __future__ import annotations


class BlazeError(Exception):
    """Base of every blaze-cluster error."""

    retryable: bool = False


class ConfigError(BlazeError):
    """The cluster config is invalid; the message names the bad entry."""


class NatsServerError(BlazeError):
    """No usable nats-server: missing, too old, or it did not start."""


class ClusterUnreachableError(BlazeError):
    """The NATS server of the cluster does not answer."""

    retryable = True

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the cluster at {url}: {reason}")
        self.url = url
        self.reason = reason


class LoginRefusedError(ClusterUnreachableError):
    """NATS answers but refuses the login: no credentials, or ones it does not know."""

    def __init__(self, url: str) -> None:
        super().__init__(
            url,
            "NATS refused the login: give this identity's seed with --creds FILE or "
            "BLAZE_NATS_CREDS (docs/security.md)",
        )


class NotABlazeClusterError(BlazeError):
    """The NATS server answers, but holds no blaze-cluster (no event stream or bucket)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"no blaze-cluster on this NATS server ({what} missing); is it running?")


class RequestRefusedError(BlazeError):
    """A service refused an administrator's request; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PermissionDeniedError(BlazeError):
    """NATS refused to let this identity publish on ``subject`` (docs/security.md): a
    retry with the same credentials cannot help."""

    def __init__(self, subject: str) -> None:
        super().__init__(
            f"NATS refused this identity publishing on {subject}: its credentials do not "
            "allow it (see docs/security.md; changes need the admin identity)"
        )
        self.subject = subject


class BusError(BlazeError):
    """A bus operation did not complete."""

    retryable = True


class NoRespondersError(BusError):
    """Nobody subscribes to the subject: for a probe, the connection is gone (R2)."""

    def __init__(self, subject: str) -> None:
        super().__init__(f"no responders on {subject}")
        self.subject = subject


class RequestTimeoutError(BusError):
    """A request got no answer in time."""

    def __init__(self, subject: str, timeout: float) -> None:
        super().__init__(f"no answer on {subject} within {timeout} s")
        self.subject = subject
        self.timeout = timeout


class MalformedReplyError(BusError):
    """An answer came, but it does not validate: whoever sent it, it proves nothing (a
    probe it answers still fails). Counted in ``blaze_rejected_messages_total``."""

    def __init__(self, subject: str, detail: str) -> None:
        super().__init__(f"malformed answer on {subject}: {detail}")
        self.subject = subject
        self.detail = detail


class WriteConflictError(BusError):
    """A compare-and-set write lost: someone else wrote the key first."""

    retryable = False

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key}: revision changed underneath us ({detail})")
        self.key = key
