"""Storage faults on a real directory: the recording directory is swapped for a plain file,
so every write under it fails with ENOTDIR (this works even for root, unlike chmod)."""

from __future__ import annotations

from pathlib import Path


def _aside(directory: Path) -> Path:
    return directory.with_name(directory.name + ".failed-storage")


def fail_storage(directory: Path) -> None:
    """Make real I/O under ``directory`` fail until ``repair_storage``."""
    if _aside(directory).exists():
        return
    if directory.is_dir():
        directory.rename(_aside(directory))
    else:
        _aside(directory).mkdir(parents=True)
    directory.write_bytes(b"storage failure injected by blaze sim\n")


def repair_storage(directory: Path) -> None:
    """Put the recording directory back, with everything it held."""
    aside = _aside(directory)
    if not aside.exists():
        return
    if directory.is_file():
        directory.unlink()
    aside.rename(directory)
