"""The event catalog (R13): docs/asyncapi.yaml and the generated parts of docs/events.md,
made from the pydantic models and the subject builders (``shared.messages.channels``);
and the permission matrix of docs/security.md (``shared.bus.permissions``, issue 7).

``python -m shared.messages.catalog --write`` rewrites them; ``--check`` exits 1 when one
is stale, as ``tests/unit/test_catalog.py`` does.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared import __version__, subjects
from shared.bus.connection import EVENT_DUPLICATE_WINDOW_S
from shared.bus.permissions import matrix_markdown
from shared.messages.base import MAX_MESSAGE_BYTES
from shared.messages.channels import (
    BUCKETS,
    CORE_CHANNELS,
    PARAMETERS,
    RAW_CHUNK_REPLY,
    Bucket,
    CoreChannel,
    event_models,
    event_route,
    event_type,
)
from shared.messages.events import Event

DOCS = Path(__file__).resolve().parents[2] / "docs"
REGENERATE = ".venv/bin/python -m shared.messages.catalog --write"
ASYNCAPI_VERSION = "3.0.0"
REPLY_CHANNEL = "reply"
CHUNK_MESSAGE = "SegmentChunk"

# ---- what is documented ----------------------------------------------------------------------


def _unique(models: Iterable[type[BaseModel] | None]) -> tuple[type[BaseModel], ...]:
    return tuple(dict.fromkeys(model for model in models if model is not None))


def message_models() -> tuple[type[BaseModel], ...]:
    """Every message on a channel: events first, then requests and answers by channel."""
    core = (model for c in CORE_CHANNELS for model in (c.message, c.reply))
    return _unique((*event_models(), *core))


def schema_models() -> tuple[type[BaseModel], ...]:
    """Every model with a JSON Schema in the catalog: the messages and the buckets' values."""
    return _unique((*message_models(), *(bucket.value for bucket in BUCKETS)))


def _doc(model: type[BaseModel]) -> str:
    """The model's docstring as one line."""
    return " ".join(inspect.cleandoc(model.__doc__ or "").split())


def _placeholders(address: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", address)


def _markdown_subject(address: str) -> str:
    """``blaze.evt.server.{server}.{event_type}`` as the docs write it, with ``<server>``."""
    return re.sub(r"\{(\w+)\}", r"<\1>", address).replace("<event_type>", "<type>")


# ---- docs/events.md ---------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def event_subjects_table() -> str:
    """One row per subject family and publisher, with its event types."""
    groups: dict[tuple[str, str], list[str]] = {}
    for model in event_models():
        route = event_route(model)
        groups.setdefault((route.family, route.publisher), []).append(f"`{event_type(model)}`")
    families = list(dict.fromkeys(family for family, _ in groups))
    # Families in order of first appearance; within one, publishers likewise (a stable sort).
    ordered = sorted(groups.items(), key=lambda group: families.index(group[0][0]))
    rows = [
        (f"`{_markdown_subject(family)}`", publisher, ", ".join(types))
        for (family, publisher), types in ordered
    ]
    return _table(("subject", "published by", "event types"), rows)


def _exchange(channel: CoreChannel) -> str:
    if channel.raw_reply:
        return f"`{channel.message.__name__}` → {RAW_CHUNK_REPLY}"
    if channel.reply is None:
        return f"`{channel.message.__name__}`"
    return f"`{channel.message.__name__}` → `{channel.reply.__name__}`"


def core_subjects_table() -> str:
    """One row per core subject: pattern, who talks to whom, what is said, what for."""
    rows = [
        (
            f"`{_markdown_subject(c.subject)}`",
            "request/reply" if c.request_reply else "publish",
            f"{c.sender} → {c.receiver}",
            _exchange(c),
            c.note,
        )
        for c in CORE_CHANNELS
    ]
    return _table(("subject", "pattern", "from → to", "message → answer", "what for"), rows)


def _content(bucket: Bucket) -> str:
    value = f" Each value is a `{bucket.value.__name__}`." if bucket.value else ""
    return bucket.content + value


def buckets_table() -> str:
    """One row per key-value bucket."""
    rows = [
        (
            f"`{b.name}`",
            b.keys,
            b.writer,
            _content(b),
        )
        for b in BUCKETS
    ]
    return _table(("bucket", "keys", "written by", "content"), rows)


def schema_section() -> str:
    """One ``### Model`` heading and its JSON Schema per model, events first."""
    parts = []
    for model in schema_models():
        schema = json.dumps(model.model_json_schema(), indent=2)
        parts.append(f"### {model.__name__}\n\n```json\n{schema}\n```\n")
    return "\n".join(parts)


def generated_sections() -> dict[str, str]:
    """The generated parts of docs/events.md, by the name their markers carry."""
    return {
        "event subjects": event_subjects_table(),
        "core subjects": core_subjects_table(),
        "buckets": buckets_table(),
        "schemas": schema_section(),
    }


def _markers(name: str) -> tuple[str, str]:
    return (
        f"<!-- generated: {name} (python -m shared.messages.catalog --write) -->\n",
        f"<!-- end generated: {name} -->\n",
    )


def fill(text: str, sections: dict[str, str]) -> str:
    """``text`` with each generated section replaced between its markers."""
    for name, body in sections.items():
        begin, end = _markers(name)
        start = text.find(begin)
        stop = text.find(end, start)
        if start < 0 or stop < 0:
            raise ValueError(f"the document lacks the markers of section {name!r}: {begin!r}")
        text = text[: start + len(begin)] + "\n" + body + "\n" + text[stop:]
    return text


# ---- docs/asyncapi.yaml -----------------------------------------------------------------------


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(path)}


