"""offrl: offline reinforcement learning on PyTorch.

Load data (your own arrays, D4RL HDF5, Minari, or a built-in dataset), train any registered
algorithm, and get an honest score::

    from offrl import TrainConfig, train
    summary = train(TrainConfig(algo="td3bc", dataset="pendulum-medium-v0", steps=10_000))
"""

__version__ = "0.1.0"

from offrl.algos import Algorithm, EnvSpec, get_algorithm, list_algorithms  # noqa: E402
from offrl.data import Dataset, DatasetError, load_dataset  # noqa: E402
from offrl.train import TrainConfig, evaluate, train  # noqa: E402

__all__ = [
    "__version__",
    "Algorithm",
    "EnvSpec",
    "get_algorithm",
    "list_algorithms",
    "Dataset",
    "DatasetError",
    "load_dataset",
    "TrainConfig",
    "train",
    "evaluate",
]
