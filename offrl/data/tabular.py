"""Tabular logs: a CSV or Parquet file with one row per step, its columns mapped to a dataset.

A log as most systems write it -- one row per environment step, a column per observation and
action dimension, a reward, an episode id, perhaps a step counter and end flags -- becomes a
validated :class:`~offrl.data.dataset.Dataset` with :func:`load_table`::

    from offrl.data import load_table
    ds = load_table("log.parquet", obs="o_*", actions="a_*", reward="r", episode="episode",
                    terminal="done")

or from the command line: ``offrl dataset convert log.parquet out.npz --obs 'o_*' --act 'a_*'
--reward r --episode episode --terminal done``.

The rules, all checked (every problem is a :class:`~offrl.data.dataset.DatasetError` whose
message starts with the offending column, names the row where one is at fault -- rows count from
0, the header excluded; a CSV message adds the file's line -- and the file):

* **Columns.** ``obs``, ``actions`` and ``next_obs`` take column names or glob patterns
  (``"o_*"``, ``"joint_[0-9]"``); a pattern's matches are ordered naturally (``o_2`` before
  ``o_10``), a list keeps its own order, and the order used is recorded in
  ``metadata["columns"]``. Every mapped column must exist and be used once; the values must be
  numbers (no text, no empty cell, no NaN or inf).
* **Episodes** are runs of equal ``episode`` id (numbers or text). Rows are never reordered: the
  rows of an episode must be contiguous (an id that comes back after another episode is an
  error) and numeric ids must increase from one episode to the next.
* **Steps.** Within an episode the rows are its steps in file order; with a ``step`` column they
  must also count up by one (a gap would mean a missing row, whose successor would be wrong).
* **Successors.** ``next_observations`` of a row are the next row's observations within its
  episode, unless ``next_obs`` columns are given (then every row is a transition as it stands).
* **Episode ends.** The last row of an episode is a *terminal* when the ``terminal`` column
  says so, and otherwise a *timeout* (a truncation: the value of its successor bootstraps) --
  also when neither ``terminal`` nor ``timeout`` is given. A terminal or timeout flag on any
  other row, or both on one episode, is an error. Without ``next_obs`` a timed-out episode's
  last row has no logged successor and is dropped (D4RL's rule; counted in
  ``metadata["dropped_steps"]``).
* **Actions** are continuous ``float32`` ``[N, act_dim]``, or discrete ``int64`` ``[N]``
  indices when ``discrete`` says so (by default: one action column holding integers).

CSV files are read with Python's ``csv`` module (comma-separated, a header row, UTF-8);
Parquet files need ``pyarrow`` (``pip install 'offrl[tables]'``).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import fnmatch
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from offrl.data.dataset import Dataset, DatasetError
from offrl.data.loaders import PathLike, _damage_reported, _register_file_reader
from offrl.errors import ConfigError

__all__ = ["TableColumns", "load_table", "TABLE_SUFFIXES"]

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
"""File suffixes :func:`load_table` reads: ``.csv``, and ``.parquet`` / ``.pq``."""


@dataclass(frozen=True)
class TableColumns:
    """Which columns of a table hold what (the mapping :func:`load_table` reads a log with).

    ``obs``, ``actions`` and ``next_obs`` accept one string or a sequence of strings; each string
    is a column name or a glob pattern (``*``, ``?``, ``[...]``) whose matches are ordered
    naturally. The other fields name one column each.
    """

    obs: tuple[str, ...]
    """Observation columns, in order (names or glob patterns such as ``o_*``)."""
    actions: tuple[str, ...]
    """Action columns, in order (names or glob patterns such as ``a_*``)."""
    reward: str
    """The reward column."""
    episode: str
    """The episode-id column (numbers or text): an episode is a run of rows with one id."""
    terminal: str | None = None
    """A 0/1 (or true/false) column that is 1 on the last row of an episode that really ended
    (no bootstrap). Without it no episode is terminal."""
    timeout: str | None = None
    """A 0/1 (or true/false) column that is 1 on the last row of a truncated episode. Optional:
    an episode's last row that is not terminal is a timeout anyway; given, it is checked."""
    step: str | None = None
    """A step-counter column: within an episode it must count up by one, row after row."""
    next_obs: tuple[str, ...] | None = None
    """Next-observation columns, matched to ``obs`` one to one (names or glob patterns). Without
    them the successor of a row is the next row of its episode."""
    discrete: bool | None = None
    """Whether actions are discrete indices: ``True`` (one column of non-negative integers),
    ``False`` (continuous), or ``None``: discrete when there is one action column and it holds
    integers."""

    def __post_init__(self) -> None:
        for name in ("obs", "actions", "next_obs"):
            value = getattr(self, name)
            if value is None and name == "next_obs":
                continue
            if isinstance(value, str):
                value = (value,)
            if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
                raise ConfigError(
                    f"option {name}: expected a column name, a glob pattern or a list of them, "
                    f"got {value!r} (TableColumns.{name})"
                )
            if not value or any(not v for v in value):
                raise ConfigError(f"option {name}: no column given (TableColumns.{name})")
            object.__setattr__(self, name, tuple(value))
        for name in ("reward", "episode", "terminal", "timeout", "step"):
            value = getattr(self, name)
            optional = name not in ("reward", "episode")
            if (value is None and optional) or (isinstance(value, str) and value):
                continue
            raise ConfigError(
                f"option {name}: expected a column name, got {value!r} (TableColumns.{name})"
            )
        if self.discrete is not None and not isinstance(self.discrete, bool):
            raise ConfigError(
                f"option discrete: expected True, False or None, got {self.discrete!r} "
                "(TableColumns.discrete)"
            )