def _parameters(address: str) -> dict[str, Any]:
    """The channel's ``parameters`` entry: none for an address without placeholders."""
    names = _placeholders(address)
    if not names:
        return {}
    return {"parameters": {name: _ref("components", "parameters", name) for name in names}}


def _paragraphs() -> list[str]:
    stream, evt = subjects.EVENTS_STREAM, subjects.EVENTS_ALL
    dedupe_hours = f"{EVENT_DUPLICATE_WINDOW_S / 3600:g}"
    return [
        "Failover and failback for a cluster of video recording servers, over NATS and "
        "JetStream. Generated from the pydantic models (`shared/messages/`) and the subject "
        "builders (`shared/subjects.py`) by `python -m shared.messages.catalog --write`; "
        "`docs/events.md` describes every event type with examples.",
        "**Point of view.** The application is the blaze cluster as a whole: its services "
        "(health, placement, sync), the agents on the recording servers and the `blaze up` "
        "supervisor. `send`: a part of the cluster publishes on the channel; `receive`: a part "
        "of the cluster subscribes and, for a request, answers. Traffic between parts of the "
        "cluster (tag `cluster`) has both a `send` and a `receive` operation. Requests with tag "
        "`admin` have only a `receive`: the `blaze` command line, the console or another system "
        "sends them. Answers go to the requester's NATS reply subject "
        f"(channel `{REPLY_CHANNEL}`).",
        f"**The event log.** Every event (tag `events`) is stored in the JetStream stream "
        f"`{stream}`, which holds `{evt}`. Each carries a `Nats-Msg-Id` header; the stream drops "
        f"a repeated id within {dedupe_hours} hours. Follow it live with a core subscription "
        f"(`nats sub '{evt}'`), or durably with a JetStream consumer (`nats consumer add {stream} "
        f"my-system --pull --deliver all --ack explicit --defaults`, then `nats consumer next "
        f"{stream} my-system`). Readers should skip event types they do not know: new ones will "
        "be added.",
        f"**Wire format.** One UTF-8 JSON object per message, at most {MAX_MESSAGE_BYTES:,} "
        "bytes, with `schema_version`; events also carry `time` and `type`, which ends their "
        "subject.",
        "**Key-value buckets** (JetStream KV: stream `KV_<bucket>`, subjects "
        "`$KV.<bucket>.<key>`):",
        "\n".join(
            f"- `{b.name}` (keys {b.keys}; written by {b.writer}): {_content(b)}" for b in BUCKETS
        ),
        "**Service discovery.** Every service answers NATS micro's `$SRV.PING`, `$SRV.INFO` and "
        "`$SRV.STATS` (`nats micro ls`).",
    ]


def _wrap(paragraph: str) -> str:
    """A paragraph wrapped, or each item of a list wrapped and indented under its dash."""
    return "\n".join(
        textwrap.fill(
            line,
            92,
            subsequent_indent="  " if line.startswith("- ") else "",
            break_on_hyphens=False,
            break_long_words=False,
        )
        for line in paragraph.split("\n")
    )


