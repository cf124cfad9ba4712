"""Tabular logs (CSV / Parquet, one row per step) read by ``offrl.data.load_table`` and
``offrl dataset convert``: round trips, hand-checked arrays, the column mapping, and every
malformed table."""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from offrl.cli import main
from offrl.data import Dataset, DatasetError, TableColumns, load_dataset, load_table, save_npz
from offrl.errors import ConfigError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

OBS_DIM = 11  # o_0 ... o_10: natural order differs from the text order
LENGTHS = [3, 4, 2]
TERMINATED = [True, False, False]


def known_dataset(discrete: bool = False) -> Dataset:
    """Three episodes (terminal, timeout, timeout), every value distinct."""
    n = sum(LENGTHS)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    nxt = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    actions: np.ndarray = (
        rng.integers(0, 3, size=n) if discrete else rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    )
    ends = np.cumsum(LENGTHS) - 1
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    for end, term in zip(ends, TERMINATED, strict=True):
        (terminals if term else timeouts)[end] = True
    rewards = rng.normal(size=n).astype(np.float32)
    return Dataset(obs, actions, rewards, nxt, terminals, timeouts, env_id="Toy-v0")


def table_of(ds: Dataset, *, next_obs: bool = True) -> dict[str, list[Any]]:
    """``ds`` as named columns, observation columns in a shuffled text order."""
    cols: dict[str, list[Any]] = {}
    ids = ds.episode_ids()
    cols["episode"] = (ids * 10 + 7).tolist()  # sorted, not 0..E-1
    cols["t"] = (np.arange(len(ds)) - ds.episode_starts[ids]).tolist()
    order = [10, 3, 0, 7, 1, 2, 9, 4, 8, 6, 5]
    for j in order:
        cols[f"o_{j}"] = ds.observations[:, j].tolist()
    if ds.discrete:
        cols["a"] = ds.actions.tolist()
    else:
        for j in range(ds.actions.shape[1]):
            cols[f"a_{j}"] = ds.actions[:, j].tolist()
    cols["r"] = ds.rewards.tolist()
    cols["done"] = ds.terminals.astype(int).tolist()
    cols["cut"] = ds.timeouts.tolist()  # true/false text in a CSV
    if next_obs:
        for j in order:
            cols[f"next_o_{j}"] = ds.next_observations[:, j].tolist()
    cols["notes"] = [f"step {i}" for i in range(len(ds))]
    return cols


