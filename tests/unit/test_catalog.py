"""The event catalog in docs/events.md matches the models (R13)."""

from __future__ import annotations

from pathlib import Path

from shared.messages.catalog import event_models, schema_section

DOC = Path(__file__).parents[2] / "docs" / "events.md"


def test_r13_the_schema_section_of_the_event_catalog_is_current() -> None:
    """R13: regenerate with ``python -m shared.messages.catalog`` when a model changes."""
    assert DOC.read_text().endswith(schema_section()), "docs/events.md schemas are stale"


def test_r13_every_event_type_has_its_own_entry_in_the_catalog() -> None:
    """R13: each event type is described (subject, fields, example), not only its schema."""
    text = DOC.read_text()
    for model in event_models():
        event_type = model.model_fields["type"].default
        assert f"### `{event_type}`" in text, f"{event_type} is not in docs/events.md"
