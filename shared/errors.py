"""Errors shared by every service and the command line.

    BlazeError                     base; ``retryable`` says whether trying again can help
    ├── ConfigError                the cluster config is invalid (names the entry)
    ├── NatsServerError            no usable nats-server binary, or it would not start
    ├── ClusterUnreachableError    the command line cannot reach the cluster
    └── RequestRefusedError        a service refused an administrator's request (with reason)
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


class RequestRefusedError(BlazeError):
    """A service refused an administrator's request; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
