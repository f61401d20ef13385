"""The detector's guards: mass silence holds network failovers, hold-down and a failover
limit keep a flapping server from bouncing its cameras (R2, R6; issue 4)."""

from __future__ import annotations

from services.health.detector import Detector, Liveness, Probe
from shared.messages import (
    FailoversHeld,
    FailureCause,
    Heartbeat,
    ServerFailed,
    ServerRecovered,
)

TIMEOUT = 10.0


def _hb(server: str, seq: int) -> Heartbeat:
    return Heartbeat(
        server=server, boot_id="b1", sequence=seq, capacity=4, hosted={}, storage_ok=True
    )


def _fleet(n: int, **guards: float) -> Detector:
    d = Detector(network_timeout=TIMEOUT, **guards)  # type: ignore[arg-type]  # floats
    for i in range(n):
        d.watch(f"rs-{i}", 0.0)
    return d


def _fail(d: Detector, server: str, now: float) -> list[object]:
    """Silence until ``now``, then a probe that fails."""
    d.tick(now)
    return list(d.probe_answered(server, reachable=False, now=now))


def test_r2_more_than_half_silent_holds_network_failovers_and_alerts_once() -> None:
    """Two of three silent at once: no failover, one alert; the third still heartbeats."""
    d = _fleet(3, mass_silence_share=0.5)
    d.heartbeat(_hb("rs-2", 1), 9.0)
    now = TIMEOUT + 0.5
    first = _fail(d, "rs-0", now)
    second = _fail(d, "rs-1", now)
    assert [type(e) for e in first] == [FailoversHeld]
    assert isinstance(first[0], FailoversHeld)
    assert first[0].servers == ("rs-0", "rs-1")
    assert second == []  # one alert per episode
    assert d.liveness("rs-0") is Liveness.PROBING
    assert d.liveness("rs-1") is Liveness.PROBING


def test_r2_once_fewer_are_silent_a_held_server_fails_over() -> None:
    """The observer's network recovers for one server; the other really is down."""
    d = _fleet(3, mass_silence_share=0.5)
    d.heartbeat(_hb("rs-2", 1), 9.0)
    _fail(d, "rs-0", TIMEOUT + 0.5)
    d.heartbeat(_hb("rs-1", 1), TIMEOUT + 1.0)
    d.heartbeat(_hb("rs-2", 2), TIMEOUT + 1.0)
    later = TIMEOUT + 2.0
    d.tick(later)
    assert [type(e) for e in d.probe_answered("rs-0", False, later)] == [ServerFailed]


def test_r2_half_exactly_is_not_more_than_half() -> None:
    """One of two silent is 50 %: the failover goes ahead."""
    d = _fleet(2, mass_silence_share=0.5)
    d.heartbeat(_hb("rs-1", 1), 9.0)
    assert [type(e) for e in _fail(d, "rs-0", TIMEOUT + 0.5)] == [ServerFailed]


def _fail_and_return(d: Detector, at: float) -> None:
    """rs-0 is cut at ``at`` (its last heartbeat), declared failed, then heartbeats again."""
    d.heartbeat(_hb("rs-0", int(at * 10)), at)
    _fail(d, "rs-0", at + TIMEOUT + 0.5)
    assert d.liveness("rs-0") is Liveness.NETWORK_FAILED


def _back(d: Detector, now: float, seq: int) -> list[object]:
    decisions = d.heartbeat(_hb("rs-0", seq), now)
    if decisions == [Probe("rs-0")]:
        return list(d.probe_answered("rs-0", True, now))
    return list(decisions)


def test_r6_failback_waits_for_the_hold_down() -> None:
    """Reachable again, the server must stay so for ``hold_down`` before it fails back."""
    d = _fleet(3, hold_down=3.0)
    for other in ("rs-1", "rs-2"):
        d.heartbeat(_hb(other, 1), 5.0)
    _fail_and_return(d, 5.0)
    t = 5.0 + TIMEOUT + 1.0
    assert _back(d, t, 1000) == []
    assert _back(d, t + 1.5, 1001) == []
    assert [type(e) for e in _back(d, t + 3.1, 1002)] == [ServerRecovered]


def test_r6_a_server_that_used_up_its_failovers_stays_away_until_the_window_passes() -> None:
    """max_failovers 2 per 100 s: the third failover's failback waits for the window."""
    d = _fleet(1, max_failovers=2, failover_window=100.0)
    t = 0.0
    for seq in range(2):
        _fail_and_return(d, t)
        t += TIMEOUT + 1.0
        recovered = _back(d, t, 10_000 + seq)
        t += 1.0
    assert [type(e) for e in recovered] == []  # the second failback is held
    assert d.liveness("rs-0") is Liveness.NETWORK_FAILED
    late = 100.0 + TIMEOUT
    assert _back(d, late - 0.5, 20_000) == []  # 10.5 and 22.5 are both within 100 s
    assert [type(e) for e in _back(d, late + 1.0, 20_001)] == [ServerRecovered]


def test_r2_a_second_mass_silence_episode_alerts_again() -> None:
    """One alert per episode: once fewer are silent, the next episode is reported too."""
    d = _fleet(3, mass_silence_share=0.5)
    d.heartbeat(_hb("rs-2", 1), 9.0)
    assert [type(e) for e in _fail(d, "rs-0", TIMEOUT + 0.5)] == [FailoversHeld]
    for sid in ("rs-0", "rs-1", "rs-2"):
        d.heartbeat(_hb(sid, 2), 12.0)
    d.tick(12.5)  # the episode is over
    for sid in ("rs-2",):
        d.heartbeat(_hb(sid, 3), 21.0)
    assert [type(e) for e in _fail(d, "rs-0", 22.5)] == [FailoversHeld]


def test_r2_failovers_go_ahead_after_the_longest_hold() -> None:
    """A real mass failure is not held for ever: after ``mass_silence_max_hold`` it fails."""
    d = _fleet(3, mass_silence_share=0.5, mass_silence_max_hold=30.0)
    d.heartbeat(_hb("rs-2", 1), 9.0)
    assert [type(e) for e in _fail(d, "rs-0", TIMEOUT + 0.5)] == [FailoversHeld]
    d.heartbeat(_hb("rs-2", 2), 40.0)
    assert [type(e) for e in _fail(d, "rs-0", TIMEOUT + 31.0)] == [ServerFailed]


def test_r7_a_restarted_detector_restores_each_server_from_the_log() -> None:
    """R7/R11: storage-failed stays cordoned (and unconfirmable until heartbeats say ok),
    network-failed stays failed, recovered is up; every server waits a whole timeout."""
    d = Detector(network_timeout=TIMEOUT)
    log = [
        ServerFailed(server="rs-0", cause=FailureCause.STORAGE),
        ServerFailed(server="rs-1", cause=FailureCause.NETWORK),
        ServerFailed(server="rs-2", cause=FailureCause.NETWORK),
        ServerRecovered(server="rs-2", cause=FailureCause.NETWORK),
        ServerFailed(server="rs-9", cause=FailureCause.NETWORK),  # no longer in the config
    ]
    d.restore(["rs-0", "rs-1", "rs-2"], log, now=100.0)
    assert [d.liveness(s) for s in ("rs-0", "rs-1", "rs-2")] == [
        Liveness.STORAGE_FAILED,
        Liveness.NETWORK_FAILED,
        Liveness.UP,
    ]
    assert d.liveness("rs-9") is None
    assert not d.servers["rs-0"].storage_ok
    assert d.tick(100.0 + TIMEOUT - 0.1) == []
