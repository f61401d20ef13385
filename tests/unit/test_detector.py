"""The failure detector, with the clock passed in: no sleeping (R1, R2, R3, R6, R7)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from services.health.detector import Decision, Detector, Liveness, Probe
from shared.messages import (
    FailbackConfirmed,
    FailureCause,
    Heartbeat,
    ServerFailed,
    ServerRecovered,
    ServerSilent,
    StorageRepaired,
)

RS1 = "rs-1"
TIMEOUT = 10.0


def hb(
    seq: int,
    *,
    server: str = RS1,
    boot: str = "boot-a",
    storage_ok: bool = True,
    error: str | None = None,
    hosted: dict[str, int] | None = None,
) -> Heartbeat:
    """One heartbeat of ``server``."""
    return Heartbeat(
        server=server,
        boot_id=boot,
        sequence=seq,
        capacity=4,
        hosted=hosted or {},
        storage_ok=storage_ok,
        storage_error=error,
    )


def kinds(decisions: Sequence[Decision]) -> list[str]:
    """The event types of ``decisions`` (``probe`` for a Probe), in order."""
    return ["probe" if isinstance(x, Probe) else x.type for x in decisions]


def watched(*servers: str, now: float = 0.0, timeout: float = TIMEOUT) -> Detector:
    """A detector watching ``servers`` (default rs-1) since ``now``."""
    d = Detector(network_timeout=timeout, reprobe_interval=1.0)
    for s in servers or (RS1,):
        d.watch(s, now)
    return d


def network_failed(at: float = TIMEOUT) -> Detector:
    """rs-1 declared network-failed at ``at``: silent since 0, then a failed probe."""
    d = watched()
    assert d.tick(at) == [Probe(RS1)]
    [failed] = d.probe_answered(RS1, reachable=False, now=at)
    assert isinstance(failed, ServerFailed)
    return d


def storage_failed() -> Detector:
    """rs-1 storage-failed at t=1 by heartbeat seq 1."""
    d = watched()
    d.heartbeat(hb(0), 0.5)
    [failed] = d.heartbeat(hb(1, storage_ok=False, error="EIO on /rec"), 1.0)
    assert isinstance(failed, ServerFailed)
    return d


# ---- R2: network failure needs silence for the timeout AND a failed probe ----


def test_r2_no_probe_before_the_timeout() -> None:
    """R2: a server silent for less than the timeout is not even probed."""
    d = watched()
    assert d.tick(9.99) == []
    assert d.liveness(RS1) is Liveness.UP


def test_r2_silence_for_the_timeout_asks_for_a_probe_not_a_failure() -> None:
    """R2: silence alone is not a failure: the detector only asks for a probe."""
    d = watched()
    assert d.tick(TIMEOUT) == [Probe(RS1)]
    assert d.liveness(RS1) is Liveness.PROBING


def test_r2_silence_and_a_failed_probe_declare_network_failure() -> None:
    """R2: no heartbeat for the timeout and an unreachable probe: network failure."""
    d = watched()
    d.tick(12.0)
    [event] = d.probe_answered(RS1, reachable=False, now=12.5)
    assert isinstance(event, ServerFailed)
    assert (event.server, event.cause) == (RS1, FailureCause.NETWORK)
    assert "12.5 s" in event.detail
    assert d.liveness(RS1) is Liveness.NETWORK_FAILED


def test_r2_a_probe_that_answers_means_silent_not_failed() -> None:
    """R2: silent but reachable is reported as ServerSilent, once, never as a failure."""
    d = watched()
    d.tick(TIMEOUT)
    [event] = d.probe_answered(RS1, reachable=True, now=10.2)
    assert isinstance(event, ServerSilent)
    assert (event.server, event.silent_for) == (RS1, 10.2)
    assert d.liveness(RS1) is Liveness.PROBING
    assert d.tick(10.5) == [], "re-probe waits for reprobe_interval"
    assert d.tick(11.2) == [Probe(RS1)]
    assert d.probe_answered(RS1, reachable=True, now=11.3) == [], "silence reported once"
    assert d.liveness(RS1) is Liveness.PROBING


def test_r2_silent_server_is_declared_failed_when_a_later_probe_fails() -> None:
    """R2: a silent server whose probe later fails is then a network failure."""
    d = watched()
    d.tick(TIMEOUT)
    d.probe_answered(RS1, reachable=True, now=TIMEOUT)
    assert d.tick(11.0) == [Probe(RS1)]
    [event] = d.probe_answered(RS1, reachable=False, now=11.0)
    assert isinstance(event, ServerFailed)
    assert event.cause is FailureCause.NETWORK


def test_r2_a_failed_probe_alone_is_not_a_failure() -> None:
    """R2: if a heartbeat arrived while the probe was out, a failed probe changes nothing."""
    d = watched()
    d.tick(TIMEOUT)
    assert d.heartbeat(hb(0), 10.3) == []
    assert d.probe_answered(RS1, reachable=False, now=10.5) == []
    assert d.liveness(RS1) is Liveness.UP


def test_r2_an_unrequested_failed_probe_of_a_live_server_is_ignored() -> None:
    """R2: a probe answer for a server that is not being probed cannot fail it."""
    d = watched()
    d.heartbeat(hb(0), 1.0)
    assert d.probe_answered(RS1, reachable=False, now=30.0) == []
    assert d.liveness(RS1) is Liveness.UP


def test_r2_a_heartbeat_while_probing_ends_the_silence() -> None:
    """R2: after a ServerSilent, the next heartbeat puts the server back up."""
    d = watched()
    d.tick(TIMEOUT)
    d.probe_answered(RS1, reachable=True, now=TIMEOUT)
    assert d.heartbeat(hb(0), 10.5) == []
    assert d.liveness(RS1) is Liveness.UP
    assert d.tick(15.0) == []


def test_r1_r2_regular_heartbeats_keep_a_server_up() -> None:
    """R1/R2: a server heartbeating every second is never probed, for minutes."""
    d = watched()
    for t in range(1, 300):
        assert d.heartbeat(hb(t), float(t)) == []
        assert d.tick(t + 0.9) == []
    assert d.liveness(RS1) is Liveness.UP


def test_r2_silence_is_measured_from_the_last_heartbeat() -> None:
    """R2: the timeout counts from the last heartbeat received, on the receiver's clock."""
    d = watched()
    d.heartbeat(hb(0), 5.0)
    assert d.tick(14.9) == []
    assert d.tick(15.0) == [Probe(RS1)]


