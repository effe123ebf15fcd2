"""Helpers shared by the tests: run the CLI in-process, snapshot a store's content."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import duckdb

from cli.main import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXAMPLE_CSV = EXAMPLES / "events.csv"
EXAMPLE_EVENTS = 14

# Columns that record how and when an event reached the store, not what it says.
PROVENANCE = ("seq", "batch_id", "recorded_at", "row_hash", "source_row", "source_file", "author")


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str | os.PathLike[str]) -> CliResult:
    """Run ``timeline ARGS...`` in this process through the real entry point."""
    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    argv = ["timeline", *(str(a) for a in args)]
    with (
        mock.patch.object(sys, "argv", argv),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            main()
        except SystemExit as exc:
            code = exc.code
    if code is None:
        code = 0
    assert isinstance(code, int), f"exit with a non-integer code {code!r}"
    return CliResult(code, out.getvalue(), err.getvalue())


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child `timeline` process: no store or author leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMELINE_") and k != "FORCE_COLOR"}
    env.update(extra)
    return env


# A child `timeline` process for interrupt tests: ``SETUP`` runs first and may call
# ``ready()`` at the moment the parent should press Ctrl-C (on a pipe of its own, so that
# stdout and stderr stay the command's).
INTERRUPTED_CHILD = """
import os, sys
fd, setup = int(sys.argv[1]), sys.argv[2]
def ready():
    os.write(fd, b"ready\\n")
exec(setup, {"ready": ready})
sys.argv = ["timeline", *sys.argv[3:]]
from cli.main import main
main()
"""


# an interrupted_cli setup: `verify` calls ready() and then sleeps in Python, between queries
SLEEPING_VERIFY = """
import time
import timeline.integrity as integrity
def verify(store):
    ready()
    time.sleep(60)
integrity.verify = verify
"""


def interrupted_cli(
    setup: str, *args: str | os.PathLike[str], signum: int = signal.SIGINT, env: dict[str, str] | None = None
) -> CliResult:
    """Run ``timeline ARGS...`` in a child process and send it SIGINT, as Ctrl-C does (or
    ``signum``: SIGTERM, as `timeout` and a cancelled CI job do), once
    ``setup`` (Python run before the command, typically patching a step to call ``ready()``
    and then take long) says it is ready. Without a call to ``ready()`` the command runs to
    its end."""
    read_end, write_end = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_CHILD, str(write_end), setup, *(str(a) for a in args)],
        pass_fds=(write_end,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or subprocess_env(),
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as signals:
            if signals.readline():  # "" when the child ended without calling ready()
                child.send_signal(signum)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return CliResult(child.returncode, out, err)


def output_env(unbuffered: bool) -> dict[str, str]:
    """A child's environment with standard output unbuffered (PYTHONUNBUFFERED=1) or with
    Python's usual buffer, whatever this machine sets."""
    env = subprocess_env()
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli_into_closed_pipe(*args: str | os.PathLike[str], unbuffered: bool = False) -> CliResult:
    """Run ``timeline ARGS...`` in a child process whose standard output is a pipe that its
    reader has already closed (``timeline … | head -1`` once head has exited): every write to
    it fails. ``unbuffered``: as under PYTHONUNBUFFERED=1, else with Python's usual buffer."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = output_env(unbuffered)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", *(str(a) for a in args)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=60,
        )
    finally:
        os.close(write_end)
    return CliResult(done.returncode, "", done.stderr)


def run_cli_into_pipe_closed_midway(*args: str | os.PathLike[str], unbuffered: bool = False) -> CliResult:
    """Run ``timeline ARGS...`` with standard output a pipe of one page whose reader takes a
    few bytes and quits while the command is blocked in the middle of a write (``timeline …
    | head -c 100`` of an output larger than the pipe): that write is taken only in part and
    the next one fails. ``unbuffered``: as under PYTHONUNBUFFERED=1."""
    import fcntl
    import termios

    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    env = output_env(unbuffered)
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *(str(a) for a in args)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        os.close(write_end)
        write_end = -1
        waited = 0.0
        pending = bytearray(4)
        while waited < 60:  # until the pipe is full: the command is blocked writing
            fcntl.ioctl(read_end, termios.FIONREAD, pending)
            if int.from_bytes(pending, sys.byteorder) >= 4096 or child.poll() is not None:
                break
            time.sleep(0.01)
            waited += 0.01
        os.read(read_end, 100)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    _, err = child.communicate(timeout=60)
    return CliResult(child.returncode, "", err)


@contextlib.contextmanager
def raw_connection(path: Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A plain DuckDB connection, bypassing the library (tests may tamper; the library may not)."""
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        yield con
    finally:
        con.close()


def snapshot(path: Path) -> dict[str, Any]:
    """Everything a reader could see in a store: its tables, every row, the high-water seq."""
    with raw_connection(path, read_only=True) as con:
        return {
            "tables": con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY 1"
            ).fetchall(),
            "events": con.execute("SELECT * FROM events ORDER BY seq").fetchall(),
            "batches": con.execute("SELECT * FROM batches ORDER BY batch_id").fetchall(),
            "meta": con.execute("SELECT * FROM meta ORDER BY key").fetchall(),
            "high_water": con.execute("SELECT coalesce(max(last_seq), 0) FROM batches").fetchone(),
        }


def rows_without(rows: Sequence[dict[str, Any]], columns: Sequence[str] = PROVENANCE) -> list[dict[str, Any]]:
    """Rows with the given columns dropped, ordered by event id (for order-free comparison)."""
    kept = [{k: v for k, v in r.items() if k not in columns} for r in rows]
    return sorted(kept, key=lambda r: (str(r["event_id"]), str(r.get("op"))))


VALENCIA = Path(__file__).resolve().parent.parent / "examples" / "valencia"


def valencia_module(name: str) -> ModuleType:
    """A script of examples/valencia (not a package), e.g. ``load`` or ``generate``."""
    spec = importlib.util.spec_from_file_location(f"valencia_{name}", VALENCIA / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def readme_rule_passes(tmp_path: Path, after: str, rule_id: str) -> CliResult:
    """Write the README's first ```yaml block after the text ``after`` (a regex) as the rule file
    ``rule_id``.yaml in ``tmp_path`` and run its examples with `timeline rules test`."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(after + r".*?```yaml\n(.*?)```", readme, re.S)
    assert found is not None, f"no yaml block after {after!r} in the README"
    (tmp_path / f"{rule_id}.yaml").write_text(found.group(1), encoding="utf-8")
    return run_cli("rules", "test", "--rules", tmp_path, "--rule", rule_id)
