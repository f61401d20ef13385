"""Generated hostile input for the fuzz test: hypothesis strategies that turn each message
model's JSON schema into real-looking documents, then break them.

A ``Target`` is one subject family that a blaze process subscribes to or serves. Each
generated ``Junk`` is bytes for one subject of it, with a verdict given by the model that
its readers parse with (the oracle): ``oversized``, ``invalid``, or one of the few
well-formed kinds that are harmless by construction (a heartbeat that names another
server, a request about ids the cluster does not have). A well-formed message that would
be a forgery (a valid heartbeat or command of a real server) is never produced: stopping
forgeries is the job of authentication.

Hypothesis is used as a generator: derandomized, no example database, generation only. So
the same messages come every run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.messages import MAX_MESSAGE_BYTES

ID_PATTERN = "^[A-Za-z0-9_-]+$"
"""The pattern of server and camera ids in the messages' JSON schemas."""
ID_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
NATS_MAX_PAYLOAD = 8 * 1024 * 1024
"""``max_payload`` of the embedded nats-server: nothing larger can be published at all."""

OVERSIZED = "oversized"
INVALID = "invalid"

Doc = dict[str, Any]
Oracle = type[BaseModel] | TypeAdapter[Any]


def _never(_subject: str, _message: Any) -> str | None:
    return None


@dataclass(frozen=True)
class Target:
    """A subject family, and the model every reader of it validates with."""

    name: str
    subjects: st.SearchStrategy[str]
    model: Oracle | None
    """The oracle; None for an endpoint that parses nothing (it answers anything)."""
    harmless: Callable[[str, Any], str | None] = _never
    """For a well-formed message on a subject: its verdict, or None if it must not be sent."""
    pairs: tuple[st.SearchStrategy[tuple[list[str], bytes]], ...] = field(default=())
    """More (subjects, payload) kinds where the two go together (a stranger's heartbeat)."""


@dataclass(frozen=True)
class Junk:
    """One message to send: where, what, and what its readers must make of it."""

    target: str
    subject: str
    data: bytes
    verdict: str
    """``oversized``, ``invalid``, or a harmless well-formed kind named by the target."""


def validate(oracle: Oracle, data: bytes) -> Any:
    """What a reader makes of ``data``; raises ValidationError, as the bus's parsing does."""
    if isinstance(oracle, TypeAdapter):
        return oracle.validate_json(data)
    return oracle.model_validate_json(data)


def classify(target: Target, subject: str, data: bytes) -> str | None:
    """What every reader of ``target`` must make of ``data`` on ``subject``. None: well
    formed and not harmless, so it must not be sent."""
    if len(data) > MAX_MESSAGE_BYTES:
        return OVERSIZED
    if target.model is None:
        return target.name
    try:
        message = validate(target.model, data)
    except ValidationError:
        return INVALID
    return target.harmless(subject, message)


# ---- real-looking documents, from a JSON schema ----