def test_r2_the_timeout_is_configurable() -> None:
    """R2: a 3 s timeout probes after 3 s."""
    d = watched(timeout=3.0)
    assert d.tick(2.9) == []
    assert d.tick(3.0) == [Probe(RS1)]


def test_r2_one_probe_at_a_time() -> None:
    """R2: while a probe is out, ticks do not send another."""
    d = watched()
    assert d.tick(TIMEOUT) == [Probe(RS1)]
    assert d.tick(10.5) == []
    assert d.tick(20.0) == []


def test_r2_a_fresh_watch_waits_a_whole_timeout() -> None:
    """R2: a server watched from t=100 (e.g. after a restart) is not probed before t=110."""
    d = watched(now=100.0)
    assert d.tick(109.0) == []
    assert d.tick(110.0) == [Probe(RS1)]


def test_r2_only_the_silent_server_is_probed() -> None:
    """R2: servers are judged one by one."""
    d = watched("rs-1", "rs-2")
    d.heartbeat(hb(0, server="rs-2"), 8.0)
    assert d.tick(TIMEOUT) == [Probe("rs-1")]
    [event] = d.probe_answered("rs-1", reachable=False, now=TIMEOUT)
    assert isinstance(event, ServerFailed)
    assert event.server == "rs-1"
    assert d.liveness("rs-2") is Liveness.UP


def test_r2_a_network_failed_server_is_not_probed_again_by_ticks() -> None:
    """R2: a server already declared failed is not re-declared on every tick."""
    d = network_failed()
    assert d.tick(100.0) == []
    assert d.probe_answered(RS1, reachable=False, now=101.0) == []


# ---- R1: heartbeat identity: stale and replayed heartbeats ----


