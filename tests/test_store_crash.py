"""A writer killed with SIGKILL in the middle of a large batch leaves all of it or none of
it, and a store that still verifies and accepts new batches."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import EXAMPLE_EVENTS, raw_connection, run_cli, subprocess_env

ROWS = 300_000

# The child reports each stage of the ingest on stdout, so that the parent can kill it at a
# known point instead of after a guessed sleep.
CHILD = """
import sys
from timeline.ingest import ingest_file
from timeline.store import Store

seen = set()

def progress(stage, pct):
    if stage not in seen:
        seen.add(stage)
        print(stage, flush=True)

with Store.open(sys.argv[1], write=True) as store:
    print("opened", flush=True)
    ingest_file(store, sys.argv[2], author="crash-test", progress=progress)
print("done", flush=True)
"""

# (stage, seconds after it starts): inside the insert, and around the commit.
KILL_POINTS = [("writing", 0.1), ("sealing", 0.1)]


@dataclass(frozen=True)
class Crash:
    store: Path
    stage: str
    output: list[str]
    returncode: int


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.csv"
    with path.open("w", encoding="utf-8") as fh:
        fh.write("event_id,patient_id,kind,occurred_at,code,value,unit\n")
        for i in range(ROWS):
            fh.write(
                f"big-{i},B{i % 500:04d},lab,2010-{1 + i % 12:02d}-{1 + i % 28:02d},1988-5,{i % 100}.5,mg/L\n"
            )
    return path


@pytest.fixture(scope="module", params=KILL_POINTS, ids=[f"{s}+{d}s" for s, d in KILL_POINTS])
def crash(
    request: pytest.FixtureRequest,
    big_csv: Path,
    example_store_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Crash:
    stage, delay = request.param
    store = tmp_path_factory.mktemp("crash") / "store.duckdb"
    shutil.copy(example_store_template, store)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store), str(big_csv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=subprocess_env(),
    )
    assert child.stdout is not None
    output = []
    try:
        for line in child.stdout:
            output.append(line.strip())
            if line.strip() == stage:
                time.sleep(delay)
                child.send_signal(signal.SIGKILL)
                break
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=60)
    return Crash(store, stage, output, child.returncode)


def counts(store: Path) -> tuple[int, int, int]:
    with raw_connection(store, read_only=True) as con:
        row = con.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM batches),"
            " (SELECT coalesce(max(last_seq), 0) FROM batches)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def test_the_child_is_killed_while_ingesting(crash: Crash) -> None:
    assert crash.stage in crash.output
    assert crash.returncode == -signal.SIGKILL or "done" in crash.output


def test_killed_ingest_leaves_all_of_the_batch_or_none_of_it(crash: Crash) -> None:
    none = (EXAMPLE_EVENTS, 1, EXAMPLE_EVENTS)
    everything = (EXAMPLE_EVENTS + ROWS, 2, EXAMPLE_EVENTS + ROWS)
    # Killed inside the insert, the batch cannot have committed; around the commit, either.
    allowed = [none] if crash.stage == "writing" else [none, everything]
    assert counts(crash.store) in allowed


def test_store_verifies_after_a_killed_ingest(crash: Crash) -> None:
    result = run_cli("verify", "--store", crash.store)
    assert (result.exit_code, result.stderr) == (0, "")


def test_store_accepts_a_new_batch_after_a_killed_ingest(crash: Crash, tmp_path: Path) -> None:
    store = tmp_path / "store.duckdb"
    shutil.copy(crash.store, store)
    extra = tmp_path / "extra.csv"
    extra.write_text("event_id,patient_id,kind,occurred_at,code\nnew-1,P001,diagnosis,2009-01-01,sJIA\n")
    before = counts(store)
    ingest = run_cli("ingest", extra, "--store", store, "--author", "t")
    verify = run_cli("verify", "--store", store)
    assert (ingest.exit_code, verify.exit_code) == (0, 0)
    assert counts(store)[0] == before[0] + 1


# A child that ingests with a progress callback (a thread runs each query while the main
# thread polls), its insert made to run until interrupted; it says when the insert runs.
INTERRUPTED_CHILD = """
import sys
import timeline.ingest as ingest
from timeline.store import Store

select = ingest._insert_select
ingest._insert_select = lambda *args, **kwargs: (
    f"SELECT * FROM ({select(*args, **kwargs)}) WHERE (SELECT sum(i) FROM range(1000000000000000) t(i)) > 0"
)
said = []

def progress(stage, pct):
    if stage == "writing" and not said:
        said.append(stage)
        print("writing", flush=True)

try:
    with Store.open(sys.argv[1], write=True) as store:
        ingest.ingest_file(store, sys.argv[2], author="t", progress=progress)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_while_a_thread_runs_the_ingest_query_waits_for_it_and_writes_nothing(
    example_store_template: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store.duckdb"
    shutil.copy(example_store_template, store)
    extra = tmp_path / "extra.csv"
    extra.write_text("event_id,patient_id,kind,occurred_at,code\nnew-1,P001,diagnosis,2009-01-01,sJIA\n")
    before = counts(store)
    child = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_CHILD, str(store), str(extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == "writing\n"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # before: the store closed under the running query (ResourceInUseException, or an abort)
    assert (child.returncode, out, err) == (0, "interrupted\n", "")
    assert counts(store) == before
    assert run_cli("verify", "--store", store).exit_code == 0
