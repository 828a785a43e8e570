"""gancore: classic GANs that train from one call and write self-contained run directories.

The package face is lazy: `import gancore` loads nothing heavy, and `gancore.train` imports the
trainer (and torch) on first use, so readers of run directories (`gancore.runs`, `gancore.views`,
the dashboard's pages) never pay for what they do not use.
"""
import importlib

from .errors import ConfigError, DataError, GancoreError, RunError

_LAZY = {"TrainConfig": "config", "train": "trainer", "RunFailed": "trainer", "load_run": "sample", "Run": "sample"}

__all__ = ["TrainConfig", "train", "load_run", "Run", "RunFailed", "GancoreError", "ConfigError", "DataError", "RunError"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # once: later lookups do not come here
        return value
    raise AttributeError(f"module 'gancore' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