def load_table(
    path: PathLike,
    columns: TableColumns | None = None,
    *,
    obs: str | Sequence[str] | None = None,
    actions: str | Sequence[str] | None = None,
    reward: str | None = None,
    episode: str | None = None,
    terminal: str | None = None,
    timeout: str | None = None,
    step: str | None = None,
    next_obs: str | Sequence[str] | None = None,
    discrete: bool | None = None,
    env_id: str | None = None,
) -> Dataset:
    """Load a tabular log (``.csv`` or ``.parquet``: one row per step) as a dataset.

    Give the mapping either as ``columns`` or as the keyword arguments of the same names
    (:class:`TableColumns` documents each); the module's documentation lists the rules.

    Args:
        path: the ``.csv`` (comma-separated, with a header row) or ``.parquet`` / ``.pq`` file.
        columns: the whole mapping; then the mapping keywords must be left out.
        obs, actions, reward, episode: the required columns (see :class:`TableColumns`).
        terminal, timeout, step, next_obs, discrete: optional (see :class:`TableColumns`).
        env_id: Gymnasium id of the environment that produced the data, when there is one.

    Returns:
        The dataset. ``metadata`` holds ``source``, ``format`` (``"csv"`` / ``"parquet"``),
        ``columns`` (the columns read for each field, in the order used: ``observations``,
        ``actions``, ``rewards``, ``episode``, and ``terminals``, ``timeouts``, ``step``,
        ``next_observations`` when given), ``rows``, ``table_episodes``, ``dropped_steps``
        (without ``next_obs``: the truncated episodes' last rows), and ``ignored_columns`` (the
        file's other columns) when there are any.

    Raises:
        ConfigError: the mapping is incomplete, of the wrong type, or given twice.
        DatasetError: the file cannot be read, or the table breaks a rule (the message starts
            with the column, and names the row and the file).
    """
    keywords: dict[str, Any] = {
        "obs": obs,
        "actions": actions,
        "reward": reward,
        "episode": episode,
        "terminal": terminal,
        "timeout": timeout,
        "step": step,
        "next_obs": next_obs,
        "discrete": discrete,
    }
    given = {key: value for key, value in keywords.items() if value is not None}
    if columns is None:
        missing = [k for k in ("obs", "actions", "reward", "episode") if k not in given]
        if missing:
            raise ConfigError(
                f"option {missing[0]}: load_table needs the columns of "
                f"{', '.join(missing)} (or columns=TableColumns(...))"
            )
        columns = TableColumns(**given)  # __post_init__ turns a pattern into a 1-tuple
    elif given:
        raise ConfigError(
            f"option {next(iter(given))}: give the mapping either as columns=TableColumns(...) "
            "or as keywords, not both"
        )
    elif not isinstance(columns, TableColumns):
        raise ConfigError(f"option columns: expected a TableColumns, got {type(columns).__name__}")
    return _load(Path(path), columns, env_id)