def test_r1_a_replayed_or_older_heartbeat_changes_nothing() -> None:
    """R1: a heartbeat with a sequence already seen does not count as a sign of life."""
    d = watched()
    d.heartbeat(hb(5), 1.0)
    assert d.heartbeat(hb(5), 9.0) == []
    assert d.heartbeat(hb(4, storage_ok=False), 9.0) == []
    assert d.liveness(RS1) is Liveness.UP
    assert d.tick(11.0) == [Probe(RS1)], "silence still counts from t=1"


def test_r1_a_new_boot_counts_even_with_a_lower_sequence() -> None:
    """R1: a restarted agent (new boot id) counts from 0 again and is heard."""
    d = watched()
    d.heartbeat(hb(50), 1.0)
    assert d.heartbeat(hb(0, boot="boot-b"), 9.0) == []
    assert d.tick(11.0) == []
    assert d.tick(19.0) == [Probe(RS1)]


def test_r1_a_heartbeat_of_an_unwatched_server_is_ignored() -> None:
    """R1: a server not in the config gets no view and no decisions."""
    d = watched()
    assert d.heartbeat(hb(0, server="rs-9", storage_ok=False), 1.0) == []
    assert d.liveness("rs-9") is None
    assert "rs-9" not in d.servers


def test_r2_probe_answer_of_an_unwatched_server_is_ignored() -> None:
    """R2: a stray probe answer changes nothing."""
    d = watched()
    assert d.probe_answered("rs-9", reachable=False, now=50.0) == []
    assert d.liveness("rs-9") is None


# ---- R3: storage failure from the heartbeat, at once ----


def test_r3_storage_failure_in_a_heartbeat_fails_the_server_at_once() -> None:
    """R3: no timeout, no probe: the heartbeat reporting failed storage is enough."""
    d = watched()
    d.heartbeat(hb(0), 0.5)
    [event] = d.heartbeat(hb(1, storage_ok=False, error="EIO on /rec"), 1.0)
    assert isinstance(event, ServerFailed)
    assert (event.server, event.cause, event.detail) == (RS1, FailureCause.STORAGE, "EIO on /rec")
    assert d.liveness(RS1) is Liveness.STORAGE_FAILED


def test_r3_storage_failure_without_an_error_text_has_a_default_detail() -> None:
    """R3: the event always says what the detector saw."""
    d = watched()
    [event] = d.heartbeat(hb(0, storage_ok=False), 0.1)
    assert isinstance(event, ServerFailed)
    assert event.detail == "storage reported failed"


def test_r3_storage_failure_is_declared_once() -> None:
    """R3: further heartbeats with failed storage do not fail the server again."""
    d = storage_failed()
    assert d.heartbeat(hb(2, storage_ok=False), 2.0) == []
    assert d.heartbeat(hb(3, storage_ok=False), 3.0) == []
    assert d.liveness(RS1) is Liveness.STORAGE_FAILED


def test_r3_storage_failure_while_being_probed() -> None:
    """R3: a storage report wins over an ongoing probe; the probe answer then changes nothing."""
    d = watched()
    d.tick(TIMEOUT)
    [event] = d.heartbeat(hb(0, storage_ok=False), 10.1)
    assert isinstance(event, ServerFailed)
    assert event.cause is FailureCause.STORAGE
    assert d.probe_answered(RS1, reachable=False, now=10.2) == []
    assert d.liveness(RS1) is Liveness.STORAGE_FAILED


def test_r3_storage_failure_reported_by_a_network_failed_server() -> None:
    """R3/R7: a server coming back with failed storage is storage-failed, not recovered."""
    d = network_failed()
    [event] = d.heartbeat(hb(0, storage_ok=False), 20.0)
    assert isinstance(event, ServerFailed)
    assert event.cause is FailureCause.STORAGE
    assert d.liveness(RS1) is Liveness.STORAGE_FAILED


def test_r3_a_storage_failed_server_is_never_network_failed_on_top() -> None:
    """R3/R7: silence of a storage-failed server does not re-fail it or recover it."""
    d = storage_failed()
    assert d.tick(100.0) == []
    assert d.liveness(RS1) is Liveness.STORAGE_FAILED


# ---- R6: network recovery fails back by itself ----


