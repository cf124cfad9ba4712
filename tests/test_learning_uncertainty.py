"""Learning tests for SAC-N, EDAC and UWAC on the built-in ``pendulum-medium-v0`` (behaviour
policy about -528, random -1217, expert -156; see tests/test_learning.py).

SAC-N and EDAC have no behaviour model and no term pulling the policy towards the data: the
policy is only as good as the learned Q, so they need Q-values of the right size (about -250 on
this data) before the policy improves. At the paper's lr 3e-4 the critics were still at a mean
Q of -45 after 5000 updates and the policy at or below the behaviour's level (-529 at 3000 steps
with N = 10); lr 1e-3 for actor, critics and temperature reaches expert level within 3000
updates. The tests therefore use that lr with small networks and N (the paper's N and widths
are far too slow for a unit test on one core). UWAC starts from BEAR's test settings (see
tests/test_learning_bcq_bear.py) with 5 dropout passes instead of 100 (each pass multiplies the
target's critic rows), and beta scaled down to Pendulum's Q-variances: with the official 0.5 the
weights sat at 0.5-0.6, quartering the critics' effective learning rate, and the policy was
still at -932 (lr 3e-4) or -838 (lr 1e-3) after 2000 updates. Runs use one thread;
thresholds leave at least 60 return points of headroom over what was observed (next to each
assertion).
"""

from __future__ import annotations

from pathlib import Path

from _training import train_run

FAST_LR = {"actor_lr": 1e-3, "critic_lr": 1e-3, "alpha_lr": 1e-3}


_train = train_run


def test_sac_n_beats_behaviour_on_medium(tmp_path: Path) -> None:
    """SAC-N (N = 10, two hidden layers of 64, batch 128, lr 1e-3) improves on the behaviour
    policy."""
    final = _train(
        tmp_path,
        algo="sac_n",
        steps=3000,
        algo_config={"num_critics": 10, "hidden": (64, 64), "batch_size": 128, **FAST_LR},
    )
    # Observed: -129 at 3000 steps (hidden (128, 128): -127; at the paper's lr 3e-4: -529 with
    # (128, 128), -881 after 5000 steps with (64, 64)), from data that averages -528. The test
    # took 240 s of wall time on the 2-core machine shared with 4 other training processes;
    # about 14 ms of CPU time per update.
    assert final["return_mean"] > final["behaviour_return_mean"] + 100, final


def test_edac_beats_behaviour_on_medium(tmp_path: Path) -> None:
    """EDAC (N = 5, eta = 1, two hidden layers of 64, batch 128, lr 1e-3) improves on the
    behaviour policy."""
    final = _train(
        tmp_path,
        algo="edac",
        steps=3000,
        algo_config={
            "num_critics": 5,
            "eta": 1.0,
            "hidden": (64, 64),
            "batch_size": 128,
            **FAST_LR,
        },
    )
    # Observed: -142 at 3000 steps (at lr 3e-4 with (128, 128): -823), from data that averages
    # -528; the mean pairwise cosine similarity of the critics' action-gradients stayed at
    # 0.3-0.5. The test took 264 s of wall time on the shared machine; about 14 ms of CPU time
    # per update.
    assert final["return_mean"] > final["behaviour_return_mean"] + 100, final


def test_uwac_beats_behaviour_on_medium(tmp_path: Path) -> None:
    """UWAC (BEAR's test settings -- batch 128, 500 warm-up steps -- with a (128, 128) VAE,
    (64, 64) critics and actor, 5 dropout passes over 5 target samples, lr 1e-3 and beta 0.05)
    improves on the behaviour policy."""
    final = _train(
        tmp_path,
        algo="uwac",
        steps=3000,
        algo_config={
            "vae_hidden": (128, 128),
            "warmup_steps": 500,
            "batch_size": 128,
            "hidden": (64, 64),
            "num_dropout_samples": 5,
            "num_target_samples": 5,
            "beta": 0.05,
            **FAST_LR,
        },
    )
    # Observed: -330 at 3000 steps, 82 s (2000 steps: -570; with a (256, 256) VAE and
    # (128, 128) networks: -167, 128 s; beta 0.5: -838 at 2000; lr 3e-4 with beta 0.05: -411
    # at 3000), from data that averages -528.
    assert final["return_mean"] > final["behaviour_return_mean"] + 100, final
