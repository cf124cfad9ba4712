"""Training loop, evaluation, checkpoints and loggers."""

from offrl.train.checkpoint import load_algorithm, load_checkpoint, save_checkpoint
from offrl.train.evaluation import EvalResult, evaluate
from offrl.train.loggers import MetricLogger, read_metrics
from offrl.train.trainer import TrainConfig, plot_curves, spec_for, train

__all__ = [
    "TrainConfig",
    "train",
    "evaluate",
    "EvalResult",
    "MetricLogger",
    "read_metrics",
    "save_checkpoint",
    "load_checkpoint",
    "load_algorithm",
    "plot_curves",
    "spec_for",
]
