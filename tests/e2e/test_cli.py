"""The ``blaze`` console script as an operator runs it: real subprocesses, real exit codes,
real ``blaze up`` with every service as its own process (CLI contract, issue 2).

Every subprocess is bounded by a timeout; every ``blaze up`` is stopped in a
``finally``, and any child it left behind is killed by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from services.cli.main import operator
from shared.bus import Bus, NatsServer, free_port
from tests.integration.cluster import (
    all_home,
    camera,
    check_invariants,
    failed_over,
    server,
)

BLAZE = Path(sys.executable).parent / "blaze"
RUN_BOUND_S = 30.0
"""No single ``blaze`` command may take longer than this."""
UNREACHABLE_BOUND_S = 20.0
"""An unreachable cluster must be reported within this (connect_timeout is 2 s)."""
STOP_BOUND_S = 30.0
"""``blaze up`` must stop within this after SIGINT."""

Status = dict[str, Any]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BLAZE_NATS_SERVER"}
    env.update(extra)
    return env


def blaze(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one ``blaze`` command to completion (bounded)."""
    return subprocess.run(
        [str(BLAZE), *args],
        capture_output=True,
        text=True,
        timeout=RUN_BOUND_S,
        cwd=cwd,
        env=env or _env(),
        check=False,
    )


def one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    """The contract for failures: nothing on stdout, exactly one line on stderr, no traceback."""
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    assert out.stdout == "", out.stdout
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("blaze: "), lines[0]
    return lines[0]


