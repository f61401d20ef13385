"""Logs: one JSON object per line with the ids that matter when nobody watches, a readable
line on a terminal (R13)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from shared.logs import (
    LOG_FORMAT_ENV,
    OncePerInterval,
    bind_log_context,
    choose_format,
    log_context,
    setup_logging,
)


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr does in an interactive shell."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(LOG_FORMAT_ENV, raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_r13_not_on_a_terminal_each_record_is_one_json_line_with_its_ids() -> None:
    """``extra=`` ids (server, camera, epoch) become fields; time is UTC ISO 8601."""
    out = io.StringIO()
    assert setup_logging("placement", stream=out) == "json"
    log = logging.getLogger("blaze.test")
    log.info(
        "moved %s to %s", "cam-1", "rs-2", extra={"camera": "cam-1", "server": "rs-2", "epoch": 7}
    )
    log.debug("not at INFO")
    [record] = lines(out)
    assert record["message"] == "moved cam-1 to rs-2"
    assert record["level"] == "INFO"
    assert record["service"] == "placement"
    assert record["logger"] == "blaze.test"
    assert (record["server"], record["camera"], record["epoch"]) == ("rs-2", "cam-1", 7)
    assert record["time"].endswith("Z")
    assert list(record)[:3] == ["time", "level", "service"]


def test_r13_a_message_with_quotes_newlines_and_unicode_stays_one_valid_line() -> None:
    out = io.StringIO()
    setup_logging("health", stream=out)
    logging.getLogger("blaze.test").warning('refused "x"\nnext line – ok', extra={"path": object()})
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == 'refused "x"\nnext line – ok'
    assert record["path"].startswith("<object")  # anything else becomes its str()


def test_r13_an_exception_is_in_the_json_line_not_after_it() -> None:
    out = io.StringIO()
    setup_logging("sync", stream=out)
    try:
        _fail()
    except ValueError:
        logging.getLogger("blaze.test").exception("job stumbled", extra={"camera": "c1"})
    [record] = lines(out)
    assert record["camera"] == "c1"
    assert "ValueError: boom" in record["exception"]
    assert "Traceback" in record["exception"]


def _fail() -> None:
    raise ValueError("boom")


def test_r13_on_a_terminal_a_line_is_for_a_person_with_its_ids_at_the_end() -> None:
    tty = Terminal()
    assert setup_logging("heartbeat", stream=tty) == "text"
    logging.getLogger("blaze.test").info(
        "claim %s", "cam-1", extra={"camera": "cam-1", "epoch": 3, "server": "rs-1"}
    )
    line = tty.getvalue().rstrip("\n")
    assert " INFO heartbeat: claim cam-1  server=rs-1 camera=cam-1 epoch=3" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_r13_the_format_can_be_forced_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_format(Terminal(), "json") == "json"
    assert choose_format(io.StringIO(), "text") == "text"
    monkeypatch.setenv(LOG_FORMAT_ENV, "json")
    assert choose_format(Terminal()) == "json"
    monkeypatch.setenv(LOG_FORMAT_ENV, "auto")
    assert choose_format(Terminal()) == "text"
    assert choose_format(io.StringIO()) == "json"


def test_r13_log_context_tags_every_record_and_a_call_s_own_ids_win() -> None:
    out = io.StringIO()
    setup_logging("heartbeat", stream=out)
    log = logging.getLogger("blaze.test")
    with log_context(server="rs-1"):
        log.info("up")
        log.info("claim", extra={"camera": "c1", "server": "rs-9"})
    log.info("outside")
    up, claim, outside = lines(out)
    assert up["server"] == "rs-1"
    assert (claim["server"], claim["camera"]) == ("rs-9", "c1")
    assert "server" not in outside


async def test_r13_bound_context_stays_with_its_task_and_the_tasks_it_starts() -> None:
    """Agents of one process (the in-test cluster) each tag only their own records."""
    out = io.StringIO()
    setup_logging("heartbeat", stream=out)
    log = logging.getLogger("blaze.test")

    async def agent(server: str) -> None:
        bind_log_context(server=server)
        await asyncio.sleep(0)  # let the other agent bind its own meanwhile
        log.info("beat")
        await asyncio.create_task(_log_from_child(log))

    await asyncio.gather(agent("rs-1"), agent("rs-2"))
    log.info("main")
    servers = sorted(str(r.get("server")) for r in lines(out))
    assert servers == ["None", "rs-1", "rs-1", "rs-2", "rs-2"]


async def _log_from_child(log: logging.Logger) -> None:
    log.info("child")


def test_r13_once_per_interval_passes_ids_and_drops_repeats() -> None:
    out = io.StringIO()
    setup_logging("health", stream=out)
    limited = OncePerInterval(logging.getLogger("blaze.test"), interval=60)
    limited.warning("k", "rejected %s", "x", server="rs-1")
    limited.warning("k", "rejected %s", "y", server="rs-1")
    [record] = lines(out)
    assert (record["message"], record["server"]) == ("rejected x", "rs-1")


def test_once_per_interval_logs_at_most_max_keys_senders_and_then_says_how_many_it_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hostile input from ever new senders (subjects) cannot flood the log: past
    ``max_keys`` keys within an interval nothing is logged, and the first line after the
    interval carries how many were left out. Memory stays bounded by ``max_keys``."""
    clock = [1000.0]
    monkeypatch.setattr("shared.logs.time.monotonic", lambda: clock[0])
    out = io.StringIO()
    setup_logging("health", stream=out)
    limited = OncePerInterval(logging.getLogger("blaze.test"), interval=10, max_keys=3)
    for n in range(1000):
        limited.warning(f"blaze.hb.stranger-{n}:invalid", "rejected %d", n)
    assert [r["message"] for r in lines(out)] == ["rejected 0", "rejected 1", "rejected 2"]
    assert len(limited._last) == 3

    clock[0] += 10
    limited.warning("blaze.hb.rs-1:invalid", "rejected %s", "rs-1")
    limited.warning("blaze.hb.rs-1:invalid", "rejected %s", "rs-1 again")
    last = lines(out)[-1]
    assert (last["message"], last["suppressed"]) == ("rejected rs-1", 997)
    assert len(lines(out)) == 4
    assert len(limited._last) == 1
