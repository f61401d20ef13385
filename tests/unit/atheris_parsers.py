"""Coverage-guided fuzzing (atheris, libFuzzer) of the pure parsers: ``parse_event`` and
every message model's ``model_validate_json``.

For any bytes, each parser either returns a message or raises pydantic's
ValidationError; nothing else. Whatever parses survives a round trip: its wire encoding
parses back to the same message. ``tests/unit/test_atheris.py`` runs this in a subprocess
(libFuzzer ends the process it runs in). By hand::

    .venv/bin/python -m tests.unit.atheris_parsers -runs=200000 -max_len=4096

atheris is not among the dev extras (129 MB installed): ``pip install atheris``.
"""

from __future__ import annotations

import sys

import atheris
from pydantic import BaseModel, ValidationError

with atheris.instrument_imports(include=["shared"]):
    from shared.messages import encode, parse_event
    from shared.messages.base import Message
    from shared.messages.catalog import message_models

MODELS: tuple[type[BaseModel], ...] = tuple(message_models())


def parse_each(data: bytes) -> None:
    """One input, through ``parse_event`` and then through every model."""
    try:
        event = parse_event(data)
    except ValidationError:
        pass
    else:
        assert parse_event(encode(event)) == event, data
    for model in MODELS:
        try:
            message = model.model_validate_json(data)
        except ValidationError:
            continue
        if isinstance(message, Message):
            assert model.model_validate_json(encode(message)) == message, (model, data)


def main(argv: list[str]) -> None:
    """libFuzzer's own options in ``argv`` (``-runs=N``, ``-max_len=N``, a corpus dir)."""
    atheris.Setup(argv, parse_each)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
