"""The metrics endpoint never takes a service down (R13)."""

from __future__ import annotations

import socket
import urllib.request

from shared.metrics import serve_metrics


def test_r13_a_taken_metrics_port_falls_back_to_another_and_still_serves() -> None:
    """A port picked free and then taken by someone else must not stop the process:
    /metrics is served on another port, which ``serve_metrics`` returns."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        served = serve_metrics(taken)
    assert served is not None
    assert served != taken
    with urllib.request.urlopen(f"http://127.0.0.1:{served}/metrics", timeout=5) as answer:
        assert b"blaze_rejected_messages_total" in answer.read()
