"""Every integer in every message has an upper bound (R-issue7 hostile input).

A hostile message must not carry a number that overflows SQLite (signed 64-bit) or breaks
``seek``: the model refuses it, so the reader counts it ``invalid`` instead of failing in
its handler. The models are found by walking ``shared/messages`` and their fields by
walking the type annotations, so an unbounded integer added later fails here.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from types import NoneType, UnionType
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic.fields import FieldInfo

import shared.messages
from shared.messages import Message
from shared.messages.base import MAX_INT64
from shared.messages.catalog import schema_models

TOO_LARGE = MAX_INT64 + 1
"""2**63: one past the largest integer SQLite stores."""
TOO_SMALL = -MAX_INT64 - 2
"""One below the smallest integer SQLite stores."""
DICT_KEY = "cam-1"
"""A key that a dict of ids accepts, to reach the integer values."""

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class IntegerSlot:
    """One place in a message's JSON document that holds an integer."""

    model: type[Message]
    path: Path
    """Where it is: the wire name of the field, then dict keys and list indexes."""
    maximum: int
    """The largest value it should accept: its own bound, or MAX_INT64 for none."""

    def __str__(self) -> str:
        return ".".join(str(step) for step in (self.model.__name__, *self.path))

    def document(self, value: int) -> dict[str, Any]:
        """A document with ``value`` in this place and nothing else (other errors are
        ignored: only the errors at this place count)."""
        nested: Any = value
        for step in reversed(self.path[1:]):
            nested = [nested] if isinstance(step, int) else {step: nested}
        return {str(self.path[0]): nested}

    def errors_for(self, value: int) -> list[str]:
        """The types of the validation errors at this place when it holds ``value``."""
        data = json.dumps(self.document(value))
        try:
            self.model.model_validate_json(data)
        except ValidationError as exc:
            return [e["type"] for e in exc.errors() if e["loc"][: len(self.path)] == self.path]
        return []


def models() -> tuple[type[Message], ...]:
    """Every message model defined in ``shared/messages``, nested ones included."""
    for module in pkgutil.iter_modules(shared.messages.__path__):
        importlib.import_module(f"{shared.messages.__name__}.{module.name}")
    found: dict[type[Message], None] = {}
    todo: list[type[Message]] = [Message]
    while todo:
        model = todo.pop()
        if model.__module__.startswith(shared.messages.__name__) and model not in found:
            found[model] = None
            todo.extend(model.__subclasses__())
    return tuple(sorted(found, key=lambda model: model.__name__))


def _maximum(metadata: Sequence[Any]) -> int:
    """The tightest upper bound among the constraints, or MAX_INT64 for none."""
    bounds = [MAX_INT64]
    for item in metadata:
        for constraint in item.metadata if isinstance(item, FieldInfo) else [item]:
            le, lt = getattr(constraint, "le", None), getattr(constraint, "lt", None)
            if isinstance(le, int):
                bounds.append(le)
            if isinstance(lt, int):
                bounds.append(lt - 1)
    return min(bounds)


def _is_integer(annotation: Any) -> bool:
    return (
        isinstance(annotation, type)
        and issubclass(annotation, int)
        and not issubclass(annotation, bool | Enum)
    )


def _integers(annotation: Any, metadata: Sequence[Any], path: Path) -> Iterator[tuple[Path, int]]:
    """Each integer within ``annotation``, with its upper bound. A nested model is skipped:
    it is walked as a model of its own."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        yield from _integers(args[0], [*metadata, *annotation.__metadata__], path)
    elif _is_integer(annotation):
        yield path, _maximum(metadata)
    elif origin in (typing.Union, UnionType):
        for member in args:
            if member is not NoneType:
                yield from _integers(member, metadata, path)
    elif origin is dict:
        yield from _integers(args[1], [], (*path, DICT_KEY))
    elif origin in (tuple, list, set, frozenset):
        for member in args:
            if member is not Ellipsis:
                yield from _integers(member, [], (*path, 0))


def integer_slots() -> list[IntegerSlot]:
    """Every integer of every message model."""
    return [
        IntegerSlot(model, path, maximum)
        for model in models()
        for name, field in model.model_fields.items()
        for path, maximum in _integers(field.annotation, field.metadata, (field.alias or name,))
    ]


SLOTS = integer_slots()


def test_the_walk_finds_every_catalogued_model_and_the_integers_inside_containers() -> None:
    """R-issue7 hostile input: the parametrized tests below see what they must."""
    assert set(schema_models()) <= set(models())
    found = {str(slot) for slot in SLOTS}
    expected = {
        "Heartbeat.sequence",
        f"Heartbeat.hosted.{DICT_KEY}",
        "ListSegments.epoch",
        "ReadChunk.offset",
        "SyncJob.bytes_done",
        "SyncProgress.bytes_total",
        "Command.fence",
        "Assignment.epoch",
    }
    assert expected <= found


@pytest.mark.parametrize("slot", SLOTS, ids=str)
def test_every_integer_of_a_message_refuses_2_to_the_63(slot: IntegerSlot) -> None:
    """R-issue7 hostile input: past signed 64-bit is invalid, never stored or seeked to."""
    errors = slot.errors_for(TOO_LARGE)
    assert errors, f"{slot} accepts {TOO_LARGE}: give it an upper bound (shared/messages/base.py)"
    assert set(errors) <= {"less_than_equal", "less_than"}


@pytest.mark.parametrize("slot", SLOTS, ids=str)
def test_every_integer_of_a_message_accepts_its_own_maximum(slot: IntegerSlot) -> None:
    """R-issue7 hostile input: the bound refuses only what is too large."""
    assert slot.maximum <= MAX_INT64
    assert slot.errors_for(slot.maximum) == []


@pytest.mark.parametrize("slot", SLOTS, ids=str)
def test_every_integer_of_a_message_refuses_less_than_signed_64_bit(slot: IntegerSlot) -> None:
    """R-issue7 hostile input: the lower end overflows SQLite as well."""
    assert slot.errors_for(TOO_SMALL)
