"""The health leader's heartbeat parser (issue 8): as strict as ``Heartbeat``'s own
validation for any bytes, and fast for a server's repeats."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.messages import Heartbeat, encode
from shared.messages.base import MAX_INT64
from shared.messages.heartbeat_parser import HeartbeatParser
from tests.unit.test_detector import hb as detector_heartbeat

SERVERS = ("rs-1", "rs-2")


def heartbeat(
    seq: int, *, hosted: dict[str, int] | None = None, storage_ok: bool = True, **kw: Any
) -> Heartbeat:
    """One heartbeat of ``server`` (rs-1) hosting two cameras unless told otherwise."""
    error = None if storage_ok else "disk gone"
    two = {"c1": 3, "c2": 7} if hosted is None else hosted
    return detector_heartbeat(seq, hosted=two, storage_ok=storage_ok, error=error, **kw)


def primed(*first: Heartbeat) -> HeartbeatParser:
    """A parser that has seen ``first`` (valid, canonically encoded)."""
    parser = HeartbeatParser(SERVERS)
    for hb in first:
        parser.model_validate_json(encode(hb))
    return parser


def same_outcome(parser: HeartbeatParser, data: bytes) -> None:
    """The parser accepts ``data`` as exactly what full validation gives, or refuses it too."""
    try:
        expected = Heartbeat.model_validate_json(data)
    except ValidationError:
        with pytest.raises(ValidationError):
            parser.model_validate_json(data)
        return
    got = parser.model_validate_json(data)
    assert type(got) is Heartbeat
    assert got == expected
    assert got.model_dump() == expected.model_dump()
    assert encode(got) == encode(expected)


def test_a_repeat_with_another_sequence_is_recognised_without_full_validation() -> None:
    parser = primed(heartbeat(0))
    got = parser.model_validate_json(encode(heartbeat(1)))
    assert got == heartbeat(1)
    assert (parser.parsed, parser.repeats) == (1, 1)


def test_changed_cameras_or_storage_are_validated_in_full_and_become_the_template() -> None:
    parser = primed(heartbeat(0))
    moved = heartbeat(1, hosted={"c1": 4})
    assert parser.model_validate_json(encode(moved)) == moved
    failed = heartbeat(2, hosted={"c1": 4}, storage_ok=False)
    assert parser.model_validate_json(encode(failed)) == failed
    assert (parser.parsed, parser.repeats) == (3, 0)
    assert parser.model_validate_json(encode(heartbeat(3, hosted={"c1": 4}, storage_ok=False)))
    assert parser.repeats == 1


def test_each_known_server_keeps_one_template_and_strangers_none() -> None:
    parser = primed(heartbeat(0), heartbeat(0, server="rs-2"))
    for boot in ("boot-b", "boot-c", "boot-d"):
        parser.model_validate_json(encode(heartbeat(0, boot=boot)))
    parser.model_validate_json(encode(heartbeat(0, server="stranger")))
    assert parser.remembered == len(SERVERS)
    parser.model_validate_json(encode(heartbeat(1, server="stranger")))
    assert parser.repeats == 0
    assert parser.model_validate_json(encode(heartbeat(1, boot="boot-d"))).boot_id == "boot-d"
    assert parser.repeats == 1


def test_a_heartbeat_written_by_another_encoder_is_always_validated_in_full() -> None:
    loose = json.dumps(heartbeat(0).model_dump(mode="json"), indent=1).encode()
    parser = primed()
    assert parser.model_validate_json(loose) == heartbeat(0)
    assert parser.model_validate_json(loose) == heartbeat(0)
    assert (parser.parsed, parser.repeats, parser.remembered) == (2, 0, 0)


def test_another_servers_body_is_returned_as_it_is_for_the_spoofing_check() -> None:
    parser = primed(heartbeat(0, server="rs-2"))
    assert parser.model_validate_json(encode(heartbeat(1, server="rs-2"))).server == "rs-2"


SEQUENCES = st.one_of(
    st.integers(-(2**70), 2**70).map(lambda n: str(n).encode()),
    st.sampled_from(
        [
            b"",
            b"0",
            b"00",
            b"007",
            b"-0",
            b"1.0",
            b"1e3",
            b"1E3",
            b" 5",
            b"5 ",
            b"+5",
            b"\xd9\xa5",  # an Arabic-Indic five: a digit to str.isdigit, not to JSON
            b"\xef\xbc\x95",  # a fullwidth five
            b'"5"',
            b"null",
            b"true",
            str(MAX_INT64).encode(),
            str(MAX_INT64 + 1).encode(),
            b"9" * 25,
        ]
    ),
    st.binary(max_size=24),
)


@given(first=st.integers(0, MAX_INT64), digits=SEQUENCES)
@example(first=0, digits=str(MAX_INT64 + 1).encode())
@example(first=12, digits=b"012")
def test_any_bytes_in_place_of_the_sequence_parse_exactly_as_in_full(
    first: int, digits: bytes
) -> None:
    template = encode(heartbeat(first))
    at = template.index(b',"sequence":') + len(b',"sequence":')
    end = at + len(str(first))
    parser = primed(heartbeat(first))
    same_outcome(parser, template[:at] + digits + template[end:])


@given(
    seq=st.integers(0, 10**6),
    at=st.integers(0, 400),
    cut=st.integers(0, 3),
    insert=st.binary(max_size=4),
)
@example(seq=5, at=0, cut=0, insert=b" ")
@example(seq=5, at=10_000, cut=0, insert=b" ")
@example(seq=5, at=10_000, cut=1, insert=b"")
@example(seq=5, at=60, cut=0, insert=b',"sequence":1')
def test_any_edit_of_a_repeat_parses_exactly_as_in_full(
    seq: int, at: int, cut: int, insert: bytes
) -> None:
    parser = primed(heartbeat(0), heartbeat(0, server="rs-2"))
    data = encode(heartbeat(seq))
    same_outcome(parser, data[:at] + insert + data[at + cut :])


@given(
    boot=st.text(min_size=1, max_size=64),
    error=st.one_of(st.none(), st.text(max_size=40)),
    seq=st.integers(0, MAX_INT64 - 1),
)
@example(boot='x","sequence":1,"y', error=None, seq=3)
@example(boot='x\\",\\"sequence\\":', error=',"sequence":9', seq=3)
def test_strings_that_look_like_the_sequence_do_not_fool_the_repeat_check(
    boot: str, error: str | None, seq: int
) -> None:
    hb = Heartbeat(
        server="rs-1",
        boot_id=boot,
        sequence=seq,
        capacity=1,
        storage_ok=error is None,
        storage_error=error,
    )
    parser = primed(hb)
    next_one = hb.model_copy(update={"sequence": seq + 1})
    assert parser.model_validate_json(encode(next_one)) == next_one
    assert parser.repeats == 1
    same_outcome(parser, encode(hb).replace(b"1", b"2"))


def test_a_heartbeat_with_a_repeated_key_is_never_a_template() -> None:
    """JSON's last duplicate wins: such bytes differ from the heartbeat's own encoding,
    and a template made of them would put the sequence in the wrong place."""
    canonical = encode(heartbeat(5))
    doubled = canonical[:-1] + b',"sequence":5}'
    parser = primed()
    assert parser.model_validate_json(doubled) == heartbeat(5)
    assert parser.remembered == 0
    same_outcome(parser, doubled.replace(b'"sequence":5,', b'"sequence":6,'))
    assert parser.repeats == 0