def _process_state(pid: int) -> str | None:
    """The /proc state letter of a process, or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def processes_using(data_dir: Path) -> list[int]:
    """Live processes (not zombies) whose command line names ``data_dir``: ours, by design."""
    needle = str(data_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and _process_state(int(entry.name)) not in (None, "Z"):
            found.append(int(entry.name))
    return found


# ---- bad arguments, unreachable clusters, bad configs, bad servers ----


BAD_ARGUMENTS = [
    ([], "required"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["capacity", "rs-1", "notanumber"], "'notanumber'"),
    (["capacity", "rs-1"], "required: capacity"),
    (["capacity", "rs-1", "-1"], "0 or more"),
    (["failback"], "required: server"),
    (["sim", "storage-fail"], "required: server"),
    (["sim", "explode", "rs-1"], "invalid choice: 'explode'"),
    (["status", "--bogus"], "unrecognized arguments: --bogus"),
    (["up", "--config"], "expected one argument"),
    # Issue 7: credentials that cannot be used are refused before any connection.
    (["status", "--nats", "nats://127.0.0.1:9", "--creds", "/no/such.nk"], "credentials /no"),
    (["secrets"], "required: --config, --out"),
]


@pytest.mark.parametrize(
    ("argv", "says"), BAD_ARGUMENTS, ids=[" ".join(a) or "nothing" for a, _ in BAD_ARGUMENTS]
)
def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, argv: list[str], says: str) -> None:
    """CLI contract (issue 2): bad arguments give one clear line on stderr and exit code 2."""
    out = blaze(*argv, cwd=tmp_path)
    assert out.returncode == 2
    assert says in one_error_line(out)


def test_no_cluster_in_the_data_dir_exits_2_with_one_line(tmp_path: Path) -> None:
    """CLI contract (issue 2): a data dir with no running cluster is one line and exit 2."""
    out = blaze("status", "--json", "--data", str(tmp_path / "nothing-here"), cwd=tmp_path)
    assert out.returncode == 2
    line = one_error_line(out)
    assert "no running cluster" in line
    assert str(tmp_path / "nothing-here") in line


def test_unreachable_cluster_exits_2_with_one_line_within_the_bound(tmp_path: Path) -> None:
    """CLI contract (issue 2): an unreachable cluster gives one clear line and exit 2, fast."""
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    stale = tmp_path / "stale"  # what a SIGKILLed blaze up leaves behind
    stale.mkdir()
    (stale / "cluster.json").write_text(json.dumps({"nats_url": url}))
    commands = {
        "status": ["status", "--json", "--nats", url],
        "events": ["events", "--json", "--nats", url],
        "failback": ["failback", "rs-1", "--nats", url],
        "capacity": ["capacity", "rs-1", "4", "--nats", url],
        "sim": ["sim", "kill", "rs-1", "--nats", url],
        "status from a stale cluster.json": ["status", "--data", str(stale)],
    }
    # All at once, so a hang costs the bound once, not once per command.
    started = time.monotonic()
    running = {
        name: subprocess.Popen(
            [str(BLAZE), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=_env(),
            start_new_session=True,
        )
        for name, argv in commands.items()
    }
    finished: dict[str, subprocess.CompletedProcess[str]] = {}
    hung: list[str] = []
    for name, proc in running.items():
        remaining = max(0.1, UNREACHABLE_BOUND_S - (time.monotonic() - started))
        try:
            stdout, stderr = proc.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            hung.append(name)
            continue
        finished[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert not hung, f"still running after {UNREACHABLE_BOUND_S} s: {hung}"
    for name, out in finished.items():
        assert out.returncode == 2, (name, out.stderr)
        assert "cannot reach the cluster" in one_error_line(out), name


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["failback", "rs-1"], "no responders"),
        (["capacity", "rs-1", "4"], "no responders"),
        (["sim", "kill", "rs-1"], "no responders"),
        (["failback", "rs.1"], "server"),
        (["capacity", "rs-1", "1000000"], "capacity"),
        (["sim", "kill", "rs*"], "server"),
        (["status", "--json"], "no blaze-cluster"),
        (["events", "--json"], "no blaze-cluster"),
    ],
    ids=[
        "failback",
        "capacity",
        "sim",
        "failback of a bad server id",
        "capacity above the limit",
        "sim of a bad server id",
        "status",
        "events",
    ],
)
def test_a_nats_server_without_a_blaze_cluster_exits_2_with_one_line(
    nats_server: NatsServer, tmp_path: Path, argv: list[str], says: str
) -> None:
    """CLI contract (issue 2): a reachable NATS with no cluster, or a value the cluster
    could never accept, is one clear line and exit 2, never a traceback."""
    out = blaze(*argv, "--nats", nats_server.url, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert says in one_error_line(out)


async def test_status_before_placement_wrote_state_is_one_line_on_stderr(
    nats_server: NatsServer, bus: Bus, tmp_path: Path
) -> None:
    """CLI contract (issue 2): a cluster that has no placement state yet is one line, exit 2."""
    assert await bus.read_state() is None  # the stream and bucket exist, the state does not
    out = await asyncio.to_thread(
        blaze, "status", "--json", "--nats", nats_server.url, cwd=tmp_path
    )
    assert out.returncode == 2
    assert "no placement state" in one_error_line(out)


SERVER = '[[server]]\nid = "{id}"\ncapacity = {capacity}\n'
CAMERA = '[[camera]]\nid = "{id}"\nhome = "{home}"\n'


@pytest.mark.parametrize(
    ("toml", "names"),
    [
        (SERVER.format(id="rs-1", capacity=2) + 'colour = "blue"\n', ["'rs-1'", "'colour'"]),
        ("[timing]\nwarp = 9\n" + SERVER.format(id="rs-1", capacity=2), ["timing.warp"]),
        (
            SERVER.format(id="rs-1", capacity=2) + SERVER.format(id="rs-1", capacity=3),
            ["duplicate server id 'rs-1'"],
        ),
        (
            SERVER.format(id="rs-1", capacity=3)
            + CAMERA.format(id="c1", home="rs-1")
            + CAMERA.format(id="c1", home="rs-1"),
            ["duplicate camera id 'c1'"],
        ),
        (
            SERVER.format(id="rs-1", capacity=2) + CAMERA.format(id="c1", home="rs-9"),
            ["camera 'c1'", "'rs-9'"],
        ),
        (
            SERVER.format(id="rs-1", capacity=1)
            + CAMERA.format(id="c1", home="rs-1")
            + CAMERA.format(id="c2", home="rs-1"),
            ["server 'rs-1'", "2 cameras", "capacity is 1"],
        ),
        ("[[server]]\nid = \n", ["not valid TOML"]),
    ],
    ids=[
        "unknown key",
        "unknown timing key",
        "duplicate server",
        "duplicate camera",
        "unknown home",
        "over capacity",
        "not TOML",
    ],
)
def test_bad_config_is_refused_naming_the_entry(
    tmp_path: Path, toml: str, names: list[str]
) -> None:
    """CLI contract (issue 2): ``blaze up`` refuses a bad config in one line naming the entry."""
    config = tmp_path / "cluster.toml"
    config.write_text(toml)
    data = tmp_path / "data"
    out = blaze("up", "--config", str(config), "--data", str(data), cwd=tmp_path)
    assert out.returncode == 2
    line = one_error_line(out)
    assert str(config) in line
    for name in names:
        assert name in line
    assert not (data / "cluster.json").exists(), "nothing may start on a bad config"
    assert processes_using(data) == []


def test_missing_config_file_is_refused_in_one_line(tmp_path: Path) -> None:
    """CLI contract (issue 2): a config file that cannot be read is one line and exit 2."""
    missing = tmp_path / "missing.toml"
    out = blaze("up", "--config", str(missing), "--data", str(tmp_path / "d"), cwd=tmp_path)
    assert out.returncode == 2
    assert f"{missing}: cannot read" in one_error_line(out)


def _fake_nats_server(tmp_path: Path, version_line: str) -> tuple[Path, Path]:
    """An executable that answers ``--version`` like nats-server and marks any other start."""
    marker = tmp_path / "fake-was-started-as-a-server"
    fake = tmp_path / "nats-server"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then\n'
        f"  echo '{version_line}'\n"
        "  exit 0\n"
        "fi\n"
        f"touch '{marker}'\n"
        "exit 1\n"
    )
    fake.chmod(0o755)
    return fake, marker


def _small_config(tmp_path: Path) -> Path:
    config = tmp_path / "cluster.toml"
    config.write_text(SERVER.format(id="rs-1", capacity=2) + CAMERA.format(id="c1", home="rs-1"))
    return config


@pytest.mark.parametrize("version", ["2.9.0", "2.10.22"])
def test_nats_server_older_than_2_11_is_refused(tmp_path: Path, version: str) -> None:
    """CLI contract (issue 2): a nats-server older than 2.11 is refused with a clear error."""
    fake, marker = _fake_nats_server(tmp_path, f"nats-server: v{version}")
    data = tmp_path / "data"
    out = blaze(
        "up",
        "--config",
        str(_small_config(tmp_path)),
        "--data",
        str(data),
        cwd=tmp_path,
        env=_env(BLAZE_NATS_SERVER=str(fake)),
    )
    assert out.returncode == 2
    line = one_error_line(out)
    assert f"nats-server {version}" in line
    assert "2.11 or newer" in line
    assert not marker.exists(), "a refused nats-server must never be started"
    assert not (data / "cluster.json").exists()
    assert processes_using(data) == []


def test_nats_server_with_an_unreadable_version_is_refused(tmp_path: Path) -> None:
    """CLI contract (issue 2): a binary whose --version says no version is refused clearly."""
    fake, marker = _fake_nats_server(tmp_path, "hello from something else")
    data = tmp_path / "data"
    out = blaze(
        "up",
        "--config",
        str(_small_config(tmp_path)),
        "--data",
        str(data),
        cwd=tmp_path,
        env=_env(BLAZE_NATS_SERVER=str(fake)),
    )
    assert out.returncode == 2
    assert "unrecognised --version output" in one_error_line(out)
    assert not marker.exists()


def test_blaze_nats_server_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    """CLI contract (issue 2): an explicit BLAZE_NATS_SERVER is used or refused, not ignored."""
    not_executable = tmp_path / "nats-server"
    not_executable.write_text("not a program\n")
    data = tmp_path / "data"
    up = subprocess.Popen(
        [str(BLAZE), "up", "--config", str(_small_config(tmp_path)), "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_env(BLAZE_NATS_SERVER=str(not_executable)),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + RUN_BOUND_S
        while up.poll() is None and not (data / "cluster.json").exists():
            assert time.monotonic() < deadline, "blaze up neither refused nor started"
            time.sleep(0.05)
        started_anyway = (data / "cluster.json").exists()
    finally:
        _stop(up, data)
        _, stderr = up.communicate(timeout=10)
    assert not started_anyway, "blaze up ignored BLAZE_NATS_SERVER and started a cluster"
    assert up.returncode == 2
    assert "BLAZE_NATS_SERVER" in stderr


def _stop(up: subprocess.Popen[Any], data: Path) -> None:
    """SIGINT ``blaze up``; SIGKILL it if it lingers; kill by pid any child it left behind."""
    if up.poll() is None:
        try:
            os.killpg(up.pid, signal.SIGINT)
            up.wait(STOP_BOUND_S)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
    # The supervisor starts every child in its own session: they are not in up's group.
    for pid in processes_using(data):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ---- the whole cluster, end to end ----

E2E_CONFIG = """
[timing]
heartbeat_interval = 0.2
network_timeout = 2.0
storage_probe_interval = 0.2

