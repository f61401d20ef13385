"""The Promela model of the protocol (model/protocol.pml) keeps in step with the code.

Every message type of the event catalog must appear in the model's list of message types,
as modelled or as abstracted with a reason (docs/protocol.md); and, where spin is
installed, the model check passes at small bounds and still catches the mutant.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from shared.messages.catalog import message_models

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "model" / "protocol.pml"
CHECK = ROOT / "model" / "check.sh"
DOCS = ROOT / "docs" / "protocol.md"
ENTRY = re.compile(r"^\s*\*\s+(\w+)\s+(modelled|abstracted):\s+\S")


def model_message_types() -> dict[str, str]:
    """The model's machine-readable list: message type -> 'modelled' or 'abstracted'."""
    text = MODEL.read_text()
    start, end = text.index("BEGIN MESSAGE TYPES"), text.index("END MESSAGE TYPES")
    listed: dict[str, str] = {}
    for line in text[start:end].splitlines()[1:]:
        if not line.strip(" *"):
            continue
        match = ENTRY.match(line)
        assert match is not None, f"not a message type entry: {line!r}"
        name, how = match.groups()
        assert name not in listed, f"{name} is listed twice"
        listed[name] = how
    return listed


def test_every_message_type_of_the_code_is_in_the_model() -> None:
    code = {model.__name__ for model in message_models()}
    listed = model_message_types()
    missing = sorted(code - set(listed))
    assert not missing, f"message types of the code missing from {MODEL.name}: {missing}"
    stale = sorted(set(listed) - code)
    assert not stale, f"{MODEL.name} lists message types the code no longer has: {stale}"


def test_the_protocol_messages_are_modelled_not_abstracted() -> None:
    listed = model_message_types()
    protocol = (
        *("ServerFailed", "ServerRecovered", "Command", "CommandResult"),
        *("ClaimsConfirmed", "ReleasesConfirmed", "CommandRefused"),
    )
    assert {name: listed[name] for name in protocol} == dict.fromkeys(protocol, "modelled")


def test_every_property_the_check_runs_is_in_the_model_and_documented() -> None:
    listed = re.search(r'^ALL="([^"]+)"', CHECK.read_text(), re.MULTILINE)
    assert listed is not None, f"no ALL= list of properties in {CHECK.name}"
    model, docs = MODEL.read_text(), DOCS.read_text()
    for name in listed.group(1).split():
        assert f"PROP_{name}" in model, f"{name} is not an assertion of {MODEL.name}"
        assert f"| `{name}` |" in docs, f"{name} is not in the properties of {DOCS.name}"


@pytest.mark.skipif(
    shutil.which("spin") is None, reason="spin is not installed (apt-get install spin)"
)
@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler for spin's verifier")
def test_the_model_check_passes_at_small_bounds_and_catches_the_mutant() -> None:
    done = subprocess.run(
        ["sh", str(CHECK), "--smoke"],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "LIMIT": "40"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "counterexample found, as it must be" in done.stdout
    assert "model check passed" in done.stdout