@_damage_reported("table")
def _load(p: Path, columns: TableColumns, env_id: str | None) -> Dataset:
    if not p.is_file():
        raise DatasetError(f"path: file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        table = _read_csv(p, columns)
    elif suffix in (".parquet", ".pq"):
        table = _read_parquet(p, columns)
    else:
        raise DatasetError(
            f"path: {p} is not a table load_table reads (expected {', '.join(TABLE_SUFFIXES)})"
        )
    return _to_dataset(table, columns, env_id)


# ====================================================================== reading the files
@dataclass
class _Column:
    """One column, typed: ``kind`` is ``int``, ``float``, ``bool``, ``str``, ``other`` (a
    Parquet type that is none of these) or ``empty`` (no value at all)."""

    values: np.ndarray
    kind: str
    missing: np.ndarray | None = None
    """Rows with no value (an empty CSV cell, a Parquet null)."""
    type_name: str = ""
    """The file's name for an ``other`` type (``timestamp[ns]``...)."""


@dataclass
class _Table:
    path: Path
    format: str
    names: list[str]
    """Every column of the file, in file order."""
    resolved: dict[str, list[str]]
    """The file's columns mapped to each :class:`TableColumns` field, in the order used."""
    columns: dict[str, _Column]
    rows: int
    lines: np.ndarray | None = None
    """CSV: the file line of each row (1-based; the header is line 1)."""

    def where(self, row: int) -> str:
        if self.lines is not None:
            return f"row {row} (line {int(self.lines[row])})"
        return f"row {row}"


_CSV_CHUNK = 65_536
"""Rows converted at a time: the text of only one chunk is held in memory."""


def _read_csv(p: Path, mapping: TableColumns) -> _Table:
    with open(p, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise DatasetError(f"path: {p} is empty (no header row)")
        names = [h.strip() for h in header]
        resolved = _resolve(mapping, names, p)
        wanted = _unique_columns(resolved)
        index = [names.index(name) for name in wanted]
        width = len(names)
        getter = operator.itemgetter(*index)
        chunks: dict[str, list[_Column]] = {name: [] for name in wanted}
        lines: list[int] = []
        rows: list[Any] = []

        def convert() -> None:
            picked = [(value,) for value in rows] if len(index) == 1 else rows
            for name, values in zip(wanted, zip(*picked, strict=True), strict=True):
                chunks[name].append(_typed_text(values))
            rows.clear()

        for row in reader:
            if not row:  # a blank line
                continue
            if len(row) != width:
                raise DatasetError(
                    f"path: line {reader.line_num} of {p} has {len(row)} fields, the header "
                    f"has {width}"
                )
            rows.append(getter(row))
            lines.append(reader.line_num)
            if len(rows) == _CSV_CHUNK:
                convert()
        if rows:
            convert()
    if not lines:
        raise DatasetError(f"path: {p} has a header but no row")
    columns = {name: _merge(parts) for name, parts in chunks.items()}
    return _Table(p, "csv", names, resolved, columns, len(lines), np.asarray(lines))


def _merge(parts: list[_Column]) -> _Column:
    """One column from its chunks: integers and floats make floats, anything else mixed makes
    text (so that the first cell that is not a number is still found)."""
    if len(parts) == 1:
        return parts[0]
    kinds = {part.kind for part in parts if part.kind != "empty"}
    missing = None
    if any(part.missing is not None for part in parts):
        missing = np.concatenate(
            [np.zeros(len(p.values), bool) if p.missing is None else p.missing for p in parts]
        )
    if kinds <= {"int", "float"} and kinds:
        kind = "float" if "float" in kinds else "int"
        dtype = np.float64 if kind == "float" else np.int64
        return _Column(np.concatenate([p.values.astype(dtype) for p in parts]), kind, missing)
    if kinds == {"bool"}:
        return _Column(np.concatenate([p.values.astype(bool) for p in parts]), "bool", missing)
    text = np.concatenate([p.values.astype(str) for p in parts])
    return _Column(text, "str", missing)


def _typed_text(values: tuple[str, ...]) -> _Column:
    """CSV text as numbers when every cell parses: integers, else floats, else true/false,
    else text. ``map(int / float)`` into ``np.fromiter`` is the fast path (several times
    faster than numpy's own string conversion); empty cells take the slow one."""
    parsed = _parse_numbers(values)
    if parsed is not None:
        return parsed
    text = np.array([v.strip() for v in values], dtype=str)
    missing = text == ""
    has_missing = bool(missing.any())
    present = text[~missing]
    kept = _parse_numbers(tuple(present.tolist())) if has_missing and present.size else None
    if kept is not None:
        out = np.zeros(text.shape, dtype=kept.values.dtype)
        out[~missing] = kept.values
        return _Column(out, kept.kind, missing)
    if not present.size:
        return _Column(np.zeros(text.shape), "empty", missing)
    lower = np.char.lower(present)
    if np.isin(lower, ("true", "false")).all():
        out_bool = np.zeros(text.shape, dtype=bool)
        out_bool[~missing] = lower == "true"
        return _Column(out_bool, "bool", missing if has_missing else None)
    return _Column(text, "str", missing if has_missing else None)


def _parse_numbers(values: tuple[str, ...]) -> _Column | None:
    n = len(values)
    try:
        return _Column(np.fromiter(map(int, values), np.int64, count=n), "int")
    except (ValueError, OverflowError):
        pass
    try:
        return _Column(np.fromiter(map(float, values), np.float64, count=n), "float")
    except ValueError:
        return None


def _read_parquet(p: Path, mapping: TableColumns) -> _Table:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DatasetError(
            f"path: reading the Parquet file {p} needs pyarrow: pip install 'offrl[tables]' "
            "(or pip install pyarrow)"
        ) from exc
    pf = pq.ParquetFile(p)
    names = [str(name) for name in pf.schema_arrow.names]
    resolved = _resolve(mapping, names, p)
    wanted = _unique_columns(resolved)
    table = pf.read(columns=wanted)
    if table.num_rows == 0:
        raise DatasetError(f"path: {p} has no row")
    columns = {name: _typed_arrow(table.column(name)) for name in wanted}
    return _Table(p, "parquet", names, resolved, columns, int(table.num_rows))


def _typed_arrow(chunked: Any) -> _Column:
    import pyarrow as pa
    import pyarrow.types as pat

    arr = chunked.combine_chunks() if isinstance(chunked, pa.ChunkedArray) else chunked
    if pat.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    t = arr.type
    missing = None
    if arr.null_count:
        missing = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if pat.is_integer(t):
        return _Column(arr.fill_null(0).to_numpy().astype(np.int64), "int", missing)
    if pat.is_floating(t):
        values = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64)
        return _Column(values, "float", missing)
    if pat.is_boolean(t):
        values = np.asarray(arr.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
        return _Column(values, "bool", missing)
    if pat.is_string(t) or pat.is_large_string(t):
        values = np.asarray(arr.fill_null("").to_numpy(zero_copy_only=False), dtype=str)
        return _Column(values, "str", missing)
    return _Column(np.empty(len(arr), dtype=object), "other", missing, str(t))


# ====================================================================== column mapping
_FIELD_NAMES = {
    "obs": "observations",
    "actions": "actions",
    "reward": "rewards",
    "episode": "episode",
    "terminal": "terminals",
    "timeout": "timeouts",
    "step": "step",
    "next_obs": "next_observations",
}
""":class:`TableColumns` field -> its name in ``metadata["columns"]``."""


def _natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """``o_2`` before ``o_10``: digit runs compare as numbers (ties broken by the name)."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(x) if i % 2 else x for i, x in enumerate(parts)), name


def _resolve(mapping: TableColumns, names: list[str], p: Path) -> dict[str, list[str]]:
    """Each mapped field's columns, in order; checks that every column exists and is used once."""
    available = set(names)
    resolved: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for f in dataclasses.fields(TableColumns):
        if f.name == "discrete":
            continue
        value = getattr(mapping, f.name)
        if value is None:
            continue
        patterns = (value,) if isinstance(value, str) else value
        glob = f.name in ("obs", "actions", "next_obs")
        found: list[str] = []
        for pattern in patterns:
            if pattern in available:
                matched = [pattern]
            elif glob and any(ch in pattern for ch in "*?["):
                matched = sorted(
                    (n for n in names if fnmatch.fnmatchcase(n, pattern)), key=_natural_key
                )
            else:
                matched = []
            if not matched:
                close = difflib.get_close_matches(pattern, names, n=3)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise DatasetError(
                    f"{pattern}: no such column in {p} (wanted for {f.name}){hint} "
                    f"(the file's columns: {_shorten(names)})"
                )
            for name in matched:
                if name in owner:
                    raise DatasetError(
                        f"{name}: column mapped twice, to {owner[name]} and to {f.name} ({p})"
                    )
                owner[name] = f.name
                found.append(name)
        resolved[f.name] = found
    duplicated = sorted({n for n in owner if names.count(n) > 1})
    if duplicated:
        raise DatasetError(f"{duplicated[0]}: the header of {p} holds this column twice")
    if "next_obs" in resolved and len(resolved["next_obs"]) != len(resolved["obs"]):
        raise DatasetError(
            f"{resolved['next_obs'][0]}: next_obs maps {len(resolved['next_obs'])} columns, obs "
            f"{len(resolved['obs'])}; they must match one to one ({p})"
        )
    return resolved


def _unique_columns(resolved: dict[str, list[str]]) -> list[str]:
    return [name for names in resolved.values() for name in names]


def _shorten(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


# ====================================================================== checks
def _numbers(table: _Table, name: str, role: str) -> np.ndarray:
    """A numeric column as float64; text, empty cells, NaN and inf are errors."""
    col = _present(table, name, role)
    if col.kind in ("str", "other"):
        if col.kind == "other":
            detail = f"its type is {col.type_name}"
        else:
            row = _first_text_row(col.values)
            detail = f"{table.where(row)} holds {str(col.values[row])!r}"
        raise DatasetError(
            f"{name}: not a numeric column ({detail}) in {table.path}; {role} must be numbers"
        )
    values = col.values.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DatasetError(
            f"{name}: {values[row]} (NaN or inf) at {table.where(row)} of {table.path} ({role})"
        )
    return values


def _present(table: _Table, name: str, role: str) -> _Column:
    col = table.columns[name]
    if col.missing is not None and col.missing.any():
        row = int(np.flatnonzero(col.missing)[0])
        raise DatasetError(f"{name}: no value at {table.where(row)} of {table.path} ({role})")
    return col


def _first_text_row(values: np.ndarray) -> int:
    for i, value in enumerate(values.tolist()):
        try:
            float(value)
        except (TypeError, ValueError):
            return i
    return 0


def _whole(table: _Table, name: str, role: str, *, non_negative: bool = False) -> np.ndarray:
    values = _numbers(table, name, role)
    bad = np.round(values) != values
    if non_negative:
        bad |= values < 0
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        need = "non-negative whole numbers" if non_negative else "whole numbers"
        raise DatasetError(
            f"{name}: {role} must be {need}, {table.where(row)} holds {values[row]:g} "
            f"({table.path})"
        )
    return values.astype(np.int64)


def _flags(table: _Table, name: str) -> np.ndarray:
    role = "an end flag"
    col = _present(table, name, role)
    if col.kind == "bool":
        return col.values.astype(bool)
    values = _numbers(table, name, role)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DatasetError(
            f"{name}: flags must be 0/1 or true/false, {table.where(row)} holds {values[row]:g} "
            f"({table.path})"
        )
    return values.astype(bool)


def _episodes(table: _Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (inclusive) of the runs of equal id; ids must not come back, and
    numeric ids must increase."""
    col = _present(table, name, "episode ids")
    if col.kind == "other":
        raise DatasetError(
            f"{name}: episode ids must be numbers or text, its type is {col.type_name} "
            f"({table.path})"
        )
    ids = col.values
    if col.kind == "float":
        ids = _numbers(table, name, "episode ids")
    n = table.rows
    starts = np.concatenate([[0], np.flatnonzero(ids[1:] != ids[:-1]) + 1]).astype(np.int64)
    ends = np.concatenate([starts[1:] - 1, [n - 1]]).astype(np.int64)
    run_ids = ids[starts].tolist()
    first_run: dict[Any, int] = {}
    for k, value in enumerate(run_ids):
        if value in first_run:
            j = first_run[value]
            raise DatasetError(
                f"{name}: episode {value!r} comes back at {table.where(int(starts[k]))} after "
                f"other episodes (it first ran rows {starts[j]}-{ends[j]}); the rows of an "
                f"episode must be contiguous ({table.path})"
            )
        first_run[value] = k
        if k and col.kind != "str" and value < run_ids[k - 1]:
            raise DatasetError(
                f"{name}: episode ids are not sorted: {value!r} at "
                f"{table.where(int(starts[k]))} follows {run_ids[k - 1]!r}; sort the table by "
                f"episode, then step (load_table never reorders rows) ({table.path})"
            )
    return starts, ends


def _check_steps(table: _Table, name: str, starts: np.ndarray, ends: np.ndarray) -> None:
    steps = _whole(table, name, "steps")
    if steps.size < 2:
        return
    jump = np.diff(steps)
    inside = np.ones(steps.size - 1, dtype=bool)
    inside[starts[1:] - 1] = False  # from an episode's last row to the next one's first
    bad = inside & (jump != 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        before, now = int(steps[row - 1]), int(steps[row])
        episode = int(np.searchsorted(starts, row, side="right")) - 1
        ordered = np.sort(steps[starts[episode] : ends[episode] + 1])
        if now == before or (ordered[1:] == ordered[:-1]).any():
            what = "a step logged twice"
        elif now < before or (np.diff(ordered) == 1).all():
            what = "out of order"
        else:
            what = f"a gap: {now - before - 1} missing step(s)"
        raise DatasetError(
            f"{name}: step {now} at {table.where(row)} follows step {before} in its episode "
            f"({what}); steps must count up by one (load_table never reorders or fills in "
            f"rows) ({table.path})"
        )


def _check_end_flag(
    table: _Table, name: str, flags: np.ndarray, is_end: np.ndarray, ends: np.ndarray
) -> None:
    bad = flags & ~is_end
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        last = int(ends[np.searchsorted(ends, row)])
        raise DatasetError(
            f"{name}: {table.where(row)} is flagged but is not the last row of its episode "
            f"(row {last} is); only an episode's last row can end it ({table.path})"
        )


# ====================================================================== assembling
def _to_dataset(table: _Table, mapping: TableColumns, env_id: str | None) -> Dataset:
    resolved = table.resolved
    n = table.rows
    starts, ends = _episodes(table, mapping.episode)
    if mapping.step is not None:
        _check_steps(table, mapping.step, starts, ends)
    is_end = np.zeros(n, dtype=bool)
    is_end[ends] = True
    terminal = np.zeros(n, dtype=bool)
    if mapping.terminal is not None:
        terminal = _flags(table, mapping.terminal)
        _check_end_flag(table, mapping.terminal, terminal, is_end, ends)
    if mapping.timeout is not None:
        timeout = _flags(table, mapping.timeout)
        _check_end_flag(table, mapping.timeout, timeout, is_end, ends)
        both = terminal & timeout
        if both.any():
            row = int(np.flatnonzero(both)[0])
            raise DatasetError(
                f"{mapping.timeout}: {table.where(row)} ends its episode as both a terminal "
                f"({mapping.terminal}) and a timeout; an episode ends one way ({table.path})"
            )
    # Every episode's last row is a terminal or (otherwise) a timeout.
    terminals = terminal & is_end
    timeouts = is_end & ~terminal

    def matrix(field: str, role: str) -> np.ndarray:
        cols = [_numbers(table, name, role) for name in resolved[field]]
        return np.stack(cols, axis=1).astype(np.float32)

    observations = matrix("obs", "observations")
    next_observations = matrix("next_obs", "observations") if "next_obs" in resolved else None
    action_names = resolved["actions"]
    discrete = mapping.discrete
    if discrete is None:
        discrete = len(action_names) == 1 and table.columns[action_names[0]].kind == "int"
    if discrete:
        if len(action_names) != 1:
            raise DatasetError(
                f"{action_names[0]}: discrete actions need exactly one column, actions maps "
                f"{action_names} ({table.path})"
            )
        actions = _whole(table, action_names[0], "discrete actions", non_negative=True)
    else:
        actions = matrix("actions", "actions")
    rewards = _numbers(table, resolved["reward"][0], "rewards").astype(np.float32)
    used = set(_unique_columns(resolved))
    meta: dict[str, Any] = {
        "source": str(table.path),
        "format": table.format,
        "columns": {
            _FIELD_NAMES[field]: (names if field in ("obs", "actions", "next_obs") else names[0])
            for field, names in resolved.items()
        },
        "rows": n,
        "table_episodes": int(starts.size),
    }
    ignored = sorted((name for name in table.names if name not in used), key=_natural_key)
    if ignored:
        meta["ignored_columns"] = ignored
    try:
        return Dataset.from_arrays(
            observations,
            actions,
            rewards,
            next_observations,
            terminals,
            timeouts,
            env_id=env_id,
            metadata=meta,
        )
    except DatasetError as exc:
        raise DatasetError(f"{exc} (in {table.path})") from exc


# ====================================================================== load_dataset
def _refuse_unmapped_table(path: Path, env_id: str | None) -> Dataset | None:
    """``load_dataset`` on a table: its columns need a mapping, which only the caller knows."""
    if path.suffix.lower() not in TABLE_SUFFIXES:
        return None
    raise DatasetError(
        f"path: {path} is a table; say which columns hold what with "
        "offrl.data.load_table(path, obs=..., actions=..., reward=..., episode=...) or "
        f"`offrl dataset convert {path} OUT.npz --obs ... --act ... --reward ... --episode ...`"
    )


_register_file_reader(_refuse_unmapped_table)
