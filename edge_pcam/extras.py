"""The optional `train` extra (TensorFlow and friends): is it installed, and the refusal when it is not.

The base install is the device side. Commands that need TensorFlow call
`require_train_extra` first, before they create or read anything, so a
TensorFlow-free install answers them with one line saying what to install.
"""

from __future__ import annotations

import importlib.util

from edge_pcam.errors import MissingExtraError

TRAIN_EXTRA = "pip install 'edge-pcam[train]'"
# module -> the package that provides it (what `pip install 'edge-pcam[train]'` brings)
TRAIN_MODULES = {"tensorflow": "tensorflow", "tf_keras": "tf-keras",
                 "tensorflow_model_optimization": "tensorflow-model-optimization"}


def missing_train_packages() -> list[str]:
    """The train extra's packages that cannot be imported here (found without importing them)."""
    return [package for module, package in TRAIN_MODULES.items() if not _installed(module)]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or an import hook that refuses it
        return False


def require_train_extra(what: str) -> None:
    """Raise MissingExtraError unless TensorFlow, tf-keras and tensorflow-model-optimization are installed."""
    missing = missing_train_packages()
    if missing:
        raise MissingExtraError(f"{what} needs TensorFlow ({', '.join(missing)} not installed): {TRAIN_EXTRA}")
