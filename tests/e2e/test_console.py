"""The web console (issue 6, R13) in headless Chromium, driven by Playwright.

Against a real ``blaze up``: the page shows the cluster; a storage failure injected from
the command line appears without a reload; the confirmation is refused while storage
still fails, with the reason ``blaze failback`` gives; once repaired, the confirmation
returns the cameras home. Then 100 servers and 5,000 cameras, from a placement state
folded by the real planner and written to JetStream KV: every camera is drawn, and a
change shows without a reload, in bounded time.

The browser is Debian's ``chromium`` (or ``BLAZE_CHROMIUM``); Playwright's own browser
download is never used. Screenshots go to the test's tmp dir, or to
``BLAZE_SCREENSHOTS_DIR`` when set (``docs/img`` holds the ones of docs/console.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright, expect

from services.cli import footage, views
from services.console import ConsoleService
from services.console.app import ADMIN_HEADER, NO_STATE
from services.console.feed import QUEUE_FRAMES, Feed, PageStream
from services.placement.state import Placement
from shared import subjects
from shared.bus import Bus, NatsServer, free_port
from shared.config import load_config
from shared.messages import FailureCause, ServerFailed
from tests.e2e.test_cli import BlazeUp
from tests.helpers import eventually
from tests.integration.cluster import Status, TestCluster, all_home, make_config, server

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """``BLAZE_CHROMIUM``, else the first Chromium on PATH (Debian: ``chromium``)."""
    chosen = os.environ.get("BLAZE_CHROMIUM")
    if chosen:
        return chosen
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = find_chromium()
NO_CHROMIUM = "no Chromium found: apt-get install chromium, or set BLAZE_CHROMIUM"
# No calls home: this machine (and CI) reaches no network but loopback.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT: ViewportSize = {"width": 1600, "height": 1000}
PAGE_BOUND_S = 20.0
"""What the page must show within this (the cluster acts in about a second)."""
expect.set_options(timeout=PAGE_BOUND_S * 1000)
RETURN_CAMERAS = "storage repaired — return cameras"

CONSOLE_CONFIG = """
[timing]
heartbeat_interval = 0.2
network_timeout = 2.0
storage_probe_interval = 0.2
""" + "".join(
    f'[[server]]\nid = "rs-{s}"\ncapacity = 16\n'
    + "".join(f'[[camera]]\nid = "cam-{s}-{c:02d}"\nhome = "rs-{s}"\n' for c in range(1, 13))
    for s in range(1, 5)
)
"""The demo's shape (4 servers of 16 channels, 12 cameras each), with fast timing."""


def screenshot_path(tmp_path: Path, name: str) -> Path:
    chosen = os.environ.get("BLAZE_SCREENSHOTS_DIR")
    folder = Path(chosen) if chosen else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium (the system's), closed after the test; the test is skipped
    where there is none."""
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """The console in a new page, and the script errors it will have (none, we hope)."""
    page = await browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(url)
    await page.evaluate("window.notReloaded = true")  # gone if the page ever reloads
    return page, errors


async def still_the_same_page(page: Page, errors: list[str]) -> None:
    """Nothing reloaded the page, and its script never failed."""
    assert await page.evaluate("window.notReloaded === true"), "the page was reloaded"
    assert errors == [], errors


# ---- against blaze up ----


class ConsoleCluster(BlazeUp):
    """``blaze up`` with the demo's shape and fast timing."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.config.write_text(CONSOLE_CONFIG)

    def console_url(self) -> str:
        """The URL ``blaze up`` printed, as it wrote it in cluster.json."""
        url: str = json.loads((self.data / "cluster.json").read_text())["console_url"]
        return url


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ConsoleCluster]:
    up = ConsoleCluster(tmp_path)
    try:
        up.start()
        yield up
    finally:
        up.stop()


