"""The Dataset container: episode structure, D4RL's rule in from_arrays, validation errors."""

from __future__ import annotations

import numpy as np
import pytest

from offrl.data import Dataset, DatasetError, EpisodeStats


def _obs(n: int) -> np.ndarray:
    """Row i is [i, 10 + i]: easy to recognise after rows are dropped or reordered."""
    i = np.arange(n, dtype=np.float32)
    return np.stack([i, 10 + i], axis=1)


def _small() -> Dataset:
    """7 rows; episodes [0,1,2] (terminal), [3,4] (timeout), [5,6] (final row, no flag)."""
    obs = _obs(7)
    return Dataset.from_arrays(
        observations=obs,
        actions=np.linspace(-1, 1, 7, dtype=np.float32).reshape(7, 1),
        rewards=np.arange(1, 8, dtype=np.float32),  # 1..7
        next_observations=obs + 0.5,
        terminals=[0, 0, 1, 0, 0, 0, 0],
        timeouts=[0, 0, 0, 0, 1, 0, 0],
        env_id="Toy-v0",
        metadata={"policy": "random"},
    )


# ---------------------------------------------------------------------- structure
def test_episode_structure_hand_computed() -> None:
    ds = _small()
    assert len(ds) == 7
    np.testing.assert_array_equal(ds.episode_ends, [2, 4, 6])
    np.testing.assert_array_equal(ds.episode_starts, [0, 3, 5])
    np.testing.assert_array_equal(ds.episode_returns(), [1 + 2 + 3, 4 + 5, 6 + 7])
    np.testing.assert_array_equal(ds.episode_ids(), [0, 0, 0, 1, 1, 2, 2])
    st = ds.stats()
    assert isinstance(st, EpisodeStats)
    assert st.num_transitions == 7
    assert st.num_episodes == 3
    assert st.return_mean == pytest.approx(28 / 3)
    assert st.return_std == pytest.approx(np.std([6.0, 9.0, 13.0]))
    assert (st.return_min, st.return_max) == (6.0, 13.0)
    assert st.length_mean == pytest.approx(7 / 3)
    assert ds.obs_shape == (2,)
    assert ds.action_dim == 1
    assert not ds.discrete


def test_terminal_and_timeout_on_same_row_is_one_end() -> None:
    obs = _obs(3)
    ds = Dataset.from_arrays(
        obs, np.zeros((3, 1)), [1, 1, 1], obs, terminals=[0, 1, 0], timeouts=[0, 1, 0]
    )
    np.testing.assert_array_equal(ds.episode_ends, [1, 2])
    np.testing.assert_array_equal(ds.episode_returns(), [2, 1])


def test_dtypes_are_normalised() -> None:
    obs = _obs(3).astype(np.float64)
    ds = Dataset.from_arrays(obs, [0, 2, 1], [1, 2, 3], obs, terminals=np.array([0, 0, 1]))
    assert ds.observations.dtype == np.float32
    assert ds.next_observations.dtype == np.float32
    assert ds.actions.dtype == np.int64
    assert ds.discrete and ds.action_dim == 3
    assert ds.rewards.dtype == np.float32
    assert ds.terminals.dtype == bool and ds.timeouts.dtype == bool


def test_uint8_image_observations_kept() -> None:
    obs = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    ds = Dataset.from_arrays(obs, np.zeros((2, 1)), [0, 0], obs, terminals=[0, 1])
    assert ds.observations.dtype == np.uint8
    assert ds.obs_shape == (4, 4)


# ---------------------------------------------------------------------- from_arrays (D4RL rule)
def test_from_arrays_without_next_observations_drops_timeout_steps() -> None:
    # rows:      0  1  2 | 3  4  5 | 6  7  8 | 9
    # terminal:        x |         |       x |
    # timeout:           |       x |         |      (row 9: final row, no flag)
    ds = Dataset.from_arrays(
        observations=_obs(10),
        actions=np.arange(10, dtype=np.float32).reshape(10, 1),
        rewards=np.arange(1, 11, dtype=np.float32),  # reward of row i is i + 1
        terminals=[0, 0, 1, 0, 0, 0, 0, 0, 1, 0],
        timeouts=[0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
    )
    # Row 5 (timeout) and row 9 (final, unflagged) have no logged successor: dropped.
    assert ds.metadata["dropped_steps"] == 2
    kept = [0, 1, 2, 3, 4, 6, 7, 8]
    np.testing.assert_array_equal(ds.observations[:, 0], kept)
    np.testing.assert_array_equal(ds.actions[:, 0], kept)
    # successor of row i is observations[i + 1], also for the terminal rows 2 and 8
    np.testing.assert_array_equal(ds.next_observations[:, 0], [1, 2, 3, 4, 5, 7, 8, 9])
    np.testing.assert_array_equal(ds.next_observations[:, 1], [11, 12, 13, 14, 15, 17, 18, 19])
    # row 4 (before the dropped timeout) becomes the truncated end; row 8 (before the dropped
    # final row) is already a terminal and stays one, not a timeout.
    np.testing.assert_array_equal(ds.terminals, [0, 0, 1, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(ds.timeouts, [0, 0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(ds.episode_ends, [2, 4, 7])
    np.testing.assert_array_equal(ds.episode_returns(), [1 + 2 + 3, 4 + 5, 7 + 8 + 9])


def test_from_arrays_terminal_last_row_is_kept() -> None:
    ds = Dataset.from_arrays(_obs(4), np.zeros((4, 1)), [1, 2, 3, 4], terminals=[0, 0, 0, 1])
    assert len(ds) == 4
    assert ds.metadata["dropped_steps"] == 0
    np.testing.assert_array_equal(ds.terminals, [0, 0, 0, 1])
    np.testing.assert_array_equal(ds.timeouts, [0, 0, 0, 0])
    np.testing.assert_array_equal(ds.next_observations[:3], _obs(4)[1:])


def test_from_arrays_unflagged_last_row_is_dropped() -> None:
    ds = Dataset.from_arrays(_obs(4), np.zeros((4, 1)), [1, 2, 3, 4])
    assert len(ds) == 3
    assert ds.metadata["dropped_steps"] == 1
    np.testing.assert_array_equal(ds.timeouts, [0, 0, 1])
    np.testing.assert_array_equal(ds.terminals, [0, 0, 0])
    np.testing.assert_array_equal(ds.next_observations, _obs(4)[1:])


def test_from_arrays_dropped_steps_accumulate_with_given_metadata() -> None:
    ds = Dataset.from_arrays(
        _obs(4), np.zeros((4, 1)), [1, 2, 3, 4], metadata={"dropped_steps": 3, "x": 1}
    )
    assert ds.metadata == {"dropped_steps": 4, "x": 1}


def test_from_arrays_all_steps_without_successor() -> None:
    with pytest.raises(DatasetError, match="^observations: every step"):
        Dataset.from_arrays(_obs(2), np.zeros((2, 1)), [1, 2], timeouts=[1, 1])


def test_from_arrays_column_flags_rejected() -> None:
    with pytest.raises(DatasetError, match="^terminals: expected shape"):
        Dataset.from_arrays(_obs(3), np.zeros((3, 1)), [1, 2, 3], terminals=[[0], [1], [0]])


# ---------------------------------------------------------------------- validation errors
def _arrays(n: int = 4) -> dict:
    obs = _obs(n)
    return {
        "observations": obs,
        "actions": np.zeros((n, 2), dtype=np.float32),
        "rewards": np.ones(n, dtype=np.float32),
        "next_observations": obs + 1,
        "terminals": np.zeros(n, dtype=bool),
        "timeouts": np.zeros(n, dtype=bool),
    }


def _with(field: str, value: object) -> dict:
    arrays = _arrays()
    arrays[field] = value
    return arrays


def _nan_at(field: str, row: int) -> dict:
    arrays = _arrays()
    arr = arrays[field].copy()
    arr[row] = np.nan
    arrays[field] = arr
    return arrays


@pytest.mark.parametrize(
    ("arrays", "field"),
    [
        (_nan_at("observations", 2), "observations"),
        (_nan_at("next_observations", 1), "next_observations"),
        (_nan_at("actions", 3), "actions"),
        (_nan_at("rewards", 0), "rewards"),
        (_with("rewards", np.array([1, np.inf, 1, 1], dtype=np.float32)), "rewards"),
        (_with("actions", np.full((4, 2), -np.inf)), "actions"),
    ],
)
def test_nan_and_inf_rejected(arrays: dict, field: str) -> None:
    with pytest.raises(DatasetError, match=f"^{field}: contains NaN or inf"):
        Dataset(**arrays)


def test_nan_message_names_first_bad_row() -> None:
    with pytest.raises(DatasetError, match="first at row 2"):
        Dataset(**_nan_at("observations", 2))


@pytest.mark.parametrize(
    "field", ["actions", "rewards", "next_observations", "terminals", "timeouts"]
)
def test_length_mismatch(field: str) -> None:
    arrays = _arrays()
    arrays[field] = arrays[field][:3]
    with pytest.raises(DatasetError, match=f"^{field}: length 3 does not match observations"):
        Dataset(**arrays)


@pytest.mark.parametrize(
    ("arrays", "field"),
    [
        (_with("observations", np.arange(4, dtype=np.float32)), "observations"),
        (_with("next_observations", np.zeros((4, 3), dtype=np.float32)), "next_observations"),
        (_with("rewards", np.ones((4, 2), dtype=np.float32)), "rewards"),
        (_with("actions", np.zeros(4, dtype=np.float32)), "actions"),
        (_with("actions", np.zeros((4, 2), dtype=np.int64)), "actions"),
        (_with("terminals", np.zeros((4, 1), dtype=bool)), "terminals"),
        (_with("timeouts", np.zeros((4, 2), dtype=bool)), "timeouts"),
    ],
)
def test_wrong_shape(arrays: dict, field: str) -> None:
    with pytest.raises(DatasetError, match=f"^{field}: "):
        Dataset(**arrays)


@pytest.mark.parametrize(
    ("arrays", "field"),
    [
        (_with("observations", _obs(4).astype(np.int64)), "observations"),
        (_with("actions", np.zeros((4, 2), dtype=bool)), "actions"),
        (_with("rewards", np.array(["a", "b", "c", "d"])), "rewards"),
        (_with("next_observations", _obs(4).astype(np.uint8)), "next_observations"),
        (_with("observations", [[1.0, 2.0], [1.0], [1.0, 2.0], [1.0, 2.0]]), "observations"),
    ],
)
def test_wrong_dtype(arrays: dict, field: str) -> None:
    with pytest.raises(DatasetError, match=f"^{field}: "):
        Dataset(**arrays)


@pytest.mark.parametrize("field", ["observations", "actions", "rewards", "next_observations"])
def test_missing_field(field: str) -> None:
    with pytest.raises(DatasetError, match=f"^{field}: missing"):
        Dataset(**_with(field, None))


def test_missing_actions_in_from_arrays() -> None:
    with pytest.raises(DatasetError, match="^actions: missing"):
        Dataset.from_arrays(_obs(3), None, [1, 2, 3])


def test_empty_data() -> None:
    with pytest.raises(DatasetError, match="^observations: the dataset is empty"):
        Dataset.from_arrays(np.zeros((0, 3)), np.zeros((0, 1)), np.zeros(0))
    with pytest.raises(DatasetError, match="^observations: the dataset is empty"):
        Dataset.from_arrays(np.zeros((0, 3)), np.zeros((0, 1)), np.zeros(0), np.zeros((0, 3)))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("terminals", np.array([0, 2, 0, 0])),
        ("timeouts", np.array([0.0, 0.5, 0.0, 0.0])),
        ("terminals", np.array([0.0, np.nan, 0.0, 0.0])),
    ],
)
def test_non_boolean_flags(field: str, value: np.ndarray) -> None:
    with pytest.raises(DatasetError, match=f"^{field}: expected booleans"):
        Dataset(**_with(field, value))
    arrays = _arrays()
    with pytest.raises(DatasetError, match=f"^{field}: expected booleans"):
        Dataset.from_arrays(
            arrays["observations"], arrays["actions"], arrays["rewards"], **{field: value}
        )


def test_zero_one_flags_become_bool() -> None:
    ds = Dataset(**_with("terminals", np.array([0.0, 0.0, 1.0, 0.0])))
    assert ds.terminals.dtype == bool
    np.testing.assert_array_equal(ds.terminals, [False, False, True, False])


def test_negative_discrete_action() -> None:
    with pytest.raises(DatasetError, match="^actions: discrete actions must be non-negative"):
        Dataset(**_with("actions", np.array([0, 1, -1, 0])))


def test_check_action_space_continuous() -> None:
    arrays = _arrays()
    arrays["actions"] = np.array([[0, 0], [1, -1], [0.5, 1.000001], [0, 0]], dtype=np.float32)
    ds = Dataset(**arrays)
    ds.check_action_space(-1.0, 1.0)  # 1.000001 is within the float32 tolerance
    ds.check_action_space(np.array([-1.0, -2.0]), np.array([1.0, 2.0]))
    arrays["actions"][2, 1] = 1.5
    ds = Dataset(**arrays)
    with pytest.raises(DatasetError, match=r"^actions: value 1\.5 at row 2, dim 1 is outside"):
        ds.check_action_space(-1.0, 1.0)


def test_check_action_space_discrete() -> None:
    ds = Dataset(**_with("actions", np.array([0, 1, 2, 1])))
    ds.check_action_space(0, 3)
    with pytest.raises(DatasetError, match="^actions: index 2 outside the action space of 2"):
        ds.check_action_space(0, 2)


# ---------------------------------------------------------------------- select / concatenate
def test_select_episodes() -> None:
    ds = _small()
    sub = ds.select_episodes(np.array([2, 0]))
    np.testing.assert_array_equal(sub.rewards, [6, 7, 1, 2, 3])
    np.testing.assert_array_equal(sub.observations[:, 0], [5, 6, 0, 1, 2])
    np.testing.assert_array_equal(sub.episode_ends, [1, 4])
    np.testing.assert_array_equal(sub.episode_returns(), [13, 6])
    np.testing.assert_array_equal(sub.terminals, [0, 0, 0, 0, 1])
    # episode 2 ended only by being the last row: moved first, it is closed as a truncation
    np.testing.assert_array_equal(sub.timeouts, [0, 1, 0, 0, 0])
    assert not ds.timeouts[-1]
    assert sub.env_id == "Toy-v0"
    assert sub.metadata == {"policy": "random"}
    one = ds.select_episodes([1])
    np.testing.assert_array_equal(one.rewards, [4, 5])
    np.testing.assert_array_equal(one.timeouts, [0, 1])


def test_select_episodes_errors() -> None:
    ds = _small()
    with pytest.raises(DatasetError, match="^episodes: no episode selected"):
        ds.select_episodes(np.array([], dtype=np.int64))
    with pytest.raises(DatasetError, match="^episodes: index out of range"):
        ds.select_episodes([3])
    with pytest.raises(DatasetError, match="^episodes: index out of range"):
        ds.select_episodes([-1])


def test_select_rows_mask() -> None:
    ds = _small()
    sub = ds.select(ds.rewards > 4)
    np.testing.assert_array_equal(sub.rewards, [5, 6, 7])
    np.testing.assert_array_equal(sub.episode_ends, [0, 2])


def test_concatenate() -> None:
    a = _small()  # its final row carries no flag
    b = Dataset.from_arrays(
        _obs(2), np.zeros((2, 1)), [10, 20], _obs(2) + 1, terminals=[0, 1], env_id="Toy-v0"
    )
    joined = Dataset.concatenate([a, b], metadata={"joined": True})
    assert len(joined) == 9
    # a's last row now closes its episode as a truncation (its next_observation is real)
    np.testing.assert_array_equal(joined.timeouts, [0, 0, 0, 0, 1, 0, 1, 0, 0])
    np.testing.assert_array_equal(joined.terminals, [0, 0, 1, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(joined.episode_ends, [2, 4, 6, 8])
    np.testing.assert_array_equal(joined.episode_returns(), [6, 9, 13, 30])
    assert joined.env_id == "Toy-v0"
    assert joined.metadata == {"joined": True}
    assert not a.timeouts[-1]  # the parts are not modified
    other = Dataset.from_arrays(_obs(2), np.zeros((2, 1)), [1, 1], _obs(2), env_id="Other-v0")
    assert Dataset.concatenate([a, other]).env_id is None


def test_concatenate_errors() -> None:
    with pytest.raises(DatasetError, match="^observations: nothing to concatenate"):
        Dataset.concatenate([])
    wide = Dataset.from_arrays(np.zeros((2, 3)), np.zeros((2, 1)), [1, 1], np.zeros((2, 3)))
    with pytest.raises(DatasetError, match="^observations: parts disagree"):
        Dataset.concatenate([_small(), wide])
    discrete = Dataset.from_arrays(_obs(2), [0, 1], [1, 1], _obs(2))
    with pytest.raises(DatasetError, match="^actions: parts disagree"):
        Dataset.concatenate([_small(), discrete])


def test_arrays_returns_the_six_fields() -> None:
    ds = _small()
    assert list(ds.arrays()) == [
        "observations",
        "actions",
        "rewards",
        "next_observations",
        "terminals",
        "timeouts",
    ]
