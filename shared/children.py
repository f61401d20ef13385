"""Child processes we start (nats-server, services under ``blaze up``) die with us."""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def die_with_parent() -> None:
    """For ``preexec_fn``: the child gets SIGKILL when its parent dies, even by SIGKILL
    (Linux ``PR_SET_PDEATHSIG``), so a killed ``blaze up`` leaves no orphans behind.
    It only calls ``prctl`` (libc loaded beforehand), which is safe between fork and exec."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
