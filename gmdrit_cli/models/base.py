"""The small interface every model family offers to the trainer, checkpoints and commands."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from ..config import Config
from ..data import Batch


def lr_multiplier(policy: str, epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """Learning-rate factor during 0-based ``epoch``, as MDMM's schedulers.

    lambda: 1 - max(0, epoch - n_epochs_decay) / (n_epochs - n_epochs_decay + 1);
    step: x0.1 every ``n_epochs_decay`` epochs; constant: 1.
    """
    if policy == "lambda":
        return 1.0 - max(0, epoch - n_epochs_decay) / float(n_epochs - n_epochs_decay + 1)
    if policy == "step":
        return 0.1 ** (epoch // n_epochs_decay)
    return 1.0


class ModelFamily:
    """A model family: its networks, their optimizers and one training step.

    Subclasses set ``name`` and ``description`` and build ``networks`` (an ``nn.ModuleDict`` of pure
    modules), ``optimizers`` (name -> optimizer) and ``base_lrs`` (name -> learning rate).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    #: optimizers whose learning rate the schedule leaves alone (MDMM never decays D_c's)
    constant_lr: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, cfg: Config, device: torch.device, training: bool = True):
        self.cfg = cfg
        self.training = training
        self.device = device
        self.networks = nn.ModuleDict()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.base_lrs: dict[str, float] = {}

    # -- training -------------------------------------------------------------------------------

    def batches_per_step(self) -> int:
        """How many batches one :meth:`train_step` consumes."""
        return 1

    def train_step(self, batches: list[Batch], iteration: int) -> dict[str, torch.Tensor]:
        """One training iteration; returns detached scalar losses by name (no host sync needed)."""
        raise NotImplementedError

    def set_lr_multiplier(self, factor: float) -> None:
        for name, opt in self.optimizers.items():
            lr = self.base_lrs[name] * (1.0 if name in self.constant_lr else factor)
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_mult", 1.0)

    def parameter_groups(self, name: str, net: nn.Module) -> list[dict]:
        """Optimizer parameter groups of network ``name``; a group's ``lr_mult`` scales its learning rate."""
        return [{"params": list(net.parameters())}]

    def extra_state(self, iteration: int) -> dict:
        """Derived scalars recorded in ``state.json`` for people to read (resume recomputes them)."""
        temperature = getattr(self, "temperature", None)
        return {"gumbel_temperature": temperature(iteration)} if callable(temperature) else {}

    def iterations_per_epoch(self, dataset_len: int) -> int:
        return max(1, math.ceil(dataset_len / self.cfg.train.batch_size))

    # -- inspection -----------------------------------------------------------------------------

    @torch.no_grad()
    def sample_grid(self, examples: Batch) -> torch.Tensor:
        """The report's display grid: rows x 5 x 3 x S x S in [-1, 1], one row per domain."""
        raise NotImplementedError

    def parameter_counts(self) -> dict[str, int]:
        return {name: sum(p.numel() for p in net.parameters()) for name, net in self.networks.items()}

    def onehot(self, domains: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(domains, self.cfg.num_domains).float()
