"""The parts of the scale work (issue 8) that other code relies on: the placement snapshot
stored compressed (old plain ones still read), the fleet's simulated agents keeping the
real agent's epoch rules, and ``blaze status`` built straight from the snapshot."""

from __future__ import annotations

import asyncio
import io
import json
import zlib

from services.cli import views
from services.cli.views import status_document, status_document_of_snapshot, write_status_json
from services.placement.app import PlacementService
from services.placement.state import Placement
from services.sim.fleet import Fleet, FleetAgent, FleetControl, server_ids
from shared import subjects
from shared.bus import Bus, NatsServer
from shared.config import (
    CameraConfig,
    ClusterConfig,
    PlacementPolicy,
    Priority,
    ServerConfig,
)
from shared.messages import (
    Action,
    Assignment,
    CapacityChanged,
    ClaimsConfirmed,
    Command,
    CommandResult,
    FailureCause,
    Heartbeat,
    ProbeReply,
    ProbeRequest,
    ServerDrained,
    ServerFailed,
    ServerRecovered,
)
from tests.helpers import eventually

# ---- the snapshot, compressed ----


def _config(servers: int = 4, per_server: int = 6) -> ClusterConfig:
    priorities = [Priority.HIGH, Priority.MEDIUM, Priority.LOW, Priority.NEVER]
    return ClusterConfig(
        servers=tuple(ServerConfig(id=f"rs-{n}", capacity=per_server + 1) for n in range(servers)),
        cameras=tuple(
            CameraConfig(id=f"c{n}-{k}", home=f"rs-{n}", priority=priorities[k % 4])
            for n in range(servers)
            for k in range(per_server)
        ),
        placement=PlacementPolicy(preemption=True),
    )


def _state(servers: int = 4, per_server: int = 6, *, recover: bool = False) -> Placement:
    """A state with cameras home, failed over, moving, Pending, preempted and releasing."""
    state, _ = Placement.from_config(_config(servers, per_server))
    for c in state.outstanding_commands():
        state.apply(ClaimsConfirmed(server=c.server, cameras=c.cameras))
    state.apply(ServerFailed(server="rs-0", cause=FailureCause.STORAGE))
    for c in state.outstanding_commands():
        state.apply(ClaimsConfirmed(server=c.server, cameras=c.cameras))
    state.apply(ServerFailed(server="rs-1", cause=FailureCause.NETWORK))
    state.apply(ServerDrained(server="rs-2"))
    state.apply(CapacityChanged(server="rs-3", capacity=per_server + 3))  # some move there
    if recover:
        state.apply(ServerRecovered(server="rs-0", cause=FailureCause.STORAGE))  # hosts release
    return state


async def test_placement_snapshot_is_stored_compressed_and_reads_back_as_written(
    bus: Bus,
) -> None:
    state = _state()
    written = state.model_dump_json().encode()
    revision = await bus.write_state(written, None)
    entry = await bus.last_entry(subjects.PLACEMENT_BUCKET, subjects.PLACEMENT_STATE_KEY)
    assert entry is not None
    stored = entry[0]
    assert zlib.decompress(stored) == written
    assert len(stored) < len(written)
    assert await bus.read_state() == (written, revision)
    assert await bus.read_state(latest=True) == (written, revision)
    assert Placement.model_validate_json(written).model_dump() == state.model_dump()


async def test_an_uncompressed_snapshot_of_an_older_version_still_reads(bus: Bus) -> None:
    plain = _state().model_dump_json().encode()
    kv = await bus.js.key_value(subjects.PLACEMENT_BUCKET)
    revision = await kv.create(subjects.PLACEMENT_STATE_KEY, plain)
    assert await bus.read_state() == (plain, revision)
    assert await bus.read_state(latest=True) == (plain, revision)
    newer = await bus.write_state(plain, revision)  # and placement's next write compresses
    assert await bus.read_state(latest=True) == (plain, newer)


