"""Registers the torch trainer and backend with mlxtune (no torch import until they run)."""

from mlxtune import hookimpl

from .backend import TorchBackend
from .trainer import TorchTrainer


@hookimpl
def register_trainers(register):
    register(TorchTrainer)


@hookimpl
def register_backends(register):
    register(TorchBackend)
