"""A per-user cache of loaded rule packs, so that a command does not parse and type-check the
same rule files again.

Loading the built-in pack (43 YAML files: parse, build the syntax trees, check types and
units) takes ~0.07 s and needs PyYAML imported; reading a cached copy takes ~0.01 s. Every
command that evaluates rules loads the pack: `timeline state` takes ~0.41 s with the cache
and ~0.51 s without it (10k benchmark store; the loader also imports PyYAML, and pydantic for
the example events' models, which a command reading the cache never imports).

A cached rule set is used only if everything that went into it is unchanged. Its key is a
SHA-256 over:

- the cache format, timeline's version, Python's version and which PyYAML is installed (the
  path, size and modification time of its ``__init__.py``: the cached trees are plain Python
  objects, so pydantic's version is not in the key, nor is pydantic imported);
- the path, size and modification time of every module of the ``timeline`` package (an edited
  checkout invalidates every entry);
- every rule directory as given, and the path and **contents** of every rule file in it, in the
  order the loader reads them;
- the ``--param`` overrides.

Only rule sets that loaded without problems are stored, so every error is still found and
reported by the loader itself. The cache is ``$TIMELINE_CACHE_DIR``, else
``$XDG_CACHE_HOME/timeline``, else ``~/.cache/timeline``; ``TIMELINE_NO_CACHE=1`` turns it
off. Entries are pickles, so a directory or file that another user could have written is
ignored. A cache that cannot be read or written is skipped silently: the rules are then
loaded as without it. At most ``KEEP`` entries are kept, the least recently written removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import timeline

if TYPE_CHECKING:
    from timeline.language.loader import RuleSet

FORMAT = 3  # 2: the syntax tree's classes are no longer pydantic models; 3: examples pickled apart
KEEP = 32
_PACKAGE = Path(timeline.__file__).resolve().parent


def cache_dir() -> Path | None:
    """Where entries live, or None when the cache is turned off."""
    if os.environ.get("TIMELINE_NO_CACHE", "").strip() not in ("", "0"):
        return None
    explicit = os.environ.get("TIMELINE_CACHE_DIR", "").strip()
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "timeline"


def _code_fingerprint() -> list[Any]:
    out: list[Any] = [FORMAT, timeline.__version__, sys.version, _pyyaml()]
    for parts in _modules(str(_PACKAGE)):
        st = os.stat(os.path.join(_PACKAGE, *parts))
        out.append(("/".join(parts), st.st_size, st.st_mtime_ns))
    return out


def _pyyaml() -> list[Any] | None:
    """Which PyYAML is installed, without importing it (importing yaml is what the cache saves):
    the path, size and modification time of its package's ``__init__.py``, which an install of
    another version writes anew (found where ``import yaml`` would find it: ~0.1 ms, where its
    version from importlib.metadata took ~0.5–2.5 ms, a scan of every entry of the import
    path); None when it is not installed."""
    from importlib.util import find_spec

    spec = find_spec("yaml")
    if spec is None or spec.origin is None:  # pragma: no cover - PyYAML is a dependency
        return None
    try:
        st = os.stat(spec.origin)
    except OSError:  # pragma: no cover - found a moment ago
        return [spec.origin]
    return [spec.origin, st.st_size, st.st_mtime_ns]


def _modules(top: str) -> list[tuple[str, ...]]:
    """What ``Path(top).rglob("*.py")`` finds, as parts of its paths below ``top``, in the order
    of the paths (by their parts), without pathlib's cost per path (~1 ms of every command's
    start)."""
    found: list[tuple[str, ...]] = []
    for root, dirs, files in os.walk(top):
        below = () if root == top else tuple(os.path.relpath(root, top).split(os.sep))
        found.extend((*below, name) for name in (*dirs, *files) if name.endswith(".py"))
    return sorted(found)


def cache_key(
    dirs: Sequence[str | os.PathLike[str]], params: dict[str, dict[str, Any]] | None, site_params: bool = True
) -> str | None:
    """The key of a load of ``dirs`` with ``params``; None when it cannot be cached (a directory
    that does not exist or cannot be read: the loader reports it)."""
    from timeline.language import loader

    h = hashlib.sha256()
    h.update(json.dumps(_code_fingerprint()).encode())
    h.update(json.dumps(params or {}, sort_keys=True, default=str).encode())
    if not site_params:
        h.update(b"\0defaults\0")
    for d in dirs:
        directory = Path(d)
        try:
            if not directory.is_dir():
                return None
        except OSError:  # a path that cannot name a directory: the loader reports it
            return None
        h.update(b"\0dir\0" + str(directory).encode())
        for path in loader.rule_files(directory):
            h.update(b"\0file\0" + str(path).encode() + b"\0")
            try:
                h.update(path.read_bytes())
            except OSError:
                return None  # not a readable file: the loader reports it
    return h.hexdigest()


def _trusted(path: Path) -> bool:
    """Owned by this user and not writable by anyone else (a pickle runs code when read)."""
    if not hasattr(os, "getuid"):  # pragma: no cover - not POSIX
        return True
    st = path.stat()
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def read(directory: Path, key: str) -> RuleSet | None:
    from timeline.language.loader import RuleSet

    entry = directory / f"rules-{key}.pickle"
    try:
        if not (_trusted(directory) and _trusted(entry)):
            return None
        with entry.open("rb") as f:
            value = pickle.load(f)
    except Exception:  # a missing, unreadable or damaged entry: load as without the cache
        return None
    return value if isinstance(value, RuleSet) else None


def write(directory: Path, key: str, ruleset: RuleSet) -> None:
    temp: Path | None = None
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _trusted(directory):  # never read (see read): not worth writing
            return
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".rules-", suffix=".tmp", delete=False) as f:
            temp = Path(f.name)
            pickle.dump(ruleset, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temp, directory / f"rules-{key}.pickle")
        temp = None
        entries = sorted(directory.glob("rules-*.pickle"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in entries[KEEP:]:
            old.unlink(missing_ok=True)
    except Exception:  # a read-only or full disk: the cache is only an optimisation
        if temp is not None:
            temp.unlink(missing_ok=True)


def load_rules(
    dirs: Sequence[str | os.PathLike[str]] | None = None,
    *,
    params: dict[str, dict[str, Any]] | None = None,
    site_params: bool = True,
) -> RuleSet:
    """``timeline.language.loader.load_rules`` through the cache: the same rule set, or the same
    ``RuleError``."""
    from timeline.language import loader

    resolved = list(dirs) if dirs is not None else loader.rule_dirs()
    directory = cache_dir()
    key = cache_key(resolved, params, site_params) if directory is not None else None
    if directory is not None and key is not None:
        hit = read(directory, key)
        if hit is not None:
            # the key is the files' names and contents: the same files elsewhere are a hit,
            # read from where they are now
            hit.directories = loader.directories_of(resolved)
            return hit
    ruleset = loader.load_rules(resolved, params=params, site_params=site_params)
    if directory is not None and key is not None:
        write(directory, key, ruleset)
    return ruleset