def test_status_from_the_snapshot_is_the_status_of_the_state() -> None:
    cases = [_state(), _state(recover=True)]
    states = {c.state for state in cases for c in state.cameras.values()}
    assert len(states) == 4, states  # home, failed over, moving and Pending all shown
    assert any(c.release_from or c.release_after for c in cases[1].cameras.values())
    leaders = {"placement": "p-1", "health": "h-1"}
    services = [{"name": "placement", "pid": 1}]
    for state in cases:
        for raw in (
            state.model_dump_json(exclude_defaults=True).encode(),  # what placement writes
            state.model_dump_json().encode(),  # an older snapshot with every field
        ):
            assert views._cameras_cut_out(raw) is not None  # no camera takes the slow way
            fast = status_document_of_snapshot(raw, services, leaders)
            assert fast == status_document(state, services, leaders)
            assert json.loads(json.dumps(fast)) == fast
            out = io.BytesIO()  # what blaze status --json prints, byte for byte
            write_status_json(raw, services, leaders, out)
            full = json.dumps(status_document(state, services, leaders)) + "\n"
            assert out.getvalue() == full.encode()


# ---- the fleet's agents ----


def _claim(server: str, *cams: tuple[str, int], fence: int = 1, cluster: str = "a") -> Command:
    assignments = tuple(Assignment(camera=c, epoch=e) for c, e in cams)
    return Command(
        server=server, action=Action.CLAIM, cameras=assignments, fence=fence, cluster=cluster
    )


def test_a_fleet_agent_refuses_epochs_older_than_it_has_seen() -> None:
    agent = FleetAgent("rs-1", capacity=10)
    done = agent.carry_out(_claim("rs-1", ("c1", 5), ("c2", 3)), now=1.0)
    assert [a.camera for a in done.done] == ["c1", "c2"]
    assert agent.hosted == {"c1": 5, "c2": 3}
    stale = agent.carry_out(_claim("rs-1", ("c1", 4), ("c2", 3)), now=2.0)
    assert [(r.camera, r.epoch, r.seen_epoch) for r in stale.refused] == [("c1", 4, 5)]
    assert [a.camera for a in stale.done] == ["c2"]  # the same epoch again: done again
    release = Command(
        server="rs-1",
        action=Action.RELEASE,
        cameras=(Assignment(camera="c1", epoch=6),),
        fence=1,
        cluster="a",
    )
    assert [a.camera for a in agent.carry_out(release, now=3.0).done] == ["c1"]
    assert agent.hosted == {"c2": 3}
    late_claim = agent.carry_out(_claim("rs-1", ("c1", 5)), now=4.0)
    assert [r.seen_epoch for r in late_claim.refused] == [6]  # the release fenced it off
    assert agent.claims["c2"].at == 1.0  # repeats do not move the time of the claim


def test_a_fleet_agent_refuses_a_deposed_leader_and_other_servers_commands() -> None:
    agent = FleetAgent("rs-1", capacity=10)
    agent.carry_out(_claim("rs-1", ("c1", 1), fence=7), now=1.0)
    deposed = agent.carry_out(_claim("rs-1", ("c2", 9), fence=6), now=2.0)
    assert not deposed.done
    assert deposed.fence_seen == 7
    assert [r.camera for r in deposed.refused] == ["c2"]
    other = agent.carry_out(_claim("rs-2", ("c3", 9), fence=8), now=3.0)
    assert not other.done
    assert "addressed to rs-2" in other.refused[0].reason
    assert agent.hosted == {"c1": 1}


def test_a_fleet_agent_starts_its_ledger_afresh_for_a_new_cluster() -> None:
    agent = FleetAgent("rs-1", capacity=10)
    agent.carry_out(_claim("rs-1", ("c1", 50), fence=9, cluster="old"), now=1.0)
    fresh = agent.carry_out(_claim("rs-1", ("c1", 1), fence=1, cluster="new"), now=2.0)
    assert [a.camera for a in fresh.done] == ["c1"]
    assert agent.hosted == {"c1": 1}


