"""One writer at a time: a second process is told who holds the store and may wait."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import EXAMPLE_CSV, run_cli, subprocess_env

HOLDER = """
import os, sys
from timeline.store import Store

store = Store.open(sys.argv[1], write=True)
print(os.getpid(), flush=True)
sys.stdin.read()  # hold the store until the parent closes our stdin
store.close()
"""


@dataclass
class Holder:
    process: subprocess.Popen[str]
    pid: int

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture
def holder(example_store: Path) -> Iterator[Holder]:
    """Another process that holds the example store open for writing."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(example_store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # printed once the store is open
    h = Holder(process, int(line))
    yield h
    if process.poll() is None:
        h.release()


def test_second_writer_is_told_which_process_holds_the_store(holder: Holder, example_store: Path) -> None:
    result = run_cli("ingest", EXAMPLE_CSV, "--store", example_store, "--author", "t")
    assert result.exit_code == 4
    assert result.stderr == (
        f"error: store is in use by process {holder.pid}: {example_store} (retry with --wait SECONDS)\n"
    )


def test_reader_is_told_the_store_is_in_use_while_a_writer_holds_it(
    holder: Holder, example_store: Path
) -> None:
    result = run_cli("info", "--store", example_store)
    assert (result.exit_code, f"process {holder.pid}" in result.stderr) == (4, True)


def test_second_writer_with_wait_succeeds_once_the_first_exits(holder: Holder, example_store: Path) -> None:
    extra = example_store.parent / "extra.csv"
    extra.write_text("event_id,patient_id,kind,occurred_at,code\nnew-1,P001,diagnosis,2009-01-01,sJIA\n")
    waiting = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "ingest", str(extra), "--store", str(example_store),
         "--author", "t", "--wait", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
    )  # fmt: skip
    time.sleep(1.0)
    still_waiting = waiting.poll() is None
    holder.release()
    out, err = waiting.communicate(timeout=30)
    assert still_waiting
    assert (waiting.returncode, err) == (0, "")
    assert out.startswith(f"{extra}: 1 event added as batch 2")
