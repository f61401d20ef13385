"""The heartbeat parser of every heartbeat subscriber (health, placement): each heartbeat
validated as strictly as ``Heartbeat.model_validate_json``, without parsing again what
it has already proved.

A server repeats itself: from one heartbeat to the next, only the sequence changes
until its cameras or its storage do. For each known server the parser remembers the
bytes of its last valid heartbeat around the sequence's digits. A heartbeat that is
exactly those bytes with other digits is the canonical encoding of the remembered
heartbeat with another sequence, so validating it could only give that heartbeat with
that sequence (or refuse the sequence, which is checked against the same bounds). Any
other byte string goes through full validation, whose errors the bus counts as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.messages import Heartbeat, encode
from shared.messages.base import MAX_INT64

SEQUENCE_KEY = b',"sequence":'
"""What precedes the sequence's digits in a canonically encoded heartbeat."""

MAX_SEQUENCE_DIGITS = len(str(MAX_INT64))


@dataclass(frozen=True, slots=True)
class _Template:
    """What follows the sequence's digits in one server's last valid heartbeat, and that
    heartbeat (its repeats share its ``hosted`` dict: read it, never change it)."""

    suffix: bytes
    heartbeat: Heartbeat


class HeartbeatParser:
    """``model_validate_json`` for heartbeats, remembering one template per known server."""

    def __init__(self, servers: Iterable[str]) -> None:
        self._known = frozenset(servers)
        """Only these servers' heartbeats are remembered: memory bounded by the config."""
        self._templates: dict[bytes, _Template] = {}
        """By prefix (everything up to the sequence's digits)."""
        self._prefix_of: dict[str, bytes] = {}
        self.repeats = 0
        """Heartbeats recognised as a remembered one with another sequence."""
        self.parsed = 0
        """Heartbeats that went through full validation (valid or not)."""

    @property
    def remembered(self) -> int:
        """Servers whose last heartbeat is kept as a template (at most one each)."""
        return len(self._templates)

    def model_validate_json(self, raw: bytes) -> Heartbeat:
        """The heartbeat ``raw`` encodes; ``pydantic.ValidationError`` if it is invalid."""
        known = self._repeat(raw)
        if known is not None:
            self.repeats += 1
            return known
        self.parsed += 1
        hb = Heartbeat.model_validate_json(raw)  # refusals propagate, counted by the bus
        self._remember(raw, hb)
        return hb

    def _repeat(self, raw: bytes) -> Heartbeat | None:
        """The remembered heartbeat with this sequence, if ``raw`` is one with other digits."""
        at = raw.find(SEQUENCE_KEY)
        if at < 0:
            return None
        start = at + len(SEQUENCE_KEY)
        template = self._templates.get(raw[:start])
        if template is None or not raw.endswith(template.suffix):
            return None
        digits = raw[start : len(raw) - len(template.suffix)]
        # A JSON integer as pydantic writes one: no sign, no leading zero, no fraction,
        # no exponent; anything else is validated in full (and refused there, or not).
        if not (0 < len(digits) <= MAX_SEQUENCE_DIGITS and digits.isdigit()):
            return None
        if digits[0] == ord("0") and len(digits) > 1:
            return None
        sequence = int(digits)
        if sequence > MAX_INT64:
            return None
        return template.heartbeat.model_copy(update={"sequence": sequence})

    def _remember(self, raw: bytes, hb: Heartbeat) -> None:
        """Keep ``hb`` as its server's template when ``raw`` is its canonical encoding."""
        if hb.server not in self._known or encode(hb) != raw:
            return  # a stranger's, or written by another encoder: always in full
        # The fields before the sequence, as the canonical encoding writes them.
        head = hb.model_dump_json(by_alias=True, include={"schema_version", "server", "boot_id"})
        prefix = head.encode()[:-1] + SEQUENCE_KEY
        digits = str(hb.sequence).encode()
        end = len(prefix) + len(digits)
        if not (raw.startswith(prefix) and raw[len(prefix) : end] == digits):
            return
        old = self._prefix_of.pop(hb.server, None)
        if old is not None:
            del self._templates[old]
        suffix = raw[end:]
        self._templates[prefix] = _Template(suffix, hb)
        self._prefix_of[hb.server] = prefix
