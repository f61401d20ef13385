"""One seed, start to end: build the world, inject its faults, bring the calm, check
that the cluster settles; and, for a failing seed, its trace and a smaller fault set
that still fails."""

from __future__ import annotations

import hashlib
import random
import time
import traceback
from dataclasses import dataclass, field, replace

from services.health.detector import Liveness
from services.placement.state import CameraState, Placement
from sim.cluster import Cluster
from sim.faults import Fault, Injector, schedule
from sim.mutants import mutant
from sim.scenario import Settings, build
from sim.violations import Violation

SETTLE_CHECK_S = 5.0


@dataclass
class Outcome:
    """What one run did and found."""

    settings: Settings
    violation: Violation | None
    virtual_seconds: float
    wall_seconds: float
    steps: int
    faults: list[Fault]
    faults_applied: int
    events: int
    digest: str
    scenario: str
    counts: dict[str, int]
    findings: dict[str, int]
    first_findings: dict[str, tuple[float, str]]
    trace: list[tuple[float, str, tuple[str, ...]]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Virtual hours simulated per wall second."""
        return self.virtual_seconds / 3600 / max(self.wall_seconds, 1e-9)

    @property
    def ok(self) -> bool:
        return self.violation is None

    def summary(self) -> str:
        s = self.settings
        head = (
            f"seed {s.seed}: {'ok' if self.ok else 'FAILED'}; {s.servers} servers, "
            f"{s.cameras} cameras, {self.virtual_seconds / 3600:.2f} virtual h in "
            f"{self.wall_seconds:.2f} s ({self.rate:.2f}"
            f" virtual h/s), {self.steps} steps, {self.faults_applied} faults, "
            f"{self.events} events, digest {self.digest}"
        )
        if self.findings:
            head += f"; known findings {dict(sorted(self.findings.items()))}"
        if self.violation is not None:
            v = self.violation
            head += f"\n  {v.invariant} at t={v.at:.3f} s (step {v.step}): {v.detail}"
        return head


def run(settings: Settings) -> Outcome:
    """Run one seed."""
    started = time.perf_counter()  # for the report only: nothing simulated reads it
    seed = settings.seed
    scenario = build(settings, random.Random(f"world-{seed}"))  # noqa: S311
    cluster = Cluster(settings, scenario, random.Random(f"bus-{seed}"))  # noqa: S311
    end = settings.hours * 3600.0
    faults = schedule(cluster, random.Random(f"faults-{seed}"), end)  # noqa: S311
    if settings.faults is not None:
        keep = set(settings.faults)
        faults = [f for f in faults if f.number in keep]
    injector = Injector(cluster)
    violation: Violation | None = None
    with mutant(settings.mutant):
        try:
            cluster.start()
            injector.install(faults)
            cluster.clock.at(end, injector.calm)
            every = 10.0 if scenario.small else 120.0
            cluster.clock.every(every, cluster.check_periodically, lambda: cluster.done)
            cluster.clock.every(SETTLE_CHECK_S, lambda: settle(cluster, end), lambda: cluster.done)
            deadline = end + settings.calm
            cluster.clock.at(deadline, lambda: settle(cluster, end, final=True))
            cluster.clock.run_until(deadline + 1.0, lambda: not cluster.done)
        except Violation as v:
            violation = v
        except Exception as exc:  # noqa: BLE001 (a crash in the core is a finding too)
            detail = "".join(traceback.format_exception(exc)[-6:]).strip()
            violation = Violation("core_raised", detail)
    if violation is not None:
        violation.at, violation.step = cluster.clock.now, cluster.clock.steps
    return Outcome(
        settings=settings,
        violation=violation,
        virtual_seconds=cluster.clock.now,
        wall_seconds=time.perf_counter() - started,
        steps=cluster.clock.steps,
        faults=faults,
        faults_applied=injector.applied,
        events=len(cluster.log),
        digest=_digest(cluster),
        scenario=scenario.describe(),
        counts=cluster.counts,
        findings=cluster.findings,
        first_findings=cluster.first_findings,
        trace=cluster.steps,
    )


def settle(cluster: Cluster, calm_from: float, *, final: bool = False) -> None:
    """In the calm: once the cluster has settled, the liveness properties must hold; at
    the deadline they must hold whether it looks settled or not."""
    if not cluster.calm or cluster.done:
        return
    why = unsettled(cluster)
    if why is None or final:
        check_settled(cluster)
        if why is not None:
            raise Violation(
                "settles_once_faults_stop",
                f"{cluster.clock.now - calm_from:.0f} s into the calm: {why}",
            )
        cluster.done = True


def unsettled(c: Cluster) -> str | None:  # noqa: PLR0911 (one reason per return)
    """Why the cluster has not settled yet, or None."""
    shell, detector = c.placement, c.health.detector
    if shell is None or detector is None:
        return "no leader"
    state = shell.state
    if state.cursor < len(c.log):
        return "placement is behind the log"
    dead = set(c.scenario.dead)
    for s in c.config.servers:
        slot = state.servers[s.id]
        if (
            slot.capacity != s.capacity
            or slot.drained
            or c.nodes[s.id].agent.capacity != s.capacity
        ):
            return f"the administrator has still to restore {s.id}"
        if s.id in c.awaiting and s.id not in dead:
            return f"{s.id} awaits the administrator's confirmation"
    for sid in c.nodes:
        want = (Liveness.NETWORK_FAILED, Liveness.STORAGE_FAILED) if sid in dead else (Liveness.UP,)
        if detector.liveness(sid) not in want:
            return f"{sid} is {detector.liveness(sid)} to the detector"
    if state.index.unsettled:
        cams = sorted(state.index.unsettled)
        return f"{len(cams)} cameras still moving, e.g. {_camera(state, cams[0])}"
    for sid, node in c.nodes.items():
        if sid in dead:
            continue
        expected = {
            cid: state.cameras[cid].epoch
            for cid in state.index.holding_on(sid)
            if state.cameras[cid].host == sid
        }
        if node.agent.hosted != expected:
            extra = sorted(set(node.agent.hosted) - set(expected))
            lacking = sorted(set(expected) - set(node.agent.hosted))
            return f"{sid} records {extra[:3]} it should not, lacks {lacking[:3]}"
    return None


def check_settled(c: Cluster) -> None:
    """Liveness: every camera records on one live server (at home when its home is
    healthy) or is Pending, and Pending only while no channel within reach is free."""
    shell = c.placement
    if shell is None:
        return
    state = shell.state
    dead = set(c.scenario.dead)
    homed = state.index.homed
    for cid in sorted(state.cameras):
        cam = state.cameras[cid]
        live = sorted(s for s in c.recorders.get(cid, {}) if s not in dead)
        if cam.state is CameraState.PENDING:
            if live:
                raise Violation(
                    "settles_once_faults_stop", f"{cid} Pending yet {live} record it", (cid,)
                )
            continue
        if cam.host is None or cam.target is not None or cam.release_from or cam.release_after:
            continue  # unsettled: reported by unsettled()
        if cam.home not in dead and cam.host != cam.home:
            home = state.servers[cam.home]
            detail = (
                f"{cid} records on {cam.host}, not at its healthy home {cam.home} "
                f"(home load {state.load(cam.home)}, capacity {home.capacity}, {home.state})"
            )
            guests = [g for g in state.index.holding_on(cam.home) if g not in homed[cam.home]]
            if state.load(cam.home) < home.capacity:  # fixed: Placement._come_home
                raise Violation("stays_away_from_a_free_home", detail, (cid, cam.home))
            if guests:  # its channels went to guests meanwhile: the same gap, one step on
                c.known("stays_away_from_a_free_home", f"{detail}; guests there {guests[:3]}")
            else:
                raise Violation("settles_once_faults_stop", detail, (cid, cam.home, cam.host))
        if live != [cam.host]:
            raise Violation(
                "settles_once_faults_stop",
                f"{cid} settled on {cam.host} but recorded by {live}",
                (cid, cam.host, *live),
            )
    c.check_pending(state)


def _camera(state: Placement, cid: str) -> str:
    cam = state.cameras[cid]
    return (
        f"{cid} host={cam.host} target={cam.target} release_from={cam.release_from} "
        f"release_after={cam.release_after} epoch={cam.epoch}"
    )


def _digest(cluster: Cluster) -> str:
    """The log's digest and the agents' final recordings': equal runs, equal digests."""
    hosted = sorted((sid, sorted(n.agent.hosted.items())) for sid, n in cluster.nodes.items())
    tail = hashlib.sha256(repr(hosted).encode()).hexdigest()[:8]
    return f"{cluster.log.digest()}-{tail}"


def minimise(outcome: Outcome, budget: int = 40) -> Outcome:
    """A smaller fault set that still breaks the same invariant: drop halves, then single
    faults, while it still fails (at most ``budget`` runs). Returns the smallest run."""
    assert outcome.violation is not None
    best = outcome
    invariant = outcome.violation.invariant
    runs = 0

    def fails(numbers: list[int]) -> Outcome | None:
        nonlocal runs
        runs += 1
        trial = run(replace(best.settings, faults=tuple(numbers), trace=False))
        if trial.violation is not None and trial.violation.invariant == invariant:
            return trial
        return None

    numbers = [f.number for f in best.faults]
    chunk = max(1, len(numbers) // 2)
    while chunk >= 1 and runs < budget:
        i, shrunk = 0, False
        while i < len(numbers) and runs < budget:
            trial_numbers = numbers[:i] + numbers[i + chunk :]
            found = fails(trial_numbers)
            if found is not None:
                numbers, best, shrunk = trial_numbers, found, True
            else:
                i += chunk
        if not shrunk:
            chunk //= 2
    return best