def _info_description() -> str:
    return "\n\n".join(_wrap(paragraph) for paragraph in _paragraphs()) + "\n"


def _info() -> dict[str, Any]:
    return {
        "title": "blaze-cluster",
        "version": __version__,
        "description": _info_description(),
        "tags": [
            {"name": "events", "description": f"Durable: stored in `{subjects.EVENTS_STREAM}`."},
            {"name": "cluster", "description": "Core NATS between parts of the cluster."},
            {"name": "admin", "description": "Core NATS requests from clients of the cluster."},
        ],
    }


def _servers() -> dict[str, Any]:
    return {
        "local": {
            "host": "127.0.0.1:4222",
            "protocol": "nats",
            "description": "A NATS server of the cluster. `blaze up` picks a free port on "
            "127.0.0.1 and writes its URL to `nats_url` in `<data dir>/cluster.json`.",
        }
    }


def _event_channel(model: type[Event]) -> dict[str, Any]:
    route = event_route(model)
    address = route.subject(event_type(model))
    return {
        "address": address,
        "title": event_type(model),
        "summary": f"Published by {route.publisher}; stored in {subjects.EVENTS_STREAM}.",
        "description": _doc(model),
        **_parameters(address),
        "messages": {model.__name__: _ref("components", "messages", model.__name__)},
        "tags": [{"name": "events"}],
    }


def _core_channel(channel: CoreChannel) -> dict[str, Any]:
    name = channel.message.__name__
    return {
        "address": channel.subject,
        "title": channel.name,
        "summary": f"{channel.sender} → {channel.receiver}",
        "description": channel.note,
        **_parameters(channel.subject),
        "messages": {name: _ref("components", "messages", name)},
        "tags": [{"name": "admin" if channel.sent_by_client else "cluster"}],
    }


def _reply_names(channel: CoreChannel) -> list[str]:
    if channel.raw_reply:
        return [CHUNK_MESSAGE]
    return [channel.reply.__name__] if channel.reply else []


def _reply_channel() -> dict[str, Any]:
    names = dict.fromkeys(name for c in CORE_CHANNELS for name in _reply_names(c))
    return {
        "address": None,
        "title": REPLY_CHANNEL,
        "description": "The requester's reply subject (a NATS inbox): where every answer to "
        "a request goes.",
        "messages": {name: _ref("components", "messages", name) for name in names},
    }


def _channels() -> dict[str, Any]:
    channels = {event_type(model): _event_channel(model) for model in event_models()}
    channels.update({c.name: _core_channel(c) for c in CORE_CHANNELS})
    channels[REPLY_CHANNEL] = _reply_channel()
    return channels


def _operation(action: str, channel: str, message: str, summary: str) -> dict[str, Any]:
    return {
        "action": action,
        "channel": _ref("channels", channel),
        "summary": summary,
        "messages": [_ref("channels", channel, "messages", message)],
    }


def _with_reply(operation: dict[str, Any], channel: CoreChannel) -> dict[str, Any]:
    if not channel.request_reply:
        return operation
    messages = [_ref("channels", REPLY_CHANNEL, "messages", n) for n in _reply_names(channel)]
    return {
        **operation,
        "reply": {"channel": _ref("channels", REPLY_CHANNEL), "messages": messages},
    }


def _core_operations(channel: CoreChannel) -> dict[str, Any]:
    message = channel.message.__name__
    waits, answers = ("", "")
    if channel.request_reply:
        waits, answers = (", as a request", ", which answers")
    operations = {}
    if not channel.sent_by_client:
        send = _operation("send", channel.name, message, f"Sent by {channel.sender}{waits}.")
        operations[f"send_{channel.name}"] = _with_reply(send, channel)
    receive = _operation(
        "receive", channel.name, message, f"Received by {channel.receiver}{answers}."
    )
    operations[f"receive_{channel.name}"] = _with_reply(receive, channel)
    return operations


def _operations() -> dict[str, Any]:
    operations = {
        f"send_{event_type(model)}": _operation(
            "send",
            event_type(model),
            model.__name__,
            f"Published by {event_route(model).publisher}.",
        )
        for model in event_models()
    }
    for channel in CORE_CHANNELS:
        operations.update(_core_operations(channel))
    return operations


