"""offrl.data.priority.SumTree: sums, proportional sampling, float edge cases, checkpoints."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from offrl.data.priority import SumTree


def _leaves(tree: SumTree) -> np.ndarray:
    return tree.priorities(np.arange(len(tree)))


def test_total_and_priorities_after_updates() -> None:
    tree = SumTree(5)
    assert len(tree) == 5
    assert tree.total() == 0.0
    tree.update(np.array([0, 1, 2, 3]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert tree.total() == 10.0
    tree.update(np.array([1]), np.array([0.5]))
    assert tree.total() == 8.5
    tree.update(np.array([4]), 2.0)  # a scalar broadcasts
    assert tree.total() == 10.5
    np.testing.assert_array_equal(_leaves(tree), [1.0, 0.5, 3.0, 4.0, 2.0])
    np.testing.assert_array_equal(tree.priorities(np.array([[3, 0]])), [[4.0, 1.0]])
    assert tree.max_priority() == 4.0


def test_max_priority_is_the_largest_value_written_so_far() -> None:
    tree = SumTree(3)
    assert tree.max_priority() == 0.0
    tree.update(np.array([0, 1]), np.array([7.0, 2.0]))
    tree.update(np.array([0]), np.array([1.0]))  # lowering item 0 does not lower the max
    assert tree.max_priority() == 7.0
    assert tree.priorities(np.array([0]))[0] == 1.0


def test_duplicate_indices_last_write_wins() -> None:
    tree = SumTree(4)
    tree.update(np.array([0, 1, 0]), np.array([5.0, 1.0, 2.0]))
    np.testing.assert_array_equal(_leaves(tree), [2.0, 1.0, 0.0, 0.0])
    assert tree.total() == 3.0
    # 5.0 was overwritten within the same call, so it was never the priority of anything.
    assert tree.max_priority() == 2.0

    rng = np.random.default_rng(0)
    big = SumTree(50)
    idx = rng.integers(0, 50, size=400)  # many repeats
    pri = rng.random(400)
    big.update(idx, pri)
    expected = np.zeros(50)
    for i, p in zip(idx, pri, strict=True):
        expected[i] = p
    np.testing.assert_array_equal(_leaves(big), expected)
    assert big.total() == pytest.approx(expected.sum(), rel=1e-12)


def test_recomputed_sums_return_exactly_to_zero() -> None:
    tree = SumTree(3)
    tree.update(np.array([0, 1, 2]), np.array([0.1, 0.2, 0.3]))
    tree.update(np.array([0, 1, 2]), np.zeros(3))
    # Subtracting deltas would leave ~1e-17 here (0.1 + 0.2 - 0.1 - 0.2 != 0 in floats).
    assert tree.total() == 0.0
    with pytest.raises(ValueError, match="total priority is 0"):
        tree.sample(1, torch.Generator().manual_seed(0))


def test_no_drift_after_many_updates() -> None:
    rng = np.random.default_rng(1)
    tree = SumTree(1000)  # not a power of two: 24 padding leaves
    written = 0
    while written < 10_000:
        k = int(rng.integers(1, 65))
        # Priorities over ~10 orders of magnitude make float cancellation visible if it happens.
        tree.update(rng.integers(0, 1000, size=k), np.exp(rng.normal(0.0, 4.0, size=k)))
        written += k
    leaves = _leaves(tree)
    assert tree.total() == pytest.approx(math.fsum(leaves), rel=1e-9)
    # Stronger: every internal node is exactly what a rebuild from the leaves gives.
    rebuilt = SumTree(1000)
    rebuilt.load_state_dict(tree.state_dict())
    np.testing.assert_array_equal(rebuilt._tree, tree._tree)


def test_sampling_frequencies_match_priorities() -> None:
    tree = SumTree(5)  # item 4 stays at 0; leaves 5..7 are padding
    tree.update(np.array([0, 1, 2, 3]), np.array([1.0, 2.0, 3.0, 4.0]))
    g = torch.Generator().manual_seed(0)
    draws = np.concatenate([tree.sample(64, g) for _ in range(3125)])  # 200k
    assert draws.dtype == np.int64 and draws.shape == (200_000,)
    freq = np.bincount(draws, minlength=5) / draws.size
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4, 0.0], atol=0.01)
    assert freq[4] == 0.0


def test_stratified_sampling_covers_each_segment_once() -> None:
    tree = SumTree(4)
    tree.update(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    # 1000 segments of width 0.01; item i owns exactly 100 * p_i of them (up to rounding at the
    # item boundaries, hence +-1).
    counts = np.bincount(tree.sample(1000, torch.Generator().manual_seed(5)), minlength=4)
    np.testing.assert_allclose(counts, [100, 200, 300, 400], atol=1)
    assert counts.sum() == 1000


def test_sample_edge_sizes() -> None:
    tree = SumTree(1)  # a single leaf is also the root
    tree.update(np.array([0]), np.array([2.5]))
    g = torch.Generator().manual_seed(0)
    np.testing.assert_array_equal(tree.sample(3, g), [0, 0, 0])
    assert tree.sample(0, g).shape == (0,)
    assert SumTree(4).sample(0, g).dtype == np.int64  # nothing to draw: no error, no draw
    with pytest.raises(ValueError, match="n must be >= 0"):
        tree.sample(-1, g)
    with pytest.raises(ValueError, match="total priority is 0"):
        SumTree(4).sample(1, g)


def test_descent_at_boundaries_lands_on_the_right_item() -> None:
    tree = SumTree(5)
    tree.update(np.arange(5), np.array([1.0, 2.0, 3.0, 4.0, 0.0]))
    # Cumulative sums 1, 3, 6, 10: a point on a boundary belongs to the next item. u = total
    # (never produced by sample, which clamps) must not fall into items 4..7, which are all 0:
    # at the root the left sum (10) is not > 10, so a plain "else go right" would.
    u = np.array([0.0, 0.999, 1.0, 2.999, 3.0, 6.0, 9.999, 10.0])
    np.testing.assert_array_equal(tree._descend(u), [0, 0, 1, 1, 2, 3, 3, 3])

    holes = SumTree(6)
    holes.update(np.arange(6), np.array([0.0, 1.0, 0.0, 0.0, 2.0, 0.0]))
    # u = 0 at a zero left sibling: 0 >= 0 goes right, to item 1, not to item 0.
    u = np.array([0.0, 0.5, 1.0, 2.5, 3.0])
    np.testing.assert_array_equal(holes._descend(u), [1, 1, 4, 4, 4])


def test_rounding_cannot_walk_into_a_zero_subtree() -> None:
    # Leaves [L, 0, R, 0] with L = 1.5 * 2**-52 and R = 1.5. The root is L + R = 1.5 + 1.5 ulp,
    # a tie rounded to even: 1.5 + 2 ulp. sample() clamps u to the double just below that,
    # 1.5 + 1 ulp, which goes right with u - L = 1.5 - 0.5 ulp, again a tie rounded to even:
    # exactly 1.5 = R. In R's subtree the left sum 1.5 is not > 1.5, so "else go right" would
    # return item 3, whose priority is 0. Sampling must return item 2.
    ulp = 2.0**-52
    tree = SumTree(4)
    tree.update(np.arange(4), np.array([1.5 * ulp, 0.0, 1.5, 0.0]))
    assert tree.total() == 1.5 + 2 * ulp
    u = np.nextafter(tree.total(), 0.0)
    assert u == 1.5 + ulp and u - 1.5 * ulp == 1.5
    np.testing.assert_array_equal(tree._descend(np.array([u])), [2])
    # The same point through sample(): a stratum of width ~total covers it (r near 1 clamps).
    draws = tree.sample(100_000, torch.Generator().manual_seed(0))
    assert set(np.unique(draws).tolist()) <= {0, 2}


def test_zero_priority_items_are_never_drawn() -> None:
    rng = np.random.default_rng(2)
    cap = 1000
    pri = np.where(rng.random(cap) < 0.5, 0.0, 10.0 ** rng.uniform(-3, 3, size=cap))
    pri[-10:] = 0.0  # zeros at the far right, next to the padding leaves
    tree = SumTree(cap)
    tree.update(np.arange(cap), pri)
    g = torch.Generator().manual_seed(0)
    draws = tree.sample(100_000, g)
    assert (pri[draws] > 0).all()

    # Points on and a few doubles either side of every cumulative boundary, and u = total.
    cum = np.cumsum(pri)
    near = [cum]
    below, above = cum, cum
    for _ in range(4):
        below, above = np.nextafter(below, 0.0), np.nextafter(above, np.inf)
        near += [below, above]
    u = np.concatenate([*near, [tree.total()]])
    u = u[u <= tree.total()]
    assert (pri[tree._descend(u)] > 0).all()

    sparse = SumTree(cap)
    sparse.update(np.arange(cap), np.where(rng.random(cap) < 0.9, 0.0, rng.random(cap)))
    assert (sparse.priorities(sparse.sample(100_000, g)) > 0).all()


def test_state_dict_round_trip_reproduces_samples() -> None:
    rng = np.random.default_rng(3)
    tree = SumTree(300)
    for _ in range(20):
        tree.update(rng.integers(0, 300, size=32), rng.random(32) * 5.0)
    buf = io.BytesIO()
    torch.save(tree.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    restored = SumTree(300)
    restored.load_state_dict(state)

    assert restored.total() == tree.total()
    assert restored.max_priority() == tree.max_priority()
    np.testing.assert_array_equal(restored._tree, tree._tree)
    g = torch.Generator().manual_seed(11)
    g_state = g.get_state()
    expected = tree.sample(500, g)
    g.set_state(g_state)
    np.testing.assert_array_equal(restored.sample(500, g), expected)

    with pytest.raises(ValueError, match="capacity"):
        SumTree(301).load_state_dict(state)


@pytest.mark.parametrize("bad", [-1.0, -1e-300, float("nan"), float("inf"), float("-inf")])
def test_bad_priorities_raise_and_leave_the_tree_unchanged(bad: float) -> None:
    tree = SumTree(4)
    tree.update(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match="finite|>= 0"):
        tree.update(np.array([0, 1]), np.array([5.0, bad]))
    np.testing.assert_array_equal(_leaves(tree), [1.0, 2.0, 3.0, 4.0])
    assert tree.total() == 10.0


def test_bad_indices_and_shapes_raise() -> None:
    tree = SumTree(4)
    with pytest.raises(IndexError, match="out of range"):
        tree.update(np.array([4]), np.array([1.0]))
    with pytest.raises(IndexError, match="out of range"):
        tree.update(np.array([-1]), np.array([1.0]))  # not wrapped onto a padding leaf
    with pytest.raises(TypeError, match="integers"):
        tree.update(np.array([0.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="broadcast"):
        tree.update(np.array([0, 1]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        SumTree(0)
    tree.update(np.array([], dtype=np.int64), np.array([]))  # a no-op, not an error
    assert tree.total() == 0.0


def test_three_million_items_update_and_sample() -> None:
    # Balanced Replay's size: a 2M-row offline dataset plus a 1M online buffer. Measured on a
    # loaded 2-core CPU, median of 2000 calls: update of 256 random indices ~0.15 ms, sample of
    # 256 ~0.17 ms (22 levels; np.zeros makes construction ~0.1 ms). Timing is not asserted.
    cap = 3_000_000
    rng = np.random.default_rng(4)
    tree = SumTree(cap)
    idx = rng.choice(cap, size=256, replace=False)
    pri = rng.random(256) + 0.1
    tree.update(idx, pri)
    assert tree.total() == pytest.approx(pri.sum(), rel=1e-12)
    draws = tree.sample(256, torch.Generator().manual_seed(0))
    assert np.isin(draws, idx).all()
