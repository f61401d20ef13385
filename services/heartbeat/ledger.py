"""The agent's epoch ledger in SQLite: the newest epoch seen per camera and the newest
placement leader epoch (fence), kept across restarts.

An agent refuses any command older than what it has seen, even after a
crash, so a stale decision, or one from a deposed leader, can never take a camera back.
"""

from __future__ import annotations

from pathlib import Path

import aiosqlite


class EpochLedger:
    """Newest epoch seen per camera."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._epochs: dict[str, int] = {}
        self._fences: dict[str, int] = {}
        self.cluster = ""
        """Id of the cluster whose epochs these are (see ``start_cluster``)."""

    @classmethod
    async def open(cls, path: Path) -> EpochLedger:
        """Open (or create) the ledger file."""
        db = await open_database(
            path, "CREATE TABLE IF NOT EXISTS camera_epoch (camera TEXT PRIMARY KEY, epoch INTEGER)"
        )
        ledger = cls(db)
        try:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS leader_fence (service TEXT PRIMARY KEY, epoch INTEGER)"
            )
            await db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            async with db.execute("SELECT value FROM meta WHERE key = 'cluster'") as rows:
                ledger.cluster = next(iter([v async for (v,) in rows]), "")
            async with db.execute("SELECT camera, epoch FROM camera_epoch") as rows:
                ledger._epochs = {camera: epoch async for camera, epoch in rows}
            async with db.execute("SELECT service, epoch FROM leader_fence") as rows:
                ledger._fences = {service: epoch async for service, epoch in rows}
        except BaseException:
            await db.close()
            raise
        return ledger

    def seen(self, camera: str) -> int:
        """The newest epoch seen for a camera (0 if never)."""
        return self._epochs.get(camera, 0)

    async def record(self, epochs: dict[str, int]) -> None:
        """Remember newer epochs, durably, in one transaction."""
        newer = {c: e for c, e in epochs.items() if e > self.seen(c)}
        if not newer:
            return
        await self._db.executemany(
            "INSERT INTO camera_epoch (camera, epoch) VALUES (?, ?) "
            "ON CONFLICT(camera) DO UPDATE SET epoch = excluded.epoch",
            sorted(newer.items()),
        )
        await self._db.commit()
        self._epochs.update(newer)

    def fence(self, service: str) -> int:
        """The newest leader epoch seen from a service (0 if never, R12)."""
        return self._fences.get(service, 0)

    async def record_fence(self, service: str, epoch: int) -> None:
        """Remember a newer leader epoch, durably, before acting on its command."""
        if epoch <= self.fence(service):
            return
        await self._db.execute(
            "INSERT INTO leader_fence (service, epoch) VALUES (?, ?) "
            "ON CONFLICT(service) DO UPDATE SET epoch = excluded.epoch",
            (service, epoch),
        )
        await self._db.commit()
        self._fences[service] = epoch

    async def start_cluster(self, cluster: str) -> None:
        """Commands now come from another cluster (its NATS store started afresh, so its
        epochs start at 1 again): forget every epoch of the old one, durably."""
        await self._db.execute("DELETE FROM camera_epoch")
        await self._db.execute("DELETE FROM leader_fence")
        await self._db.execute(
            "INSERT INTO meta (key, value) VALUES ('cluster', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (cluster,),
        )
        await self._db.commit()
        self._epochs.clear()
        self._fences.clear()
        self.cluster = cluster

    async def close(self) -> None:
        """Close the database."""
        await self._db.close()


async def open_database(
    path: Path, schema: str, *, autocommit: bool = False
) -> aiosqlite.Connection:
    """Open (or create) one of the agent's SQLite files in WAL mode with its table;
    closed again if that fails, so no connection is left to the garbage collector.
    With ``autocommit`` every statement is its own transaction, committed (and its WAL
    fsynced) before it returns: one trip to the database thread instead of two."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = await (
        aiosqlite.connect(path, isolation_level=None) if autocommit else aiosqlite.connect(path)
    )
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")  # the WAL fsynced at every commit
        await db.execute(schema)
        await db.commit()
    except BaseException:
        await db.close()
        raise
    return db