@pytest.mark.slow
async def test_console_shows_a_storage_failure_live_refuses_early_and_returns_cameras(
    cluster: ConsoleCluster, browser: Browser, tmp_path: Path
) -> None:
    """Issue 6: the console against ``blaze up``, as an operator uses it (R3, R7, R8, R13)."""
    started = time.monotonic()
    await asyncio.to_thread(cluster.wait, all_home, 60, "every camera recording at home")
    printed = cluster.log()
    url = cluster.console_url()
    assert f"console     {url}" in printed, printed

    # The cluster: 4 servers with their capacity, 48 cameras, all home; live.
    page, errors = await open_page(browser, url)
    cards = page.locator("article.server")
    await expect(cards).to_have_count(4)
    await expect(page.locator(".cells i.cam.s-home")).to_have_count(48)
    await expect(page.locator("#live")).to_have_text("live")
    rs1 = page.locator('article.server[data-server="rs-1"]')
    await expect(rs1.locator(".barlabel")).to_have_text("12 / 16 channels")
    await expect(rs1.locator("i.cam")).to_have_count(12)

    # A storage failure from the command line shows up without a reload.
    injected = time.monotonic()
    await asyncio.to_thread(cluster.ok, "sim", "storage-fail", "rs-1")
    await expect(rs1.locator(".badge")).to_have_text("storage failed")
    failure_shown_in = time.monotonic() - injected
    await expect(page.locator(".cells i.cam.s-failed_over")).to_have_count(12)
    await expect(rs1.locator("i.cam")).to_have_count(0)
    await expect(rs1.locator(".away")).to_contain_text("12 of its cameras away")
    await expect(page.locator("#events")).to_contain_text("server_failed")
    await expect(page.locator("#events")).to_contain_text("server=rs-1, cause=storage")

    # What-if: the page shows what ``blaze whatif`` computes, by the same planner.
    predicted = json.loads(await asyncio.to_thread(cluster.ok, "whatif", "rs-2", "--json"))
    await (
        page.locator('article.server[data-server="rs-2"]')
        .get_by_role("button", name="what if it fails")
        .click()
    )
    await expect(page.locator(".whatif-result .headline")).to_have_text(
        f"If rs-2 failed now: {len(predicted['moves'])} cameras move, "
        f"{len(predicted['pending'])} go Pending, {len(predicted['preempted'])} preempted."
    )
    await page.screenshot(path=str(screenshot_path(tmp_path, "console-4-servers.png")))

    # The console dies: blaze up restarts it on the same port, and the page reconnects.
    console_pid = next(s["pid"] for s in cluster.now()["services"] if s["name"] == "console")
    os.kill(console_pid, signal.SIGKILL)
    await expect(page.locator("#live")).to_have_text("reconnecting")
    await expect(page.locator("#live")).to_have_text("live")

    # R7: confirmed while storage still fails: refused, with blaze failback's reason.
    refused = await asyncio.to_thread(cluster.run, "failback", "rs-1")
    reason = refused.stderr.strip().removeprefix("blaze: refused: ")
    assert "still reports failed storage" in reason, refused.stderr
    dialog = page.locator("#confirm")
    await rs1.get_by_role("button", name=RETURN_CAMERAS).click()
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("still reports failed storage: the cluster will refuse")
    await dialog.get_by_role("button", name="Return cameras").click()
    await expect(page.locator("#confirm-result")).to_have_text(f"Refused: {reason}")
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    assert server(cluster.now(), "rs-1")["state"] == "storage_failed"

    # Repaired: the page sees storage ok; confirmed there, the cameras come home.
    await asyncio.to_thread(cluster.ok, "sim", "storage-repair", "rs-1")
    await expect(rs1.locator(".meta")).to_contain_text("storage ok")
    await expect(rs1.locator(".badge")).to_have_text("storage failed")  # until confirmed (R7)
    await rs1.get_by_role("button", name=RETURN_CAMERAS).click()
    await expect(dialog.locator("#confirm-warning")).to_be_hidden()
    confirmed = time.monotonic()
    await dialog.get_by_role("button", name="Return cameras").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#toast")).to_have_text("failback of rs-1 confirmed")
    await expect(page.locator(".cells i.cam.s-home")).to_have_count(48)
    home_shown_in = time.monotonic() - confirmed
    await expect(rs1.locator(".badge")).to_have_text("online")
    await expect(rs1.locator("i.cam")).to_have_count(12)
    await expect(page.locator("#events")).to_contain_text("failback_confirmed")
    await expect(page.locator("#events")).to_contain_text("failback_completed")
    assert all_home(cluster.now())
    await still_the_same_page(page, errors)
    log = [json.loads(line) for line in cluster.ok("events", "--json").splitlines()]
    confirmations = [e for e in log if e["type"] == "failback_confirmed"]
    assert [(e["server"], e["by"]) for e in confirmations] == [("rs-1", "console@127.0.0.1")]
    print(
        f"storage failure shown {failure_shown_in:.2f} s after blaze sim; cameras shown home "
        f"{home_shown_in:.2f} s after the click; {time.monotonic() - started:.1f} s in all"
    )


