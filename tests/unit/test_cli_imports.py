"""``blaze status --json`` imports only what it uses (issue 8: its whole run, start-up
included, has half a second at 100,000 cameras, and imports were most of it): nats-py,
not pydantic, the messages, the config or the metrics."""

from __future__ import annotations

import json
import subprocess
import sys

from services.cli.main import FAULTS
from shared.messages import Fault

LOADED = """
import json, sys
from services.cli import main
assert main.main(["status", "--json", "--nats", "nats://127.0.0.1:1"]) != 0  # no cluster
from services.cli import views  # what main imports once connected
loaded = sorted(sys.modules)
import aiohttp  # hidden from nats-py only while it was imported
print(json.dumps({"loaded": loaded, "aiohttp": aiohttp.__name__}))
"""

NOT_FOR_STATUS = (
    "aiohttp",  # nats-py's websocket transport
    "pydantic",  # the messages' and the config's models
    "prometheus_client",
    "shared.bus.connection",  # Bus: the messages and the metrics come with it
    "shared.config",
    "shared.lifecycle",
    "shared.messages",
    "shared.metrics",
    "services.cli.footage",
    "services.cli.supervisor",
    "services.placement.state",
    "services.sim",
    "services.sync",
)


def test_status_json_imports_neither_the_placement_models_nor_the_other_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LOADED], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    loaded = set(seen["loaded"])
    assert "shared.bus.reader" in loaded  # it did import the bus
    assert "nats" in loaded
    unwanted = {m for m in loaded if any(m == h or m.startswith(f"{h}.") for h in NOT_FOR_STATUS)}
    assert not unwanted
    assert seen["aiohttp"] == "aiohttp"


def test_the_faults_blaze_sim_offers_are_the_fault_enum() -> None:
    assert tuple(f.value for f in Fault) == FAULTS