def test_server_runs_name_every_server_in_order() -> None:
    assert server_ids(["rs-0..rs-2", "x-7,rs-10..rs-11"]) == [
        "rs-0",
        "rs-1",
        "rs-2",
        "x-7",
        "rs-10",
        "rs-11",
    ]


async def test_a_fleet_heartbeats_answers_probes_and_commands_and_fails_storage(
    nats_server: NatsServer, bus: Bus
) -> None:
    config = ClusterConfig(
        servers=(ServerConfig(id="rs-1", capacity=4), ServerConfig(id="rs-2", capacity=4)),
        cameras=(CameraConfig(id="c1", home="rs-1"),),
    )
    beats: list[Heartbeat] = []

    async def heard(_subject: str, hb: Heartbeat) -> None:
        beats.append(hb)

    await bus.subscribe(subjects.HEARTBEAT_ALL, Heartbeat, heard)
    fleet = Fleet(config, ["rs-1", "rs-2"], nats_server.url, interval=0.2)
    await fleet.start()
    try:
        await eventually(
            lambda: asyncio.sleep(0, {b.server for b in beats}),
            lambda seen: seen == {"rs-1", "rs-2"},
            5,
            "both servers heartbeat",
        )
        probe = await bus.request(
            subjects.probe("rs-2"), ProbeRequest(server="rs-2"), ProbeReply, timeout=2
        )
        assert probe.boot_id == fleet.agents["rs-2"].boot_id
        result = await bus.request(
            subjects.command("rs-1"), _claim("rs-1", ("c1", 3)), CommandResult, timeout=2
        )
        assert [a.camera for a in result.done] == ["c1"]
        assert fleet.placement() == {"home": 1, "away": 0, "homed": 1}
        at = await fleet.fail_storage(["rs-1"])
        failed = await eventually(
            lambda: asyncio.sleep(0, [b for b in beats if b.server == "rs-1" and not b.storage_ok]),
            bool,
            5,
            "rs-1 reports failed storage",
        )
        assert failed[0].hosted == {"c1": 3}
        assert fleet.claims(["c1"], since=0.0) == {
            "c1": ("rs-1", fleet.agents["rs-1"].claims["c1"].at)
        }
        assert fleet.claims(["c1"], since=at) == {}  # claimed before the failure
        control = FleetControl(fleet, asyncio.Event())
        assert (await control.answer('{"op": "counts"}'))["claims"] == 1
        assert "error" in await control.answer('{"op": "nonsense"}')
        assert "error" in await control.answer("not json")
    finally:
        await fleet.close()


# ---- placement's commit gives way to the fold ----


async def test_a_quiet_log_commit_gives_way_to_the_next_event(nats_server: NatsServer) -> None:
    """Issue 8: a snapshot of 100,000 cameras takes a second; a commit begun because the
    log went quiet must not hold back an event that comes meanwhile (the second half of
    a rack failure). It gives up, writes nothing, and commits later; an overdue commit
    (no ``unless``) does not give way."""
    service = PlacementService(_config(), nats_server.url)
    bus = await Bus.connect(nats_server.url, "test-commit")
    await bus.ensure_streams()
    service._bus = bus
    service.state = _state()
    try:
        assert await service._commit()
        written = await bus.read_state()
        assert written is not None
        service.state.cursor += 1  # a change that a commit would write

        came = asyncio.get_running_loop().create_future()
        came.set_result(None)  # the next event came before the snapshot was made
        assert not await service._commit(unless=came)
        assert await bus.read_state() == written

        published = asyncio.Event()
        service._publishing = asyncio.create_task(_wait(published))  # notices going out
        assert not await service._commit(unless=came)
        published.set()

        waiting = asyncio.get_running_loop().create_future()  # no event yet
        assert await service._commit(unless=waiting)
        now = await bus.read_state()
        assert now is not None
        assert now[1] > written[1]
        assert Placement.model_validate_json(now[0]).cursor == service.state.cursor
    finally:
        await bus.close()


async def _wait(event: asyncio.Event) -> None:
    await event.wait()
