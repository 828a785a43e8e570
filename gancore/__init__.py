"""gancore: classic GANs that train from one call and write self-contained run directories."""
from .config import TrainConfig
from .errors import ConfigError, DataError, GancoreError, RunError
from .runs import Run, load_run
from .train import RunFailed, train

__all__ = ["TrainConfig", "train", "load_run", "Run", "RunFailed", "GancoreError", "ConfigError", "DataError", "RunError"]
