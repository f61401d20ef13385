"""Coverage-guided fuzzing of the parsers with atheris, when it is installed (it is not
among the dev extras: ``pip install atheris``). The harness is
``tests/unit/atheris_parsers.py``; it runs in a subprocess because libFuzzer ends the
process it runs in.

libFuzzer mutates a seed corpus of valid messages of every model (``-keep_seed=1``: the
parsing itself is pydantic-core's compiled code, so there is little coverage to guide it,
and without the flag it would drop the seeds as adding none).
"""

from __future__ import annotations

import os
import subprocess
import sys
from hashlib import sha256
from pathlib import Path

import pytest
from hypothesis import given

from shared.messages.catalog import message_models
from tests.junk import deterministic, documents, encode_doc, ids_from, unknown_ids

pytest.importorskip("atheris")

RUNS = int(os.environ.get("BLAZE_ATHERIS_RUNS") or 50_000)
SEEDS_PER_MODEL = 5
ROOT = Path(__file__).resolve().parents[2]


def write_seeds(corpus: Path) -> int:
    """Valid documents of every message model, one file each."""
    known = ["rs-1", "c11"]
    ids = ids_from(known, unknown_ids(known))
    written = 0
    for model in message_models():

        @deterministic(SEEDS_PER_MODEL)
        @given(doc=documents(model, ids))
        def seed(doc: dict[str, object]) -> None:
            nonlocal written
            data = encode_doc(doc)
            (corpus / sha256(data).hexdigest()).write_bytes(data)
            written += 1

        seed()
    return written


def test_mutated_messages_parse_or_are_refused_with_a_validation_error_only(
    tmp_path: Path,
) -> None:
    """``RUNS`` mutations of valid messages through ``parse_event`` and every model: each
    parses, and then survives a round trip, or raises ValidationError; nothing else."""
    assert write_seeds(tmp_path) >= len(message_models())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.unit.atheris_parsers",
            f"-runs={RUNS}",
            "-max_len=4096",
            "-seed=1",
            "-keep_seed=1",
            f"-artifact_prefix={tmp_path}/",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Done {RUNS} runs" in done.stderr, done.stderr[-3000:]