def test_r6_heartbeats_resume_and_probe_answers_recover_automatically() -> None:
    """R6: after a network failure, a heartbeat plus an answered probe recover the server."""
    d = network_failed()
    assert d.heartbeat(hb(0, boot="boot-b"), 30.0) == [Probe(RS1)]
    [event] = d.probe_answered(RS1, reachable=True, now=30.2)
    assert isinstance(event, ServerRecovered)
    assert (event.server, event.cause) == (RS1, FailureCause.NETWORK)
    assert d.liveness(RS1) is Liveness.UP


def test_r6_a_heartbeat_alone_does_not_recover() -> None:
    """R6: heartbeats resume but the probe fails: still failed; the next heartbeat re-probes."""
    d = network_failed()
    assert d.heartbeat(hb(0), 30.0) == [Probe(RS1)]
    assert d.heartbeat(hb(1), 30.5) == [], "one probe at a time"
    assert d.probe_answered(RS1, reachable=False, now=30.6) == []
    assert d.liveness(RS1) is Liveness.NETWORK_FAILED
    assert d.heartbeat(hb(2), 31.0) == [Probe(RS1)]


def test_r6_an_answered_probe_alone_does_not_recover() -> None:
    """R6: a probe answer without fresh heartbeats does not recover a network-failed server."""
    d = network_failed()
    assert d.probe_answered(RS1, reachable=True, now=40.0) == []
    assert d.liveness(RS1) is Liveness.NETWORK_FAILED


def test_r6_a_probe_answering_after_heartbeats_stopped_again_does_not_recover() -> None:
    """R6: both must hold when the answer arrives: the heartbeat must still be recent."""
    d = network_failed()
    d.heartbeat(hb(0), 30.0)
    assert d.probe_answered(RS1, reachable=True, now=30.0 + TIMEOUT) == []
    assert d.liveness(RS1) is Liveness.NETWORK_FAILED


def test_r6_r7_network_recovery_needs_no_confirmation() -> None:
    """R6/R7: confirmation is for storage failures only; a network failure is refused one."""
    d = network_failed()
    with pytest.raises(ValueError, match="is not storage-failed"):
        d.confirm_failback(RS1, 11.0)


# ---- R7: storage recovery waits for the administrator ----


def test_r7_storage_repair_is_reported_but_does_not_fail_back() -> None:
    """R7: repaired storage is announced; failback never starts by itself, however long."""
    d = storage_failed()
    [repaired] = d.heartbeat(hb(2), 2.0)
    assert isinstance(repaired, StorageRepaired)
    assert repaired.server == RS1
    for t in range(3, 200):
        decisions = d.heartbeat(hb(t), float(t)) + d.tick(t + 0.5)
        assert not any(isinstance(x, ServerRecovered) for x in decisions)
    assert d.liveness(RS1) is Liveness.STORAGE_FAILED


def test_r7_confirmation_of_a_repaired_server_fails_back() -> None:
    """R7: the administrator's confirmation emits FailbackConfirmed then ServerRecovered."""
    d = storage_failed()
    d.heartbeat(hb(2), 2.0)
    confirmed, recovered = d.confirm_failback(RS1, 3.0, by="alice")
    assert isinstance(confirmed, FailbackConfirmed)
    assert (confirmed.server, confirmed.by) == (RS1, "alice")
    assert isinstance(recovered, ServerRecovered)
    assert (recovered.server, recovered.cause) == (RS1, FailureCause.STORAGE)
    assert d.liveness(RS1) is Liveness.UP


def test_r7_confirmation_while_storage_still_fails_is_refused() -> None:
    """R7: a confirmation while the server still reports failed storage is refused, with why."""
    d = storage_failed()
    d.heartbeat(hb(2, storage_ok=False), 2.0)
    with pytest.raises(ValueError, match="'rs-1' still reports failed storage"):
        d.confirm_failback(RS1, 2.5)
    assert d.liveness(RS1) is Liveness.STORAGE_FAILED


def test_r7_storage_failing_again_after_a_repair_refuses_the_confirmation() -> None:
    """R7: repaired, then failed again before the confirmation: refused; repaired again: ok."""
    d = storage_failed()
    d.heartbeat(hb(2), 2.0)
    assert d.heartbeat(hb(3, storage_ok=False), 3.0) == [], "already failed, no second event"
    with pytest.raises(ValueError, match="still reports failed storage"):
        d.confirm_failback(RS1, 3.5)
    assert kinds(d.heartbeat(hb(4), 4.0)) == ["storage_repaired"]
    assert kinds(d.confirm_failback(RS1, 4.5)) == ["failback_confirmed", "server_recovered"]


