"""Whether a Docker engine answers, asked with a short timeout (a silent DOCKER_HOST would
otherwise block testcontainers for 60 s). Without one, container tests step aside."""

from __future__ import annotations

import gc
import os
import warnings


def docker_engine_answers(timeout: float = 2.0) -> bool:
    """True only if ``BLAZE_TEST_DOCKER`` is not ``0`` and a Docker engine answers a ping."""
    if os.environ.get("BLAZE_TEST_DOCKER") == "0":
        return False
    # docker-py leaves its socket to the garbage collector when the engine is absent.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return _ping(timeout)
        finally:
            gc.collect()


def _ping(timeout: float) -> bool:
    try:
        import docker  # noqa: PLC0415 (only needed when asking)

        client = docker.from_env(timeout=int(max(1, timeout)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure to reach the engine means: no engine
        return False