# ---- 100 servers and 5,000 cameras ----

SITES = ("north", "south")
GROUPS_PER_SITE = 5
SERVERS_PER_GROUP = 10
CAMERAS_PER_SERVER = 50


def big_config(path: Path) -> Path:
    """100 servers in 2 sites of 5 groups, 50 cameras each; the south is nearly full."""
    parts = []
    for index in range(100):
        site = SITES[index // (GROUPS_PER_SITE * SERVERS_PER_GROUP)]
        group = f"{site}-{index // SERVERS_PER_GROUP % GROUPS_PER_SITE + 1}"
        capacity = 56 if site == "north" else 51
        parts.append(
            f'[[server]]\nid = "rs-{index + 1:03d}"\ncapacity = {capacity}\n'
            f'site = "{site}"\ngroup = "{group}"\n'
        )
        for cam in range(CAMERAS_PER_SERVER):
            priority = "high" if cam < 5 else "low" if cam >= 40 else "medium"
            parts.append(
                f'[[camera]]\nid = "cam-{index + 1:03d}-{cam + 1:02d}"\n'
                f'home = "rs-{index + 1:03d}"\npriority = "{priority}"\n'
            )
    path.write_text("".join(parts))
    return path


def big_state(config_path: Path) -> tuple[Placement, list[ServerFailed]]:
    """The real fold: everything home, then two storage failures carried out, one of the
    south (too full: some go Pending) and a network failure whose moves are under way."""
    state, _ = Placement.from_config(load_config(config_path))
    state.agents_comply()
    failures = [
        ServerFailed(server="rs-007", cause=FailureCause.STORAGE, detail="disk array offline"),
        ServerFailed(server="rs-063", cause=FailureCause.STORAGE, detail="RAID degraded"),
        ServerFailed(server="rs-042", cause=FailureCause.NETWORK, detail="no heartbeat"),
    ]
    for failure in failures[:2]:
        state.apply(failure)
        state.agents_comply()
    state.apply(failures[2])  # its moves stay planned: "moving"
    return state, failures


@pytest.fixture
async def console(nats_server: NatsServer, bus: Bus) -> AsyncIterator[ConsoleService]:
    """The console service in this process, on the test's nats-server."""
    service = ConsoleService(nats_server.url, port=free_port())
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        serving = asyncio.ensure_future(service.serving.wait())
        await asyncio.wait([serving, task], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        serving.cancel()
        assert service.serving.is_set(), f"the console did not start: {task}"
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.mark.slow
async def test_console_draws_100_servers_and_5000_cameras_and_follows_a_change(
    bus: Bus, console: ConsoleService, browser: Browser, tmp_path: Path
) -> None:
    """Issue 6: usable at 100 servers and 5,000 cameras: all drawn, by state, in one
    render that stays well under a second; a change shows without a reload."""
    state, failures = big_state(big_config(tmp_path / "big.toml"))
    counts = {s: sum(c.state.value == s for c in state.cameras.values()) for s in ("pending",)}
    assert counts["pending"] > 0, "the picture should show Pending cameras"
    revision = await bus.write_state(state.model_dump_json().encode(), None)
    for i, failure in enumerate(failures):
        await bus.publish_event(
            subjects.server_event(failure.server, failure.type), failure, f"big-{i}"
        )

    opened = time.monotonic()
    page, errors = await open_page(browser, console.url)
    await expect(page.locator("article.server")).to_have_count(100)
    await expect(page.locator(".cells i.cam")).to_have_count(5_000)
    shown_in = time.monotonic() - opened
    assert await page.locator(".cells i.cam.s-pending").count() == counts["pending"]
    assert await page.locator(".cells i.cam.s-moving").count() == CAMERAS_PER_SERVER
    await expect(page.locator("#events")).to_contain_text("server=rs-042, cause=network")
    render_ms = float(await page.evaluate("Number(document.body.dataset.renderMs)"))
    assert render_ms < 1_000, f"one render of 5,000 cameras took {render_ms} ms"

    # The what-if of a busy server at this size, then the screenshot.
    await page.select_option("#whatif-server", "rs-012")
    await expect(page.locator(".whatif-result .headline")).to_contain_text("If rs-012 failed now")
    await page.screenshot(path=str(screenshot_path(tmp_path, "console-100-servers.png")))

    # A change in the state (the moves carried out) shows without a reload.
    state.agents_comply()
    changed = time.monotonic()
    newest = await bus.write_state(state.model_dump_json().encode(), revision)
    await expect(page.locator(".cells i.cam.s-moving")).to_have_count(0)
    followed_in = time.monotonic() - changed
    await expect(page.locator("body")).to_have_attribute("data-revision", str(newest))
    await still_the_same_page(page, errors)
    print(
        f"100 servers, 5,000 cameras: shown {shown_in:.2f} s after opening, one render "
        f"{render_ms:.0f} ms, a change shown {followed_in:.2f} s after it was written"
    )


# ---- the JSON API, as a script would use it (no browser) ----


async def test_console_api_answers_as_the_command_line_does(
    nats_server: NatsServer, bus: Bus, console: ConsoleService, tmp_path: Path
) -> None:
    """Issue 6: the console's API gives the command line's documents and answers, a
    refusal as ``ok`` false with the reason, and the event stream resumes where a page
    left off (``Last-Event-ID``)."""
    async with aiohttp.ClientSession(console.url) as http:

        async def get(path: str) -> tuple[int, dict[str, Any]]:
            async with http.get(path) as response:
                return response.status, await response.json()

        async def confirm(sid: str, **headers: str) -> tuple[int, dict[str, Any]]:
            async with http.post(f"/api/failback/{sid}", headers=headers) as response:
                return response.status, await response.json()

        # Nothing running yet: said so, never a stack trace.
        assert await get("/api/status") == (503, {"error": NO_STATE})
        code, answer = await confirm("rs-1", **{ADMIN_HEADER: "1"})
        assert (code, answer["ok"]) == (503, False)
        assert "no responders on blaze.admin.failback" in answer["reason"]
        assert (await get("/healthz"))[0] == 200
        assert await get("/readyz") == (200, {"nats": "connected"})

        cluster = TestCluster(nats_server, make_config({"rs-1": 2, "rs-2": 2}, CAMS), tmp_path)
        try:
            await cluster.start()
            await cluster.wait_status(all_home, 20, "every camera home")

            async def both() -> tuple[dict[str, Any], Status, tuple[bytes, int] | None]:
                return (await get("/api/status"))[1], await cluster.status(), await bus.read_state()

            doc, expected, snapshot = await eventually(
                both,
                lambda got: got[2] is not None and got[0].get("revision") == got[2][1],
                10,
                "the console shows the newest placement state",
            )
            assert snapshot is not None
            assert all_home(doc)
            assert {k: doc[k] for k in ("servers", "cameras", "leaders")} == {
                k: expected[k] for k in ("servers", "cameras", "leaders")
            }

            # The administrator's action: blaze failback's request, its refusals.
            assert (await confirm("rs-1"))[0] == 403, "a POST without the header is refused"
            assert await confirm("rs-1", **{ADMIN_HEADER: "1"}) == (
                200,
                {"ok": False, "reason": "server 'rs-1' is not storage-failed (it is up)"},
            )
            assert await confirm("rs-9", **{ADMIN_HEADER: "1"}) == (
                200,
                {"ok": False, "reason": "unknown server 'rs-9'"},
            )
            assert (await confirm("rs.1", **{ADMIN_HEADER: "1"}))[0] == 400
            # DNS rebinding: a page of another name pointed at this address gets nothing.
            rebound = {ADMIN_HEADER: "1", "Host": "attacker.example"}
            assert (await confirm("rs-1", **rebound))[0] == 421
            async with http.get("/api/status", headers={"Host": "attacker.example"}) as r:
                assert r.status == 421
            async with http.get("/readyz", headers={"Host": "10.0.0.7:8080"}) as r:
                assert r.status == 200, "probes name the pod's address and must pass"

            # What-if: the planner's answer, as blaze whatif --json gives it.
            state = Placement.model_validate_json(snapshot[0])
            code, whatif = await get("/api/whatif/rs-1")
            assert code == 200
            assert {k: whatif[k] for k in ("server", "moves", "pending", "preempted")} == (
                views.whatif_document(state, "rs-1")
            )
            assert await get("/api/whatif/rs-9") == (404, {"error": "unknown server 'rs-9'"})
            assert await get("/api/sync") == (200, await footage.sync_document(bus))

            # The event stream: from the history kept, after the page's last event.
            events = await cluster.events()
            assert len(events) > 3
            resume_after = events[1][0]
            frames = await read_frames(http, resume_after, count=2)
            assert [f["id"] for f in frames] == [str(seq) for seq, _ in events[2:4]]
            assert frames[0]["event"] == "event"
            first = json.loads(frames[0]["data"])
            assert first["seq"] == events[2][0]
            assert first["type"] == events[2][1].type

            # NATS gone: the last state is still shown, marked stale; back: unmarked.
            async def stale() -> str:
                async with http.get("/api/status") as r:
                    return r.headers.get("X-Blaze-Stale", "") if r.status == 200 else "?"

            nats_server.stop()
            reason = await eventually(stale, bool, 20, "the status marked stale")
            assert "placement state" in reason
            nats_server.start()
            await eventually(stale, lambda r: r == "", 30, "the stale mark gone")
        finally:
            await cluster.close()


CAMS = {"c1": "rs-1", "c2": "rs-2"}


async def read_frames(http: aiohttp.ClientSession, after: int, count: int) -> list[dict[str, str]]:
    """The first ``count`` event frames of ``/api/events`` for a page whose last event
    was ``after``, each as {field: value}."""
    frames: list[dict[str, str]] = []
    async with (
        asyncio.timeout(10),
        http.get("/api/events", headers={"Last-Event-ID": str(after)}) as response,
    ):
        assert response.headers["Content-Type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        while len(frames) < count:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
            elif fields:
                if fields.get("event") == "event":
                    frames.append(fields)
                fields = {}
    return frames


async def test_feed_resumes_a_page_after_its_last_event_and_ends_one_that_falls_behind() -> None:
    """The console's fan-out: a reconnecting page gets only what it missed (of what is
    kept); a page that stops reading is ended, not buffered without bound."""
    feed = Feed(history=3)
    for seq in range(1, 6):
        feed.add_event(seq, {"type": "server_failed"})
    feed.status_changed({"version": 1})

    async def drain(page: PageStream) -> list[bytes]:
        got = []
        while (item := await page.next(0.01)) not in (None, b""):
            assert item is not None
            got.append(item)
        return got

    resumed = await drain(feed.open(after=3))
    assert [f.split(b"\n")[0] for f in resumed] == [b"id: 4", b"id: 5", b"event: status"]
    fresh = await drain(feed.open(after=None))
    assert [f.split(b"\n")[0] for f in fresh][:3] == [b"id: 3", b"id: 4", b"id: 5"]

    slow = feed.open(after=5)
    for seq in range(6, 6 + QUEUE_FRAMES + 1):
        feed.add_event(seq, {"type": "camera_moved"})
    assert slow.ended
    assert len(await drain(slow)) == QUEUE_FRAMES  # what it had queued, then the end
    assert await slow.next(0.01) is None
    feed.close(slow)
    assert feed.pages == 2
    feed.close_all()
    assert feed.pages == 0
