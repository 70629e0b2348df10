"""The file to copy for a new model family (docs/adding-a-family.md). Not registered: it builds nothing.

Make a folder ``families/<name>/`` with an empty ``__init__.py``, copy this file to ``families/<name>/model.py``,
rename the class, set ``name`` (the folder's name) and ``description``, fill every method and add ``@register``
above the class: the folder is then a family (``gmdrit models`` lists it, ``model.family: <name>`` builds it). Its
own options go into ``families/<name>/config.py`` (``SECTION``, a ``Section`` dataclass, optionally
``validate(cfg)``), which becomes the config section of that name. ``tests/test_family_contract.py`` then checks
the family without being edited. ``families/mdmm/`` is the complete example; ``families/drit.py`` has the
DRIT-style pieces to reuse."""

from __future__ import annotations

import torch
from torch import nn

from ..config.schema import Config
from ..data.unpaired import Batch
from ..training.engine import Engine
from .base import Attributes, Capabilities, ModelFamily, OptimizerGroup


class TemplateFamily(ModelFamily):
    name = "template"
    description = "one line for `gmdrit models`"
    #: optional: what `gmdrit benchmark --rows` can time of it, e.g.
    #: (BenchmarkRow("my_family", "my family, batch 2", "my_preset", 128),)
    benchmark_rows = ()
    # the networks translation needs (inference loads and exports only these); the default is DRIT's three
    test_time_networks = ("content_encoder", "attribute_encoder", "generator")

    def __init__(self, cfg: Config, device: torch.device, training: bool = True):
        super().__init__(cfg, device, training)
        # every network, discriminators included, as pure modules; no optimizers, no precision choices
        self.networks = nn.ModuleDict({}).to(device)

    # -- training -------------------------------------------------------------------------------

    def optimizer_groups(self) -> list[OptimizerGroup]:
        # one OptimizerGroup per optimized network: its learning rate, its parameter groups (a group's
        # "lr_mult" scales the rate) and scheduled=False where the LR schedule must leave it alone
        return [
            OptimizerGroup(name, self.cfg.optim.lr_eg, [{"params": list(net.parameters())}])
            for name, net in self.networks.items()
        ]

    # def phases(self) -> list[Phase]: only for a family trained in stages (docs/adding-a-family.md); the
    # default, no phases, trains train.max_iters iterations on MDMM's sampler

    def train_step(self, batches: list[Batch], iteration: int, engine: Engine) -> dict[str, torch.Tensor]:
        # images = engine.to_device(batches[-1].images); forward under `with engine.autocast():`;
        # update with engine.update(name, loss) / engine.two_step_update(...); return detached losses
        raise NotImplementedError

    def sample_grid(self, examples: Batch) -> torch.Tensor:
        # rows x columns x 3 x S x S in [-1, 1]; seed your own generator (global RNG untouched), leave the
        # networks in training mode
        raise NotImplementedError

    # -- test time ------------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            components_per_domain=0, classifies_domains=False, paired_data=False, domain_conditioned=True
        )

    def encode_content(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generate(self, content: torch.Tensor, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample_attributes(
        self,
        domain: int,
        n: int,
        component: int | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> Attributes:
        raise NotImplementedError

    def encode_reference(self, images: torch.Tensor, domains: torch.Tensor | None = None) -> Attributes:
        raise NotImplementedError

    def attribute_prior(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError
