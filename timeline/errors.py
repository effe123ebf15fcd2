"""One root exception for everything the library reports to a user.

The CLI turns any ``TimelineError`` into a one-line message (plus details) and a
non-zero exit code; anything else reaching the user is a bug.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path


def first_line(exc: BaseException) -> str:
    """The first line of an error's message, with unprintable characters escaped (a file
    reader's message can quote the damaged bytes)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


class TimelineError(Exception):
    """Root of every error the library raises on purpose."""

    exit_code = 1

    def details(self) -> list[str]:
        """Extra lines shown under the one-line message."""
        return []


def cannot_write(target: object, exc: BaseException) -> TimelineError:
    """An output that could not be written (permissions, a full disk, a path under a file),
    as an error naming it: the system's reason, or the first line of DuckDB's."""
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
    return TimelineError(f"cannot write {target}: {why}")


@contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target``, moved onto it when the block succeeds: a reader
    never sees a half-written file, and a failed or interrupted write leaves what was there.
    A device or a pipe (``/dev/stdout``) is written as it is. A write that fails
    (permissions, a full disk) is an error naming ``target``."""
    import duckdb

    if target.exists() and not target.is_file():  # a device or a pipe (/dev/stdout): as it is
        try:
            yield target
        except (OSError, duckdb.IOException) as exc:
            raise cannot_write(target, exc) from exc
        return
    tmp = target.with_name(f".{target.name}.part-{os.getpid()}")
    try:
        yield tmp
        tmp.replace(target)
    except (OSError, duckdb.IOException) as exc:
        raise cannot_write(target, exc) from exc
    finally:
        with suppress(OSError):  # a path under a file: reported above
            tmp.unlink(missing_ok=True)


class UsageError(TimelineError):
    """A command-line value or library argument is wrong."""

    exit_code = 2


class StoreError(TimelineError):
    """The store file is missing, foreign or damaged."""

    exit_code = 3


class StoreLockedError(StoreError):
    """Another process holds the store's write lock."""

    exit_code = 4

    def __init__(self, path: str, pid: int | None) -> None:
        who = f"process {pid}" if pid is not None else "another process"
        super().__init__(f"store is in use by {who}: {path} (retry with --wait SECONDS)")
        self.path = path
        self.pid = pid


class UnknownEventError(TimelineError):
    """An event id that the store does not hold (as known at the given moment); ``hint``, a
    line under the message, says what to do instead."""

    exit_code = 5

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def details(self) -> list[str]:
        return [self.hint] if self.hint else []


class UnknownPatientError(TimelineError):
    """A patient id with no events in the store (as known at the given moment)."""

    exit_code = 5


@dataclass(frozen=True)
class RowError:
    """One problem with one row of an input file."""

    row: int | None
    field: str | None
    reason: str
    # the file's line, when it is not the row's number plus one (a CSV file with a quoted
    # field running over lines, or blank lines, before the row)
    line: int | None = None
    # the file the row is in, when the source is several files (a MEDS dataset's data/3.parquet):
    # ``row`` is then that file's own row, from 1
    file: str | None = None

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file + (f" row {self.row}" if self.row is not None else ""))
        elif self.row is not None:
            where.append(f"row {self.row}" + (f" (line {self.line})" if self.line is not None else ""))
        if self.field:
            where.append(f"field {self.field}")
        return f"{', '.join(where) or 'file'}: {self.reason}"


@dataclass
class IngestError(TimelineError):
    """A batch was rejected; nothing was written. Carries every problem found."""

    source: str
    errors: list[RowError] = field(default_factory=list)
    # how many errors were found, when more than ``errors`` lists (a list is capped at
    # MAX_REPORTED); None: ``errors`` is all of them
    total: int | None = None
    exit_code = 6

    def __post_init__(self) -> None:
        super().__init__(self.summary())

    @property
    def found(self) -> int:
        """How many errors were found (``errors`` may list only the first of them)."""
        return max(self.total or 0, len(self.errors))

    def summary(self) -> str:
        n, listed = self.found, len(self.errors)
        first = f", the first {listed:,} listed" if n > listed else ""
        return f"{self.source}: batch rejected, nothing written ({n:,} error{'s' if n != 1 else ''}{first})"

    def details(self) -> list[str]:
        return [f"{self.source}: {e}" for e in self.errors]


class IntegrityError(TimelineError):
    """``verify`` found a broken link in the hash chain."""

    exit_code = 7


class ResourceError(TimelineError):
    """DuckDB ran out of memory or temp disk during an evaluation or an ingest; the store is
    as it was."""

    exit_code = 10