[[server]]
id = "rs-1"
capacity = 4
[[server]]
id = "rs-2"
capacity = 4
[[server]]
id = "rs-3"
capacity = 4

[[camera]]
id = "c11"
home = "rs-1"
priority = "high"
[[camera]]
id = "c12"
home = "rs-1"
priority = "low"
[[camera]]
id = "c21"
home = "rs-2"
[[camera]]
id = "c31"
home = "rs-3"
"""

SERVER_KEYS = {"id", "state", "capacity", "hosting", "storage"}
CAMERA_KEYS = {"id", "home", "host", "state", "priority"}
SERVICES = {"health", "placement", "sync", "agent-rs-1", "agent-rs-2", "agent-rs-3", "console"}


class BlazeUp:
    """One ``blaze up`` in a temporary directory and the commands that talk to it."""

    def __init__(self, root: Path, *options: str) -> None:
        self.root = root
        self.options = options
        self.data = root / "data"
        self.config = root / "cluster.toml"
        self.config.write_text(E2E_CONFIG)
        self.log_path = root / "up.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.pids_seen: set[int] = set()

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(BLAZE),
                    "up",
                    "--config",
                    str(self.config),
                    "--data",
                    str(self.data),
                    *self.options,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=_env(),
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, self.data)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return blaze(*args, "--data", str(self.data), cwd=self.root)

    def ok(self, *args: str) -> str:
        out = self.run(*args)
        assert out.returncode == 0, (args, out.returncode, out.stderr)
        return out.stdout

    def status(self) -> Status | None:
        """``blaze status --json``, invariants checked; None while the cluster is starting."""
        assert self.process is not None
        assert self.process.poll() is None, f"blaze up exited with {self.process.returncode}"
        out = self.run("status", "--json")
        if out.returncode != 0:
            return None
        doc: Status = json.loads(out.stdout)
        check_invariants(doc)
        self.pids_seen |= {s["pid"] for s in doc["services"] if s["pid"]}
        return doc

    def wait(self, pred: Callable[[Status], bool], within: float, what: str) -> Status:
        """Poll status until ``pred`` holds; fail with the last status after ``within`` s."""
        deadline = time.monotonic() + within
        while True:
            doc = self.status()
            if doc is not None and pred(doc):
                return doc
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within} s: {what}; last: {doc!r}"[:3000])
            time.sleep(0.1)

    def now(self) -> Status:
        """The current status (waiting briefly if a restart makes it unreadable)."""
        return self.wait(lambda _: True, 10, "a readable status")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def permission_violations(self) -> list[str]:
        """What the NATS nodes refused and the processes were told was refused (issue 7):
        in normal operation, nothing. Every process runs as its own identity."""
        logs = [*self.data.glob("nats-*.log"), *(self.data / "logs").glob("*.log")]
        return [
            line
            for path in logs
            for line in path.read_text(errors="replace").splitlines()
            if "Violation" in line or "NATS refused" in line
        ]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[BlazeUp]:
    """A ``blaze up`` process group, always stopped and cleaned up."""
    up = BlazeUp(tmp_path)
    try:
        up.start()
        yield up
    finally:
        up.stop()


def _pid_of(doc: Status, name: str) -> int | None:
    pid: int | None = next(s["pid"] for s in doc["services"] if s["name"] == name)
    return pid


def test_blaze_up_fails_over_fails_back_restarts_services_and_stops_cleanly(
    cluster: BlazeUp,
) -> None:
    """CLI contract (issue 2): ``blaze up`` end to end through the real commands (R2-R8, R11)."""
    # Up: every camera home, the documented status shape, one process per service.
    doc = cluster.wait(all_home, 60, "every camera recording at home")
    assert {s["id"] for s in doc["servers"]} == {"rs-1", "rs-2", "rs-3"}
    for s in doc["servers"]:
        assert set(s) >= SERVER_KEYS, s
        assert s["storage"] == "ok"
    assert {c["id"] for c in doc["cameras"]} == {"c11", "c12", "c21", "c31"}
    for c in doc["cameras"]:
        assert set(c) >= CAMERA_KEYS, c
        assert c["host"] == c["home"]
    assert camera(doc, "c11")["priority"] == "high"
    assert camera(doc, "c21")["priority"] == "medium"
    assert {s["name"] for s in doc["services"]} == SERVICES
    assert all(isinstance(s["pid"], int) for s in doc["services"]), doc["services"]
    tables = cluster.ok("status")
    assert "rs-1" in tables
    assert "c11" in tables

    # Issue 5: what-if, by the same planner: every camera of rs-1 would move or wait.
    predicted = json.loads(cluster.ok("whatif", "rs-1", "--json"))
    fates = {m["camera"]: m["to"] for m in predicted["moves"]}
    fates |= {p["camera"]: None for p in predicted["pending"]}
    assert set(fates) == {"c11", "c12"}, predicted
    assert "if rs-1 failed now" in cluster.ok("whatif", "rs-1")
    unknown_whatif = cluster.run("whatif", "rs-9")
    assert unknown_whatif.returncode == 1
    assert "unknown server 'rs-9'" in one_error_line(unknown_whatif)
    for verb in ("drain", "undrain"):  # issue 6: wired to placement, refusals on stderr
        refused_drain = cluster.run(verb, "rs-9")
        assert refused_drain.returncode == 1
        assert "unknown server 'rs-9'" in one_error_line(refused_drain)
    not_drained = cluster.run("undrain", "rs-2")
    assert "rs-2 is not drained" in one_error_line(not_drained)

    # R3: storage failure fails over at once; R7: a premature confirmation is refused.
    assert "storage-fail rs-1" in cluster.ok("sim", "storage-fail", "rs-1")
    doc = cluster.wait(failed_over("rs-1", "storage_failed"), 15, "rs-1 failed over")
    assert server(doc, "rs-1")["storage"] == "failed"
    refused = cluster.run("failback", "rs-1")
    assert refused.returncode == 1
    assert "still reports failed storage" in one_error_line(refused)
    healthy = cluster.run("failback", "rs-2")
    assert healthy.returncode == 1
    assert "not storage-failed" in one_error_line(healthy)
    unknown = cluster.run("sim", "kill", "rs-9")
    assert unknown.returncode == 1
    assert "unknown server 'rs-9'" in one_error_line(unknown)

    # R7, R8: repaired, confirmed, home.
    cluster.ok("sim", "storage-repair", "rs-1")
    cluster.wait(
        lambda s: server(s, "rs-1")["storage"] == "ok", 15, "rs-1 reports storage ok again"
    )
    assert server(cluster.now(), "rs-1")["state"] == "storage_failed"
    assert "confirmed" in cluster.ok("failback", "rs-1")
    cluster.wait(all_home, 20, "rs-1's cameras home after the confirmation")

    # R2, R6: the agent dies, the server fails on the network path and comes back by itself.
    cluster.ok("sim", "kill", "rs-2")
    doc = cluster.wait(failed_over("rs-2", "network_failed"), 20, "rs-2 network_failed")
    assert _pid_of(doc, "agent-rs-2") is None
    cluster.ok("sim", "start", "rs-2")
    cluster.wait(all_home, 30, "rs-2's camera home after its agent started again")

    # kill -9 placement: the supervisor restarts it, logs it, and the cluster still acts.
    doc = cluster.now()
    killed = _pid_of(doc, "placement")
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    doc = cluster.wait(
        lambda s: _pid_of(s, "placement") not in (None, killed), 30, "placement restarted"
    )
    restarted = _pid_of(doc, "placement")
    assert re.search(rf"placement \(pid {killed}\) exited with code -9; restart #1", cluster.log())
    cluster.ok("sim", "storage-fail", "rs-3")
    cluster.wait(failed_over("rs-3", "storage_failed"), 20, "rs-3 failed over by new placement")
    assert _pid_of(cluster.now(), "placement") == restarted

    # R11: the durable event log, one JSON object per line, oldest first.
    lines = cluster.ok("events", "--json").splitlines()
    events = [json.loads(line) for line in lines]
    assert events, "no events"
    for event in events:
        assert {"type", "time"} <= set(event), event
        datetime.fromisoformat(event["time"])
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    failures = [(e["server"], e["cause"]) for e in events if e["type"] == "server_failed"]
    assert failures == [("rs-1", "storage"), ("rs-2", "network"), ("rs-3", "storage")]
    types = {e["type"] for e in events}
    assert {
        "server_recovered",
        "camera_moved",
        "failback_started",
        "failback_completed",
        "failback_confirmed",
    } <= types
    # Issue 6 audit: the administrator's confirmation names who ran the command.
    confirmed = [e["by"] for e in events if e["type"] == "failback_confirmed"]
    assert confirmed == [operator()], confirmed
    assert "@" in confirmed[0]
    moved = [e for e in events if e["type"] == "camera_moved"]
    assert all({"camera", "from", "to"} <= set(e) for e in moved)
    assert ("c21", "rs-2") in {(e["camera"], e["from"]) for e in moved}
    assert len(cluster.ok("events").splitlines()) == len(events)

    # Issue 7: every process did all of the above under its own identity, within its
    # permissions; the secrets are private; the monitor (the reading commands' identity)
    # cannot confirm a failback.
    assert cluster.permission_violations() == []
    secrets = cluster.data / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in secrets.glob("*.nk")} == {0o600}
    nats_url = json.loads((cluster.data / "cluster.json").read_text())["nats_url"]
    as_monitor = blaze(
        "failback",
        "rs-1",
        "--nats",
        nats_url,
        "--creds",
        str(secrets / "monitor.nk"),
        cwd=cluster.root,
    )
    assert as_monitor.returncode == 2
    assert "NATS refused this identity publishing on blaze.admin.failback" in one_error_line(
        as_monitor
    )

    # SIGINT: everything stops, in time, and nothing is left behind.
    assert cluster.process is not None
    os.killpg(cluster.process.pid, signal.SIGINT)
    assert cluster.process.wait(STOP_BOUND_S) == 0
    assert "every process stopped" in cluster.log()
    leftovers = [pid for pid in cluster.pids_seen if pid in processes_using(cluster.data)]
    assert leftovers == []
    assert processes_using(cluster.data) == [], "a child (or nats-server) outlived blaze up"
    assert not (cluster.data / "cluster.json").exists()
    after = cluster.run("status")
    assert after.returncode == 2
    assert "no running cluster" in one_error_line(after)


@pytest.fixture
def ha_cluster(tmp_path: Path) -> Iterator[BlazeUp]:
    """``blaze up --ha --tls``: three NATS nodes and two replicas of each service, every
    connection (clients and routes) under TLS with a generated CA (issue 7)."""
    up = BlazeUp(tmp_path, "--ha", "--tls")
    try:
        up.start()
        yield up
    finally:
        up.stop()


def test_blaze_up_ha_shows_its_leaders_survives_a_killed_leader_and_stops_cleanly(
    ha_cluster: BlazeUp,
) -> None:
    """R12 end to end: ``blaze up --ha`` runs two replicas of each service on three NATS
    nodes; ``blaze status`` names each leader; after a SIGKILL of the placement leader a
    storage failure still fails over; SIGINT leaves nothing behind."""
    cluster = ha_cluster
    doc = cluster.wait(lambda s: all_home(s) and len(s["leaders"]) == 3, 60, "up, 3 leaders")
    replicas = {f"{svc}-{r}" for svc in ("health", "placement", "sync") for r in "ab"}
    assert {s["name"] for s in doc["services"]} == replicas | (
        SERVICES - {"health", "placement", "sync"}
    )
    for service, holder in doc["leaders"].items():
        assert holder in (f"{service}-a", f"{service}-b"), doc["leaders"]
    assert "LEADERS   health=" in cluster.ok("status")
    assert "3 clustered nodes" in cluster.log()

    leader = doc["leaders"]["placement"]
    killed = _pid_of(doc, leader)
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    killed_epoch = max(_placement_epochs(cluster, leader))
    cluster.ok("sim", "storage-fail", "rs-1")
    cluster.wait(failed_over("rs-1", "storage_failed"), 30, "failed over after the kill")
    epochs = _placement_epochs(cluster, "placement-a") + _placement_epochs(cluster, "placement-b")
    assert max(epochs) > killed_epoch, "the next leader did not lead under a newer epoch"
    assert cluster.permission_violations() == []
    assert all("tls {" in p.read_text() for p in cluster.data.glob("nats-*.conf"))

    assert cluster.process is not None
    os.killpg(cluster.process.pid, signal.SIGINT)
    assert cluster.process.wait(STOP_BOUND_S) == 0
    assert processes_using(cluster.data) == [], "a child (or a nats-server) outlived blaze up"


def _placement_epochs(cluster: BlazeUp, replica: str) -> list[int]:
    """Every epoch a placement replica has logged leading under."""
    text = (cluster.data / "logs" / f"{replica}.log").read_text(errors="replace")
    return [int(e) for e in re.findall(r"leads placement under epoch (\d+)", text)]