def ids_from(known: Sequence[str], unknown: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Ids of the cluster, or strangers."""
    return st.one_of(st.sampled_from(list(known)), unknown)


def unknown_ids(known: Sequence[str]) -> st.SearchStrategy[str]:
    """Well-formed ids that the cluster does not have."""
    taken = set(known)
    return st.text(ID_CHARACTERS, min_size=1, max_size=12).filter(lambda s: s not in taken)


def documents(model: Oracle, ids: st.SearchStrategy[str]) -> st.SearchStrategy[Doc]:
    """Valid documents of ``model`` (of any member of a discriminated union), small, with
    ``ids`` wherever the schema wants a server or camera id."""
    schema = model.json_schema() if isinstance(model, TypeAdapter) else model.model_json_schema()
    defs = schema.get("$defs", {})
    if "oneOf" in schema:
        return st.one_of([from_schema(s, defs, ids) for s in schema["oneOf"]])
    return from_schema(schema, defs, ids)


def from_schema(
    schema: Mapping[str, Any], defs: Mapping[str, Any], ids: st.SearchStrategy[str]
) -> st.SearchStrategy[Any]:
    """JSON values matching ``schema``: the subset of JSON Schema that pydantic writes."""
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, ids)
    if "const" in schema or "enum" in schema:
        return st.sampled_from(schema["enum"] if "enum" in schema else [schema["const"]])
    if "anyOf" in schema:
        return st.one_of([from_schema(s, defs, ids) for s in schema["anyOf"]])
    kind = str(schema.get("type", ""))
    if kind == "array":
        items = from_schema(schema.get("items", {}), defs, ids)
        return st.lists(items, max_size=min(schema.get("maxItems", 3), 3))
    if kind == "object":
        return _object(schema, defs, ids)
    return _scalar(kind, schema, ids)


def _scalar(
    kind: str, schema: Mapping[str, Any], ids: st.SearchStrategy[str]
) -> st.SearchStrategy[Any]:
    if kind == "string":
        return _string(schema, ids)
    if kind == "integer":
        low = schema.get("minimum", -(10**6))
        return st.integers(low, min(schema.get("maximum", 10**6), low + 10**6))
    if kind == "number":
        low = schema.get("minimum", -1e6)
        return st.floats(low, low + 1e6, allow_nan=False)
    return st.booleans() if kind == "boolean" else st.none()


def _string(schema: Mapping[str, Any], ids: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    if schema.get("format") == "date-time":
        stamps = st.datetimes(datetime(2020, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC))
        return stamps.map(lambda t: t.isoformat().replace("+00:00", "Z"))
    pattern = schema.get("pattern")
    if pattern == ID_PATTERN:
        return ids
    if pattern:  # ``$`` would let hypothesis add a newline the validator refuses
        return st.from_regex(pattern.removesuffix("$") + r"\Z", fullmatch=True)
    low = schema.get("minLength", 0)
    return st.text(st.characters(codec="utf-8"), min_size=low, max_size=max(low, 20))


def _object(
    schema: Mapping[str, Any], defs: Mapping[str, Any], ids: st.SearchStrategy[str]
) -> st.SearchStrategy[Doc]:
    properties = schema.get("properties")
    if properties is None:  # a dict keyed by ids (``hosted``)
        [values] = schema.get("patternProperties", {"": {}}).values()
        return st.dictionaries(ids, from_schema(values, defs, ids), max_size=3)
    # A ``type`` literal is what tells a union's members apart: always written.
    required = set(schema.get("required", ())) | {k for k, v in properties.items() if "const" in v}
    return st.fixed_dictionaries(
        {k: from_schema(v, defs, ids) for k, v in properties.items() if k in required},
        optional={k: from_schema(v, defs, ids) for k, v in properties.items() if k not in required},
    )


def encode_doc(doc: Doc) -> bytes:
    """A document as JSON bytes."""
    return json.dumps(doc).encode()


# ---- broken documents ----

WRONG_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["7", "1", "true", "null", "", "2026-01-01T00:00:00"]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(0, 9), max_size=2),
)
"""JSON values of every type, for a field that wants another."""

RAW_VALUES = (
    b"NaN",
    b"Infinity",
    b"-0",
    b"1e999",
    b"1" + b"0" * 5000,  # past Python's int-from-string limit
    b"[" * 300 + b"]" * 300,  # past the JSON parser's nesting limit
    b'"\\ud800"',
    b'"\xff\xfe"',
    b"{}",
)
"""Raw JSON, and not quite JSON, spliced in where a value goes."""

BREAKS = (
    "wrong_type",
    "missing",
    "unknown_field",
    "schema_version",
    "raw_value",
    "duplicate_key",
    "not_an_object",
    "truncated",
    "garbled",
)


@st.composite
def broken(draw: st.DrawFn, base: st.SearchStrategy[Doc]) -> bytes:
    """A real-looking document of ``base``, broken one way."""
    doc = draw(base)
    keys = sorted(doc)
    how = draw(st.sampled_from(BREAKS))
    key = draw(st.sampled_from(keys)) if keys else "server"
    if how == "wrong_type":
        doc[key] = draw(WRONG_VALUES)
    elif how == "missing":
        doc.pop(key, None)
    elif how == "unknown_field":
        doc.setdefault(draw(st.text(min_size=1, max_size=10)), draw(WRONG_VALUES))
    elif how == "schema_version":
        doc["schema_version"] = draw(
            st.one_of(st.integers().filter(lambda v: v != 1), st.sampled_from(["1", 1.0, True]))
        )
    elif how == "raw_value":
        rest = json.dumps({k: v for k, v in doc.items() if k != key})[1:-1].encode()
        value = draw(st.sampled_from(RAW_VALUES))
        return (
            b"{" + json.dumps(key).encode() + b": " + value + (b", " + rest if rest else b"") + b"}"
        )
    elif how == "duplicate_key":  # a later key of another type: one parser or the other
        return encode_doc(doc)[:-1] + b", " + json.dumps(key).encode() + b": []}"
    elif how == "not_an_object":
        return json.dumps(draw(st.sampled_from([list(doc.values()), keys, None, 0]))).encode()
    data = encode_doc(doc)
    if how == "truncated":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if how == "garbled":
        for _ in range(draw(st.integers(1, 3))):
            if not data:
                break
            at = draw(st.integers(0, len(data) - 1))
            byte = bytes([draw(st.integers(0, 255))])
            edit = draw(st.sampled_from(["flip", "insert", "delete"]))
            tail = data[at:] if edit == "insert" else data[at + 1 :]
            data = data[:at] + (b"" if edit == "delete" else byte) + tail
    return data


RANDOM_BYTES = st.binary(max_size=200)
RANDOM_TEXT = st.text(st.characters(codec="utf-8"), max_size=60).map(str.encode)


def payloads(
    target: Target, ids: st.SearchStrategy[str], strangers: st.SearchStrategy[str]
) -> st.SearchStrategy[bytes]:
    """Bytes for one message of ``target``: mostly broken documents, some random bytes,
    some well-formed documents (with ``strangers``: about ids the cluster does not have)."""
    if target.model is None:
        return st.one_of(RANDOM_BYTES, RANDOM_TEXT)
    real, theirs = documents(target.model, ids), documents(target.model, strangers)
    breaks = broken(real)
    return st.one_of(
        RANDOM_BYTES,
        RANDOM_TEXT,
        breaks,
        breaks,
        breaks,
        real.map(encode_doc),
        theirs.map(encode_doc),
    )


# ---- the corpus ----


def generate(
    targets: Sequence[Target], known: Sequence[str], examples: int, subjects_each: int = 1
) -> list[Junk]:
    """``examples`` hypothesis examples, each with one payload for every target, sent on
    ``subjects_each`` of its subjects (a subject is cheap to draw, a payload is not).
    Well-formed messages that are not harmless are left out."""
    ids = ids_from(known, unknown_ids(known))
    strangers = unknown_ids(known)

    def one(target: Target) -> st.SearchStrategy[tuple[list[str], bytes]]:
        where = st.lists(target.subjects, min_size=subjects_each, max_size=subjects_each)
        alone = st.tuples(where, payloads(target, ids, strangers))
        return st.one_of(alone, alone, alone, *target.pairs)

    found: list[Junk] = []

    @deterministic(examples)
    @given(st.tuples(*(one(t) for t in targets)))
    def collect(batch: tuple[tuple[list[str], bytes], ...]) -> None:
        for target, (where, data) in zip(targets, batch, strict=True):
            for subject in where:
                verdict = classify(target, subject, data)
                if verdict is not None:
                    found.append(Junk(target.name, subject, data, verdict))

    collect()
    return found


def generate_oversized(targets: Sequence[Target], known: Sequence[str], each: int) -> list[Junk]:
    """``each`` messages per target above MAX_MESSAGE_BYTES, up to what NATS carries: a
    real-looking document padded with an unknown field."""
    ids = ids_from(known, unknown_ids(known))
    return [m for target in targets for m in _oversized(target, ids, each)]


def _oversized(target: Target, ids: st.SearchStrategy[str], each: int) -> list[Junk]:
    base = st.just({}) if target.model is None else documents(target.model, ids)
    sizes = st.integers(MAX_MESSAGE_BYTES + 1, NATS_MAX_PAYLOAD - 65536)
    found: list[Junk] = []

    @deterministic(each)
    @given(subject=target.subjects, doc=base, size=sizes)
    def collect(subject: str, doc: Doc, size: int) -> None:
        head = encode_doc(doc)[:-1] + (b", " if doc else b"") + b'"padding": "'
        data = head + b"x" * max(0, size - len(head) - 2) + b'"}'
        found.append(Junk(target.name, subject, data, OVERSIZED))

    collect()
    return found


def deterministic(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Hypothesis as a generator: derandomized, no example database, generation only
    (nothing fails, so nothing shrinks), no health checks (examples are large on purpose)."""
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
