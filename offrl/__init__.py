"""offrl: offline reinforcement learning on PyTorch.

Load data (your own arrays, D4RL HDF5, Minari, or a built-in dataset), train any registered
algorithm, and get an honest score::

    from offrl import TrainConfig, train
    summary = train(TrainConfig(algo="td3bc", dataset="pendulum-medium-v0", steps=10_000))
"""

# The package init is the one aggregator exempt from the layering of tests/test_architecture.py
# (docs/architecture.md): it may import any layer, and no module inside offrl may import it.
import offrl.suite  # noqa: F401  (registers the built-in dataset names with offrl.data)
from offrl._version import __version__
from offrl.algos import Algorithm, EnvSpec, get_algorithm, list_algorithms
from offrl.data import Dataset, DatasetError, load_dataset
from offrl.errors import OfflineRLError
from offrl.train import TrainConfig, evaluate, load_algorithm, train

__all__ = [
    "__version__",
    "Algorithm",
    "EnvSpec",
    "get_algorithm",
    "list_algorithms",
    "Dataset",
    "DatasetError",
    "OfflineRLError",
    "load_dataset",
    "TrainConfig",
    "train",
    "evaluate",
    "load_algorithm",
]
