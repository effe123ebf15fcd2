"""DuckDB as timeline's commands about one patient use it: the compiled engine module alone.

``import duckdb`` imports DuckDB's compiled module (``_duckdb``: connections, queries, results,
the exception classes) and then the package's own Python layer: the relational API attached to
connections (``con.sql``, ``con.read_parquet`` …), expressions, Arrow sources, the DB-API type
objects, and the package's version looked up through ``importlib.metadata``. That layer is ~0.08 s
of the ~0.12 s the import costs on the benchmark machine, the larger part of what `timeline
state` costs beyond Python's own start-up (benchmarks/README.md, round 32). timeline uses none of
it: it connects, executes SQL with parameters and fetches rows, and catches DuckDB's exceptions,
all of which the compiled module defines. The package re-exports the compiled module's classes,
so ``duckdb.DuckDBPyConnection``, ``duckdb.Error``, ``duckdb.IOException`` … are the same objects
whichever of the two a module imported, and a connection made here gains the relational API if
something later imports the package.

The modules on the path of `timeline state` and `timeline explain` (the store, the evaluator,
errors, integrity) import ``duckdb`` from here. Those that need the package (the ingest's
Python UDFs use ``duckdb.func``; the CLI's ``--version`` prints the package's version) import it
themselves. Every DuckDB timeline allows (pyproject: 1.4 and later, before 3) ships the compiled
module as ``_duckdb``; where it does not, this is the package itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the package's stubs describe the same classes and functions
    import duckdb
else:
    try:
        import _duckdb as duckdb
    except ImportError:  # pragma: no cover - a DuckDB without a separate compiled module
        import duckdb

__all__ = ["duckdb"]
