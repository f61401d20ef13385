"""``shared.bus`` imports its names lazily (start-up time of the command line, issue 8)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import shared.bus


def test_every_exported_name_resolves_to_its_module() -> None:
    for name in shared.bus.__all__:
        value = getattr(shared.bus, name)
        assert value.__name__ == name
        assert value.__module__.startswith("shared.bus.")


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = shared.bus.Nope


def test_the_connection_alone_does_not_load_the_embedded_server_or_tls() -> None:
    code = (
        "import sys, shared.bus.connection;"
        "print(sorted(m for m in ('shared.bus.natsserver', 'shared.bus.tls') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