def _schemas() -> dict[str, Any]:
    # Validation mode, as model_json_schema(): what blaze's parsers accept.
    pairs: list[tuple[type[BaseModel], Literal["validation"]]]
    pairs = [(model, "validation") for model in schema_models()]
    _, top = models_json_schema(pairs, ref_template="#/components/schemas/{model}")
    defs: dict[str, Any] = top.get("$defs", {})
    return dict(sorted(defs.items()))


_EVENT_HEADERS = {
    "type": "object",
    "properties": {
        "Nats-Msg-Id": {
            "type": "string",
            "description": "The id of the decision; the stream drops a repeat (R11).",
        }
    },
}

_CHUNK_MESSAGE = {
    "name": CHUNK_MESSAGE,
    "title": CHUNK_MESSAGE,
    "summary": "One chunk of a segment file, or why it cannot be read.",
    "contentType": "application/octet-stream",
    "headers": {
        "type": "object",
        "properties": {
            "sha256": {"type": "string", "description": "SHA-256 of the body, hex."},
            "error": {"type": "string", "description": "Why not; the body is then empty."},
        },
    },
    "payload": {"type": "string", "format": "binary"},
}


def _message(model: type[BaseModel]) -> dict[str, Any]:
    """An event is named by its ``type`` and carries the ``Nats-Msg-Id`` header."""
    name, headers = model.__name__, {}
    if issubclass(model, Event):
        name, headers = event_type(model), {"headers": _EVENT_HEADERS}
    return {
        "name": name,
        "title": model.__name__,
        "summary": _doc(model),
        "contentType": "application/json",
        **headers,
        "payload": _ref("components", "schemas", model.__name__),
    }


def _components() -> dict[str, Any]:
    messages = {model.__name__: _message(model) for model in message_models()}
    messages[CHUNK_MESSAGE] = _CHUNK_MESSAGE
    return {
        "schemas": _schemas(),
        "messages": messages,
        "parameters": {name: {"description": text} for name, text in PARAMETERS.items()},
    }


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3 document of every channel, operation and message of the cluster."""
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": _info(),
        "servers": _servers(),
        "defaultContentType": "application/json",
        "channels": _channels(),
        "operations": _operations(),
        "components": _components(),
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, which read (and diff) as they were written;
    a value used twice written twice, not as a YAML alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def asyncapi_yaml() -> str:
    """The document as YAML, in a stable order, headed by where it comes from."""
    header = f"# Generated by `{REGENERATE}` from shared/messages and shared/subjects.py.\n"
    header += "# Do not edit: tests/unit/test_catalog.py fails when it is stale.\n"
    body = yaml.dump(
        asyncapi_document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    )
    return header + body


# ---- the files --------------------------------------------------------------------------------


def _contents(docs: Path) -> dict[Path, str]:
    """What each generated file must contain."""
    events, security = docs / "events.md", docs / "security.md"
    return {
        docs / "asyncapi.yaml": asyncapi_yaml(),
        events: fill(events.read_text(), generated_sections()),
        security: fill(security.read_text(), {"permission matrix": matrix_markdown()}),
    }


def _stale(contents: dict[Path, str]) -> list[Path]:
    return [
        path for path, text in contents.items() if not path.exists() or path.read_text() != text
    ]


def stale_files(docs: Path = DOCS) -> list[Path]:
    """The generated files that differ from what the code says now."""
    return _stale(_contents(docs))


def write(docs: Path = DOCS) -> list[Path]:
    """Rewrite the stale files in place; returns them."""
    contents = _contents(docs)
    stale = _stale(contents)
    for path in stale:
        path.write_text(contents[path])
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    """``--write`` regenerates docs/asyncapi.yaml and docs/events.md; ``--check`` exits 1
    when either is stale."""
    parser = argparse.ArgumentParser(prog="python -m shared.messages.catalog", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the stale files")
    mode.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the docs directory")
    args = parser.parse_args(argv)
    if args.write:
        for path in write(args.docs):
            print(f"rewrote {path}")
        return 0
    stale = stale_files(args.docs)
    for path in stale:
        print(f"{path} is stale: run {REGENERATE}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
