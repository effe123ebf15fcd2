"""Byte-for-byte comparison of `timeline state` and `timeline explain` between two installations
(A: the base; B: the changed one): standard output, standard error and exit code of each
command line, through a pipe and on a terminal (a pseudo-terminal 100 columns wide), over
several stores, patients, dates, rules, ``--as-known-at``, ``--param``, ``--rules`` and errors.
Used to show that a change of start-up (helper 78: cli.fast) changes no output.

    python -m benchmarks.startup_outputs --a /path/to/main/timeline --b .venv/bin/timeline \\
        --store benchmarks/data/suite-10000/store.duckdb

The suite's store is opened read-only by these commands; the Valencia example and the 14-event
example are loaded into a temporary directory. Prints each difference and the count compared;
exits 1 if any differs.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import tempfile
import termios
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def piped(cmd: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


def on_terminal(cmd: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """The command with standard output and error on a pseudo-terminal, 100 columns wide."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 100, 0, 0))
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 300)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return proc.wait(timeout=300), out, b""


def command_lines(suite: Path | None, valencia: Path, before: str, example: Path) -> list[list[str]]:
    lines: list[list[str]] = []
    v = ["--store", str(valencia)]
    for patient, day in (
        ("V09", "2007-04-03"),
        ("V01", "2006-09-01"),
        ("V17", "2008-01-15"),
        ("V22", "2010-06-30"),
    ):
        lines += [["state", patient, "--at", day, *v], ["state", patient, "--at", day, "--json", *v]]
        for rule in (
            "complete_response",
            "active_arthritis",
            "crp_normal",
            "anakinra_dose_mg_kg_day",
            "fever_free",
        ):
            lines += [
                ["explain", patient, rule, "--at", day, *v],
                ["explain", patient, rule, "--at", day, "--json", *v],
            ]
    lines += [
        [
            "state",
            "V09",
            "--at",
            "2007-04-03",
            "--rule",
            "active_arthritis",
            "--rule",
            "complete_response",
            *v,
        ],
        ["state", "V09", "--at", "2007-04-03", "--as-known-at", before, *v],
        ["state", "V09", "--at", "2007-04-03", "--as-known-at", before, "--json", *v],
        ["explain", "V09", "complete_response", "--at", "2007-04-03", "--as-known-at", before, *v],
        ["explain", "V09", "complete_response", "--at", "2007-04-03", "--as-known-at", "seq:1", "--json", *v],
        ["state", "V09", "--at", "2007-04-03T10:00", "--param", "crp_normal.upper=3", *v],
        ["explain", "V09", "crp_normal", "--at", "2007-04-03", "--param", "crp_normal.upper=3", *v],
        ["state", "V09", "--at", "2007-04-03", "--rules", str(ROOT / "examples" / "site_rules"), *v],
        ["state", "V9", "--at", "2007-04-03", *v],  # unknown patient: exit 5, a did-you-mean
        ["state", "V09", "--at", "2007-13-03", *v],  # a bad date
        ["explain", "V09", "no_such_rule", "--at", "2007-04-03", *v],
        [
            "explain",
            "V09",
            "complete_response",
            "--at",
            "2007-04-03",
            "--json",
            "--as-known-at",
            "2001-01-01",
            *v,
        ],
        ["state", "V09", "--at", "2007-04-03", "--store", str(valencia.parent / "missing.duckdb")],
        ["state", "V09", "--at", "2007-04-03", "--bad-option", *v],  # typer's usage error
        ["state", "--help"],
        ["explain", "--help"],
        ["state", "V09", *v],  # --at missing
    ]
    # every rule of the built-in pack: explain builds each tree from the replay but those of
    # the rules that read held_for (helper 82), whose windows, types and orders must not change
    for rule in sorted(p.stem for p in (ROOT / "rules" / "sjia").glob("*.yaml")):
        lines += [
            ["explain", "V09", rule, "--at", "2007-04-03", *v],
            ["explain", "V09", rule, "--at", "2007-04-03", "--json", *v],
            ["explain", "V17", rule, "--at", "2008-01-15", "--as-known-at", before, "--json", *v],
        ]
    e = ["--store", str(example)]
    for day in ("2008-02-10", "2008-06-01", "2009-03-01"):
        lines += [["state", "P001", "--at", day, *e], ["state", "P001", "--at", day, "--json", *e]]
        for rule in ("crp_normal", "fever_free", "complete_response"):
            lines += [
                ["explain", "P001", rule, "--at", day, *e],
                ["explain", "P001", rule, "--at", day, "--json", *e],
            ]
    if suite is not None:
        s = ["--store", str(suite)]
        for patient, day in (
            ("S1-0001802", "2015-04-03"),
            ("S1-0000001", "2012-01-01"),
            ("S1-0004242", "2014-07-01"),
        ):
            lines += [["state", patient, "--at", day, *s], ["state", patient, "--at", day, "--json", *s]]
            for rule in (
                "complete_response",
                "inactive_disease",
                "crp_normal",
                "jadas10",
                "acr_pedi_30",
                "ms_score",
            ):
                lines += [
                    ["explain", patient, rule, "--at", day, *s],
                    ["explain", patient, rule, "--at", day, "--json", *s],
                ]
        lines += [
            ["state", "S1-0001802", "--at", "2015-04-03", "--as-known-at", "seq:1000000", *s],
            [
                "explain",
                "S1-0001802",
                "complete_response",
                "--at",
                "2015-04-03",
                "--as-known-at",
                "seq:1000000",
                *s,
            ],
        ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="the base's `timeline` executable")
    ap.add_argument("--b", required=True, help="the changed `timeline` executable")
    ap.add_argument("--store", type=Path, help="the suite's store (read only), optional")
    ap.add_argument(
        "--a-root", type=Path, help="A's checkout: its rule files' paths (in --json) are read as B's"
    )
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TIMELINE_STORE", "TIMELINE_RULES")}
    env["TIMELINE_AUTHOR"] = "compare"
    with tempfile.TemporaryDirectory() as tmp:
        valencia = Path(tmp) / "valencia.duckdb"
        load = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "valencia" / "load.py"), "--store", str(valencia)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        found = re.search(r"--as-known-at (\S+)", load.stdout)
        before = found.group(1) if found else "seq:1"
        example = Path(tmp) / "example.duckdb"
        subprocess.run([args.b, "init", "--store", str(example)], env=env, check=True, capture_output=True)
        subprocess.run(
            [args.b, "ingest", str(ROOT / "examples" / "events.csv"), "--store", str(example)],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        compared = differ = 0
        for line in command_lines(args.store, valencia, before, example):
            for how, runner in (("pipe", piped), ("terminal", on_terminal)):
                a = runner([args.a, *line], env)
                if args.a_root is not None:  # the built-in rules' "source", a path in the checkout
                    old, new = f"{args.a_root}/".encode(), f"{ROOT}/".encode()
                    a = (a[0], a[1].replace(old, new), a[2].replace(old, new))
                b = runner([args.b, *line], env)
                compared += 1
                if a != b:
                    differ += 1
                    print(f"DIFFERS ({how}): timeline {' '.join(line)}\n  A: {a!r:.300}\n  B: {b!r:.300}")
    print(f"{compared} outputs compared (exit code, stdout, stderr), {differ} differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
