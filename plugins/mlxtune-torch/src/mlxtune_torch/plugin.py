"""Registers the torch trainer and backend with mlxtune (no torch import until they run)."""

from mlxtune.api import hookimpl

from .backend import TorchBackend
from .trainer import TorchTrainer

MLXTUNE_API = 1  # the mlxtune.api version this plugin is written for


@hookimpl
def register_trainers(register):
    register(TorchTrainer)


@hookimpl
def register_backends(register):
    register(TorchBackend)