def test_r7_confirmation_of_a_server_that_is_not_storage_failed_is_refused() -> None:
    """R7: confirming a healthy server is refused and names its state."""
    d = watched()
    d.heartbeat(hb(0), 1.0)
    with pytest.raises(ValueError, match=r"'rs-1' is not storage-failed \(it is up\)"):
        d.confirm_failback(RS1, 1.5)


def test_r7_confirmation_of_an_unknown_server_is_refused() -> None:
    """R7: an unknown server id is refused with a clear reason."""
    with pytest.raises(ValueError, match="unknown server 'rs-9'"):
        watched().confirm_failback("rs-9", 1.0)


def test_r7_confirmation_of_a_silent_server_is_refused() -> None:
    """R7: storage repaired but heartbeats stopped: the server is not fully operational."""
    d = storage_failed()
    d.heartbeat(hb(2), 2.0)
    with pytest.raises(ValueError, match="not heartbeating"):
        d.confirm_failback(RS1, 2.0 + TIMEOUT)
    assert d.liveness(RS1) is Liveness.STORAGE_FAILED


def test_r7_a_second_confirmation_is_refused() -> None:
    """R7: once confirmed, the server is up; confirming again is refused, not repeated."""
    d = storage_failed()
    d.heartbeat(hb(2), 2.0)
    d.confirm_failback(RS1, 2.5)
    with pytest.raises(ValueError, match="is not storage-failed"):
        d.confirm_failback(RS1, 3.0)


def test_r7_after_confirmation_the_server_is_watched_normally() -> None:
    """R2/R7: a confirmed server is probed again after silence, like any other."""
    d = storage_failed()
    d.heartbeat(hb(2), 2.0)
    d.confirm_failback(RS1, 2.5)
    assert d.tick(11.9) == []
    assert d.tick(12.0) == [Probe(RS1)]


def test_r7_a_restored_storage_failed_view_still_needs_the_confirmation() -> None:
    """R7/R11: a detector restarted with rs-1 storage-failed keeps waiting for the admin."""
    d = Detector(network_timeout=TIMEOUT)
    d.watch(RS1, 50.0, Liveness.STORAGE_FAILED)
    assert d.liveness(RS1) is Liveness.STORAGE_FAILED
    for t in range(51, 80):
        assert not any(isinstance(x, ServerRecovered) for x in d.heartbeat(hb(t), float(t)))
    assert kinds(d.confirm_failback(RS1, 80.0)) == ["failback_confirmed", "server_recovered"]


def test_r13_refusal_names_why_a_heartbeat_is_ignored_and_agrees_with_heartbeat() -> None:
    """``refusal`` (counted in blaze_heartbeats_rejected_total) says unknown_server or
    stale exactly when ``heartbeat`` ignores the heartbeat."""
    d = watched()
    assert d.refusal(hb(1, server="rs-9")) == "unknown_server"
    assert d.refusal(hb(1)) is None
    d.heartbeat(hb(1), 1.0)
    assert d.refusal(hb(1)) == "stale"  # replayed
    assert d.refusal(hb(0)) == "stale"  # older
    assert d.refusal(hb(0, boot="boot-b")) is None  # a new boot starts afresh
    assert d.heartbeat(hb(1, storage_ok=False), 2.0) == []  # ignored: stale
    assert kinds(d.heartbeat(hb(2, storage_ok=False, error="gone"), 2.0)) == ["server_failed"]


def test_r13_count_by_liveness_counts_every_state_including_empty_ones() -> None:
    d = watched("rs-1", "rs-2", "rs-3")
    d.heartbeat(hb(0, server="rs-2", storage_ok=False, error="gone"), 1.0)
    assert d.tick(TIMEOUT) == [Probe("rs-1"), Probe("rs-3")]
    assert d.count_by_liveness() == {
        Liveness.UP: 0,
        Liveness.PROBING: 2,
        Liveness.NETWORK_FAILED: 0,
        Liveness.STORAGE_FAILED: 1,
    }
