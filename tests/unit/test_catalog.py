"""The event catalog, docs/events.md and docs/asyncapi.yaml, matches the code (R13)."""

from __future__ import annotations

import inspect
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from shared import subjects
from shared.messages.catalog import (
    REGENERATE,
    asyncapi_yaml,
    fill,
    generated_sections,
    main,
    message_models,
)
from shared.messages.channels import EVENT_ROUTES, event_models, event_route, event_type
from shared.messages.events import Event

DOCS = Path(__file__).parents[2] / "docs"
EVENTS_MD = DOCS / "events.md"
ASYNCAPI = DOCS / "asyncapi.yaml"
SECURITY_MD = DOCS / "security.md"

NOT_SUBJECT_BUILDERS = {"server_of_heartbeat", "kv_stream", "kv_subject"}
"""A parser, and the KV internals (the buckets are described, not channels)."""
ID_PLACEHOLDERS = {"server_id": "{server}", "camera_id": "{camera}"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded = yaml.safe_load(ASYNCAPI.read_text())
    assert isinstance(loaded, dict)
    return loaded


# ---- freshness ----


def test_r13_docs_asyncapi_yaml_is_current() -> None:
    """R13: a model, subject or route changed: regenerate."""
    assert ASYNCAPI.read_text() == asyncapi_yaml(), f"docs/asyncapi.yaml is stale: run {REGENERATE}"


def test_r13_the_generated_sections_of_docs_events_md_are_current() -> None:
    """R13: the subject and bucket tables and the JSON Schemas follow the code."""
    text = EVENTS_MD.read_text()
    assert fill(text, generated_sections()) == text, f"docs/events.md is stale: run {REGENERATE}"


def test_check_fails_on_a_stale_file_and_write_repairs_it_keeping_the_prose(
    tmp_path: Path,
) -> None:
    shutil.copy(EVENTS_MD, tmp_path / "events.md")
    shutil.copy(ASYNCAPI, tmp_path / "asyncapi.yaml")
    stale = EVENTS_MD.read_text().replace("| `blaze.admin.drain` |", "| `blaze.admin.gone` |")
    (tmp_path / "events.md").write_text(stale)
    (tmp_path / "asyncapi.yaml").write_text("asyncapi: 3.0.0\n")
    # issue 7: the permission matrix of docs/security.md is generated too.
    matrix = SECURITY_MD.read_text().replace("`blaze.hb.*`", "`blaze.hb.>`")
    (tmp_path / "security.md").write_text(matrix)

    assert main(["--check", "--docs", str(tmp_path)]) == 1
    assert main(["--write", "--docs", str(tmp_path)]) == 0

    assert main(["--check", "--docs", str(tmp_path)]) == 0
    assert (tmp_path / "events.md").read_text() == EVENTS_MD.read_text()
    assert (tmp_path / "asyncapi.yaml").read_text() == ASYNCAPI.read_text()
    assert (tmp_path / "security.md").read_text() == SECURITY_MD.read_text()


def test_write_refuses_a_doc_without_the_markers_of_a_section() -> None:
    with pytest.raises(ValueError, match="schemas"):
        fill("# Event catalog\n", {"schemas": "### X\n"})


# ---- docs/events.md by hand ----


def _entry(text: str, event: str) -> str:
    """The hand-written entry of one event type: from its heading to the next."""
    start = text.index(f"### `{event}`\n")
    end = text.find("\n### ", start + 1)
    return text[start:end]


def test_r13_every_event_type_has_its_own_entry_naming_its_subject() -> None:
    """R13: each event type is described (subject, fields, example), not only its schema."""
    text = EVENTS_MD.read_text()
    for model in event_models():
        event = event_type(model)
        assert f"### `{event}`\n" in text, f"{event} has no entry in docs/events.md"
        subject = re.sub(r"\{(\w+)\}", r"<\1>", event_route(model).subject(event))
        entry = " ".join(_entry(text, event).split())
        assert f"Subject `{subject}`" in entry, f"the entry of {event} should name {subject}"


# ---- docs/asyncapi.yaml: content ----


def test_every_event_type_has_a_route_and_every_route_an_event_type() -> None:
    assert {event_type(model) for model in event_models()} == set(EVENT_ROUTES)


def test_an_event_type_without_a_route_is_refused_naming_where_to_add_it() -> None:
    class Unrouted(Event):
        type: Literal["unrouted"] = "unrouted"

    with pytest.raises(LookupError, match=r"EVENT_ROUTES of shared/messages/channels\.py"):
        event_route(Unrouted)


def test_r13_the_document_is_asyncapi_3(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "blaze-cluster"
    assert document["info"]["version"]
    assert {server["protocol"] for server in document["servers"].values()} == {"nats"}


def test_r13_every_event_has_its_channel_send_operation_and_schema(
    document: dict[str, Any],
) -> None:
    for model in event_models():
        event = event_type(model)
        channel = document["channels"][event]
        assert channel["address"] == event_route(model).subject(event)
        assert model.__name__ in channel["messages"]
        assert document["operations"][f"send_{event}"]["action"] == "send"
        assert document["components"]["messages"][model.__name__]["name"] == event
        assert model.__name__ in document["components"]["schemas"]


def test_r13_every_message_model_is_a_message_with_its_schema(document: dict[str, Any]) -> None:
    components = document["components"]
    for model in message_models():
        assert model.__name__ in components["messages"], model.__name__
        assert components["schemas"][model.__name__]["title"] == model.__name__


def _builders() -> Iterator[tuple[str, Callable[..., str]]]:
    for name, builder in inspect.getmembers(subjects, inspect.isfunction):
        public = not name.startswith("_") and name not in NOT_SUBJECT_BUILDERS
        if public and builder.__module__ == subjects.__name__:
            yield name, builder


def _family(builder: Callable[..., str]) -> str:
    """The builder's subject with a placeholder for every argument."""
    names = inspect.signature(builder).parameters
    return builder(*(ID_PLACEHOLDERS.get(name, f"{{{name}}}") for name in names))


def _pattern(subject: str) -> re.Pattern[str]:
    """Channel addresses a subject covers: ``*`` and a non-id placeholder match one token,
    ``>`` the rest; ``{server}`` and ``{camera}`` match themselves (channel parameters)."""
    tokens = []
    for token in subject.split("."):
        if token == ">":
            tokens.append(r".+")
        elif token == "*" or (token.startswith("{") and token not in ID_PLACEHOLDERS.values()):
            tokens.append(r"[^.]+")
        else:
            tokens.append(re.escape(token))
    return re.compile(r"\.".join(tokens) + r"\Z")


def _addresses(document: dict[str, Any]) -> list[str]:
    return [c["address"] for c in document["channels"].values() if c["address"] is not None]


def test_r13_every_subject_builder_has_a_channel(document: dict[str, Any]) -> None:
    addresses = _addresses(document)
    builders = dict(_builders())
    assert "server_event" in builders, "the test no longer finds the builders"
    for name, builder in builders.items():
        pattern = _pattern(_family(builder))
        assert any(pattern.match(a) for a in addresses), f"subjects.{name}: no channel"


def test_r13_every_subject_constant_has_a_channel(document: dict[str, Any]) -> None:
    addresses = _addresses(document)
    constants = {
        name: value
        for name, value in vars(subjects).items()
        if isinstance(value, str) and value.startswith(f"{subjects.ROOT}.")
    }
    assert "ADMIN_DRAIN" in constants, "the test no longer finds the constants"
    for name, subject in constants.items():
        pattern = _pattern(subject)
        assert any(pattern.match(a) for a in addresses), f"subjects.{name}: no channel"


def test_r13_the_stream_and_every_bucket_are_described(document: dict[str, Any]) -> None:
    description = document["info"]["description"]
    assert f"`{subjects.EVENTS_STREAM}`" in description
    buckets = [v for k, v in vars(subjects).items() if k.endswith("_BUCKET")]
    assert buckets
    for bucket in buckets:
        assert f"`{bucket}`" in description, bucket


# ---- docs/asyncapi.yaml: structure ----


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref}: only references inside the document"
    node: Any = document
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref}: {key} under a non-object"
        assert key in node, f"{ref} does not resolve"
        node = node[key]
    return node


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = set(_refs(document))
    assert len(refs) > 50
    for ref in refs:
        _resolve(document, ref)