def write_csv(path: Path, cols: dict[str, list[Any]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        for row in zip(*cols.values(), strict=True):
            writer.writerow([repr(v) if isinstance(v, float) else v for v in row])
    return path


def write_parquet(path: Path, cols: dict[str, list[Any]]) -> Path:
    pq.write_table(pa.table(cols), path)
    return path


WRITERS = {"csv": write_csv, "parquet": write_parquet}
MAPPING: dict[str, Any] = {
    "obs": "o_*",
    "actions": "a*",
    "reward": "r",
    "episode": "episode",
    "terminal": "done",
    "timeout": "cut",
    "step": "t",
}


def assert_same(a: Dataset, b: Dataset) -> None:
    for name, arr in a.arrays().items():
        other = b.arrays()[name]
        assert arr.dtype == other.dtype, name
        np.testing.assert_array_equal(arr, other, err_msg=name)


# ====================================================================== round trips
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("discrete", [False, True])
def test_round_trip_with_next_obs_columns(tmp_path: Path, fmt: str, discrete: bool) -> None:
    ds = known_dataset(discrete)
    path = WRITERS[fmt](tmp_path / f"log.{fmt}", table_of(ds))
    back = load_table(path, **MAPPING, next_obs="next_o_*", env_id="Toy-v0")
    assert_same(ds, back)
    assert back.env_id == "Toy-v0"
    cols = back.metadata["columns"]
    assert cols["observations"] == [f"o_{j}" for j in range(OBS_DIM)]  # natural order
    assert cols["next_observations"] == [f"next_o_{j}" for j in range(OBS_DIM)]
    assert cols["actions"] == (["a"] if discrete else ["a_0", "a_1"])
    assert cols["rewards"] == "r" and cols["terminals"] == "done" and cols["step"] == "t"
    assert back.metadata["format"] == fmt
    assert back.metadata["rows"] == 9 and back.metadata["table_episodes"] == 3
    assert back.metadata["ignored_columns"] == ["notes"]
    assert "dropped_steps" not in back.metadata  # every row is a transition as it stands


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_round_trip_successors_from_the_next_row(tmp_path: Path, fmt: str) -> None:
    ds = known_dataset()
    path = WRITERS[fmt](tmp_path / f"log.{fmt}", table_of(ds, next_obs=False))
    back = load_table(path, **MAPPING)
    expected = Dataset.from_arrays(
        ds.observations, ds.actions, ds.rewards, None, ds.terminals, ds.timeouts
    )
    assert_same(expected, back)
    # Each timed-out episode loses its last row (no logged successor): 3, 4 - 1, 2 - 1.
    assert (back.episode_ends - back.episode_starts + 1).tolist() == [3, 3, 1]
    assert back.metadata["dropped_steps"] == 2


def test_hand_checked_csv(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "episode,step,o_1,o_2,o_10,a_0,r,done\n"
        "0,0,1,2,3,0.5,1,0\n"
        "0,1,2,3,4,0.5,1,0\n"
        "0,2,3,4,5,0.5,1,1\n"
        "1,0,5,6,7,0.1,2,0\n"
        "1,1,6,7,8,0.1,2,0\n"
        "\n"
    )
    ds = load_table(path, obs="o_*", actions="a_0", reward="r", episode="episode", terminal="done")
    np.testing.assert_array_equal(ds.observations, [[1, 2, 3], [2, 3, 4], [3, 4, 5], [5, 6, 7]])
    np.testing.assert_array_equal(
        ds.next_observations[[0, 1, 3]], [[2, 3, 4], [3, 4, 5], [6, 7, 8]]
    )
    np.testing.assert_array_equal(ds.actions, np.float32([[0.5], [0.5], [0.5], [0.1]]))
    np.testing.assert_array_equal(ds.rewards, [1, 1, 1, 2])
    assert ds.terminals.tolist() == [False, False, True, False]
    assert ds.timeouts.tolist() == [False, False, False, True]  # episode 1: the default end
    assert ds.metadata["ignored_columns"] == ["step"]
    # The same table as one TableColumns.
    columns = TableColumns(obs="o_*", actions=("a_0",), reward="r", episode="episode")
    same = load_table(path, columns)
    # No terminal column: both episodes are truncated and lose their last row.
    assert same.terminals.sum() == 0 and same.timeouts.tolist() == [False, True, True]
    np.testing.assert_array_equal(same.observations[:, 0], [1, 2, 5])


def test_column_order(tmp_path: Path) -> None:
    cols = {"episode": [0, 0], "a": [0.0, 1.0], "r": [0.0, 0.0]}
    for name in ("x10", "x2", "x1", "y", "x_b", "x_a"):
        cols[name] = [float(len(name))] * 2
    path = write_csv(tmp_path / "log.csv", cols)

    def order(obs: Any) -> list[str]:
        ds = load_table(path, obs=obs, actions="a", reward="r", episode="episode")
        return list(ds.metadata["columns"]["observations"])

    assert order("x*") == ["x1", "x2", "x10", "x_a", "x_b"]
    assert order(["y", "x1?", "x?"]) == ["y", "x10", "x1", "x2"]  # a list keeps its order
    assert order(["x_b", "x_a"]) == ["x_b", "x_a"]


def test_discrete_actions(tmp_path: Path) -> None:
    base = {"episode": [0, 0, 0], "o": [0.0, 1.0, 2.0], "r": [0.0, 0.0, 0.0]}
    ints = write_csv(tmp_path / "ints.csv", {**base, "a": [2, 0, 1]})
    ds = load_table(ints, obs="o", actions="a", reward="r", episode="episode")
    assert ds.discrete and ds.actions.tolist() == [2, 0]  # the last row is a dropped timeout
    cont = load_table(ints, obs="o", actions="a", reward="r", episode="episode", discrete=False)
    assert not cont.discrete and cont.actions.tolist() == [[2.0], [0.0]]
    whole = write_csv(tmp_path / "whole.csv", {**base, "a": [2.0, 0.0, 1.0]})
    assert not load_table(whole, obs="o", actions="a", reward="r", episode="episode").discrete
    forced = load_table(whole, obs="o", actions="a", reward="r", episode="episode", discrete=True)
    assert forced.discrete and forced.actions.tolist() == [2, 0]


def test_text_episode_ids_need_not_be_sorted(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "log.parquet",
        {"ep": ["b", "b", "a", "a"], "o": [0.0, 1.0, 2.0, 3.0], "act": [0.1] * 4, "r": [1.0] * 4},
    )
    ds = load_table(path, obs="o", actions="act", reward="r", episode="ep")
    assert ds.observations[:, 0].tolist() == [0.0, 2.0]
    assert ds.metadata["table_episodes"] == 2


# ====================================================================== malformed tables
def base_table() -> dict[str, list[Any]]:
    return {
        "episode": [0, 0, 0, 1, 1, 1],
        "t": [0, 1, 2, 0, 1, 2],
        "o_1": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        "o_2": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "a_0": [0.5] * 6,
        "r": [1.0] * 6,
        "done": [0, 0, 1, 0, 0, 0],
        "cut": [0, 0, 0, 0, 0, 1],
    }


def with_column(name: str, values: list[Any]) -> dict[str, list[Any]]:
    cols = base_table()
    cols[name] = values
    return cols


NAN, INF = float("nan"), float("inf")
# (table, mapping overrides, message; "{where}" is "row R (line L)" in a CSV, "row R" in Parquet)
MALFORMED: list[tuple[str, dict[str, list[Any]], dict[str, Any], str]] = [
    ("missing column", base_table(), {"reward": "rew"}, r"^rew: no such column in .* \(wanted for"),
    ("misspelt column", base_table(), {"episode": "episodes"}, r"^episodes: .*mean 'episode'\?"),
    (
        "no glob match",
        base_table(),
        {"obs": "x_*"},
        r"^x_\*: no such column in .* \(wanted for obs",
    ),
    (
        "NaN",
        with_column("o_2", [1.0, 2.0, 3.0, NAN, 5.0, 6.0]),
        {},
        r"^o_2: nan \(NaN or inf\) at {3}",
    ),
    ("inf", with_column("r", [1.0, INF, 1.0, 1.0, 1.0, 1.0]), {}, r"^r: inf \(NaN or inf\) at {1}"),
    (
        "empty cell",
        with_column("o_1", [0.0, 1.0, None, 3.0, 4.0, 5.0]),
        {},
        r"^o_1: no value at {2}",
    ),
    (
        "non-numeric",
        with_column("o_1", ["0", "1", "2", "abc", "4", "5"]),
        {},
        r"^o_1: not a numeric column \({3} holds 'abc'\)",
    ),
    (
        "unsorted episode ids",
        with_column("episode", [0, 0, 0, 2, 2, 1]),
        {"step": None},
        r"^episode: episode ids are not sorted: 1 at {5} follows 2; sort the table",
    ),
    (
        "interleaved episode ids",
        with_column("episode", [0, 0, 1, 1, 0, 0]),
        {"step": None, "terminal": None, "timeout": None},
        r"^episode: episode 0 comes back at {4} after other episodes \(it first ran rows 0-1\)",
    ),
    (
        "steps out of order",
        with_column("t", [0, 2, 1, 0, 1, 2]),
        {},
        r"^t: step 2 at {1} follows step 0 in its episode \(out of order\)",
    ),
    (
        "a step twice",
        with_column("t", [0, 1, 2, 0, 1, 1]),
        {},
        r"^t: step 1 at {5} follows step 1 in its episode \(a step logged twice\)",
    ),
    (
        "a missing step",
        with_column("t", [0, 1, 2, 5, 6, 8]),
        {},
        r"^t: step 8 at {5} follows step 6 in its episode \(a gap: 1 missing step\(s\)\)",
    ),
    (
        "terminal inside an episode",
        with_column("done", [0, 1, 0, 0, 0, 0]),
        {},
        r"^done: {1} is flagged but is not the last row of its episode \(row 2 is\)",
    ),
    (
        "timeout inside an episode",
        with_column("cut", [0, 0, 0, 1, 0, 0]),
        {},
        r"^cut: {3} is flagged but is not the last row of its episode \(row 5 is\)",
    ),
    (
        "terminal and timeout",
        with_column("cut", [0, 0, 1, 0, 0, 1]),
        {},
        r"^cut: {2} ends its episode as both a terminal \(done\) and a timeout",
    ),
    (
        "bad flag",
        with_column("done", [0, 0, 2, 0, 0, 0]),
        {},
        r"^done: flags must be 0/1 .* {2} holds 2",
    ),
    (
        "discrete non-integers",
        with_column("a_0", [1.0, 2.0, 0.5, 1.0, 1.0, 1.0]),
        {"discrete": True},
        r"^a_0: discrete actions must be non-negative whole numbers, {2} holds 0.5",
    ),
    (
        "negative discrete",
        with_column("a_0", [1, 2, -1, 1, 1, 1]),
        {},
        r"^a_0: discrete actions must be non-negative whole numbers, {2} holds -1",
    ),
    (
        "non-integer steps",
        with_column("t", [0.0, 1.0, 2.5, 0.0, 1.0, 2.0]),
        {},
        r"^t: steps must be whole numbers, {2} holds 2.5",
    ),
    (
        "column used twice",
        base_table(),
        {"actions": "o_1"},
        r"^o_1: column mapped twice, to obs and to actions",
    ),
    (
        "next_obs count",
        with_column("n_1", [0.0] * 6),
        {"next_obs": "n_*"},
        r"^n_1: next_obs maps 1 columns, obs 2; they must match one to one",
    ),
    (
        "two actions, discrete",
        with_column("a_1", [0] * 6),
        {"discrete": True},
        r"^a_0: discrete actions need exactly one column, actions maps \['a_0', 'a_1'\]",
    ),
    (
        "text episode id missing",
        with_column("episode", ["x", "x", "x", None, "y", "y"]),
        {"step": None},
        r"^episode: no value at {3}",
    ),
]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize(
    ("cols", "overrides", "message"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_tables_name_the_column(
    tmp_path: Path, fmt: str, cols: dict[str, list[Any]], overrides: dict[str, Any], message: str
) -> None:
    if fmt == "csv":
        cols = {k: ["" if v is None else v for v in vals] for k, vals in cols.items()}
    path = WRITERS[fmt](tmp_path / f"log.{fmt}", cols)
    mapping = {**MAPPING, "actions": "a_*", **overrides}
    mapping = {k: v for k, v in mapping.items() if v is not None}

    def where(match: re.Match[str]) -> str:
        row = int(match.group(1))
        return f"row {row} \\(line {row + 2}\\)" if fmt == "csv" else f"row {row}"

    pattern = re.sub(r"\{(\d+)\}", where, message)
    with pytest.raises(DatasetError, match=pattern) as info:
        load_table(path, **mapping)
    assert str(path) in str(info.value)


def test_csv_read_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CSV is converted a chunk of rows at a time; chunks typed differently still make one
    column (integers and floats: floats), and errors still name the right row."""
    from offrl.data import tabular

    monkeypatch.setattr(tabular, "_CSV_CHUNK", 2)
    cols = with_column("o_1", [0, 1, 2.5, 3.5, 4, 5])  # int, float, int chunks
    path = write_csv(tmp_path / "log.csv", cols)
    mapping = {**MAPPING, "actions": "a_0"}
    ds = load_table(path, **mapping)
    np.testing.assert_array_equal(ds.observations[:, 0], [0, 1, 2.5, 3.5, 4])
    monkeypatch.setattr(tabular, "_CSV_CHUNK", 65_536)
    assert_same(load_table(path, **mapping), ds)  # the same as in one chunk
    monkeypatch.setattr(tabular, "_CSV_CHUNK", 2)
    text = write_csv(tmp_path / "text.csv", with_column("o_2", [1, 2, 3, 4, "x", 6]))
    with pytest.raises(DatasetError, match=r"^o_2: not a numeric column \(row 4 \(line 6\) "):
        load_table(text, **mapping)
    gap = write_csv(tmp_path / "gap.csv", with_column("o_2", [1, 2, 3, "", 5, 6]))
    with pytest.raises(DatasetError, match=r"^o_2: no value at row 3 \(line 5\)"):
        load_table(gap, **mapping)
    empty = write_csv(tmp_path / "empty.csv", with_column("o_2", [""] * 6))
    with pytest.raises(DatasetError, match=r"^o_2: no value at row 0 \(line 2\)"):
        load_table(empty, **mapping)
    flags = write_csv(tmp_path / "flags.csv", with_column("cut", [False] * 5 + [True]))
    assert load_table(flags, **mapping).timeouts[-1]


def test_malformed_files(tmp_path: Path) -> None:
    mapping = {k: v for k, v in MAPPING.items() if k in ("obs", "actions", "reward", "episode")}
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("episode,o_1,a,r\n0,1,2,3\n0,1,2\n")
    with pytest.raises(DatasetError, match=r"^path: line 3 of .*ragged.csv has 3 fields, the "):
        load_table(ragged, **mapping)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DatasetError, match=r"^path: .*empty.csv is empty \(no header row\)"):
        load_table(empty, **mapping)
    header = tmp_path / "header.csv"
    header.write_text("episode,o_1,a,r\n")
    with pytest.raises(DatasetError, match=r"^path: .*header.csv has a header but no row"):
        load_table(header, **mapping)
    twice = tmp_path / "twice.csv"
    twice.write_text("episode,o_1,a,r,r\n0,1,2,3,4\n0,1,2,3,4\n")
    with pytest.raises(DatasetError, match=r"^r: the header of .*twice.csv holds this column"):
        load_table(twice, **mapping)
    single = tmp_path / "single.csv"
    single.write_text("episode,o_1,a,r\n0,1,2,3\n1,1,2,3\n")
    with pytest.raises(DatasetError, match=r"^observations: every step is the last of its"):
        load_table(single, **mapping)  # two 1-row truncated episodes: no transition at all
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetError, match=r"^path: .*damaged.parquet is not a readable table"):
        load_table(damaged, **mapping)
    with pytest.raises(DatasetError, match=r"^path: file not found"):
        load_table(tmp_path / "absent.csv", **mapping)
    other = tmp_path / "log.txt"
    other.write_text("x")
    with pytest.raises(DatasetError, match=r"^path: .*log.txt is not a table load_table reads"):
        load_table(other, **mapping)


def test_parquet_column_of_another_type(tmp_path: Path) -> None:
    cols: dict[str, Any] = base_table()
    cols["o_2"] = pa.array(np.arange(6).astype("datetime64[s]"))
    path = write_parquet(tmp_path / "log.parquet", cols)
    with pytest.raises(DatasetError, match=r"^o_2: not a numeric column \(its type is timestamp"):
        load_table(path, obs="o_*", actions="a_0", reward="r", episode="episode")


def test_parquet_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_parquet(tmp_path / "log.parquet", base_table())
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import now raises ImportError
    with pytest.raises(DatasetError, match=r"needs pyarrow: pip install 'offrl\[tables\]'"):
        load_table(path, obs="o_*", actions="a_0", reward="r", episode="episode")


def test_mapping_errors(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "log.csv", base_table())
    with pytest.raises(ConfigError, match=r"^option reward: load_table needs the columns of "):
        load_table(path, obs="o_*", actions="a_0", episode="episode")
    columns = TableColumns(obs="o_*", actions="a_0", reward="r", episode="episode")
    with pytest.raises(ConfigError, match=r"^option step: give the mapping either as columns"):
        load_table(path, columns, step="t")
    with pytest.raises(ConfigError, match=r"^option obs: expected a column name"):
        TableColumns(obs=3, actions="a_0", reward="r", episode="episode")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^option actions: no column given"):
        TableColumns(obs="o_*", actions=(), reward="r", episode="episode")
    with pytest.raises(ConfigError, match=r"^option episode: expected a column name"):
        TableColumns(obs="o_*", actions="a", reward="r", episode="")
    assert columns.obs == ("o_*",) and columns.actions == ("a_0",)


def test_load_dataset_on_a_table_says_what_to_do(tmp_path: Path) -> None:
    for fmt in ("csv", "parquet"):
        path = WRITERS[fmt](tmp_path / f"log.{fmt}", base_table())
        with pytest.raises(
            DatasetError,
            match=r"^path: .* is a table; say which columns .*"
            r"load_table\(path, obs=.*offrl dataset convert",
        ):
            load_dataset(path)


# ====================================================================== the command line
def test_cli_convert_table(tmp_path: Path) -> None:
    ds = known_dataset()
    src = write_parquet(tmp_path / "log.parquet", table_of(ds))
    args = ["--obs", "o_*", "--act", "a_*", "--reward", "r", "--episode", "episode"]
    args += ["--terminal", "done", "--timeout", "cut", "--step", "t", "--env-id", "Toy-v0"]
    for dst in ("out.npz", "out.hdf5"):
        out = tmp_path / dst
        assert (
            main(["dataset", "convert", str(src), str(out), *args, "--next-obs", "next_o_*"]) == 0
        )
        back = load_dataset(out)
        assert back.env_id == "Toy-v0"
        assert_same(ds, back)
    npz = load_dataset(tmp_path / "out.npz")
    assert npz.metadata["columns"]["observations"][:3] == ["o_0", "o_1", "o_2"]
    # Minari stores T + 1 observations: successors from the next row make such a chain.
    src = write_csv(tmp_path / "log.csv", table_of(ds, next_obs=False))
    assert main(["dataset", "convert", str(src), str(tmp_path / "mini"), *args]) == 0
    expected = Dataset.from_arrays(
        ds.observations, ds.actions, ds.rewards, None, ds.terminals, ds.timeouts
    )
    mini = load_dataset(tmp_path / "mini")
    for name in ("observations", "actions", "rewards", "terminals", "timeouts"):
        np.testing.assert_array_equal(mini.arrays()[name], expected.arrays()[name], err_msg=name)


def test_cli_convert_lists_and_action_space(tmp_path: Path) -> None:
    cols = {"ep": [0, 0, 0], "x": [0.0, 1.0, 2.0], "y": [5.0, 6.0, 7.0], "a": [1.0, 0.0, 1.0]}
    src = write_csv(tmp_path / "log.csv", {**cols, "r": [1.0, 2.0, 3.0]})
    out = tmp_path / "out.npz"
    args = ["dataset", "convert", str(src), str(out), "--obs", "y,x", "--act", "a"]
    assert main([*args, "--reward", "r", "--episode", "ep", "--action-space", "discrete"]) == 0
    ds = load_dataset(out)
    assert ds.discrete and ds.actions.tolist() == [1, 0]
    np.testing.assert_array_equal(ds.observations, [[5.0, 0.0], [6.0, 1.0]])


def test_cli_convert_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_csv(tmp_path / "log.csv", base_table())
    out = str(tmp_path / "out.npz")
    assert main(["dataset", "convert", str(src), out, "--obs", "o_*", "--act", "a_0"]) == 2
    err = capsys.readouterr().err
    assert "offrl: error: dataset convert: a table needs --reward, --episode" in err
    npz = save_npz(known_dataset(), tmp_path / "data.npz")
    assert main(["dataset", "convert", str(npz), out, "--obs", "o_*"]) == 2
    assert "--obs maps the columns of a table; " in capsys.readouterr().err
    assert main(["dataset", "convert", str(npz), out, "--action-space", "discrete"]) == 2
    assert "--action-space discrete applies to tables and d3rlpy" in capsys.readouterr().err
    mapping = ["--obs", "o_*", "--act", "a_0", "--reward", "r", "--episode", "episode"]
    assert main(["dataset", "convert", str(src), out, *mapping, "--step", "o_1"]) == 2
    assert "offrl: error: o_1: column mapped twice" in capsys.readouterr().err
    bad = write_csv(tmp_path / "bad.csv", with_column("done", [0, 1, 0, 0, 0, 0]))
    assert main(["dataset", "convert", str(bad), out, *mapping, "--terminal", "done"]) == 2
    err = capsys.readouterr().err
    assert "offrl: error: done: row 1 (line 3) is flagged but is not the last row" in err
    assert not Path(out).exists()