def test_every_operation_uses_an_existing_channel_and_only_its_messages(
    document: dict[str, Any],
) -> None:
    for name, operation in document["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel_ref = operation["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/"), name
        _resolve(document, channel_ref)
        assert operation["messages"], name
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel_ref}/messages/"), name
        reply = operation.get("reply")
        if reply is not None:
            _resolve(document, reply["channel"]["$ref"])
            for message in reply["messages"]:
                assert message["$ref"].startswith(f"{reply['channel']['$ref']}/messages/"), name


def test_every_channel_message_is_a_component_message(document: dict[str, Any]) -> None:
    for name, channel in document["channels"].items():
        assert channel["messages"], name
        for message in channel["messages"].values():
            assert message["$ref"].startswith("#/components/messages/"), name


def test_every_channel_parameter_is_a_placeholder_of_its_address(
    document: dict[str, Any],
) -> None:
    for name, channel in document["channels"].items():
        placeholders = set(re.findall(r"\{(\w+)\}", channel["address"] or ""))
        assert set(channel.get("parameters", {})) == placeholders, name
        assert placeholders <= set(document["components"]["parameters"]), name


def test_every_message_payload_is_a_schema_of_the_document(document: dict[str, Any]) -> None:
    for name, message in document["components"]["messages"].items():
        payload = message["payload"]
        if "$ref" in payload:
            assert payload["$ref"] == f"#/components/schemas/{name}"
        else:
            assert payload["type"] == "string", name  # the raw bytes of a chunk
