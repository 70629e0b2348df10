"""The contract every model family fulfils: what the trainer, checkpoints, inference, evaluation and the
benchmark may use of a model, and nothing else (docs/adding-a-family.md walks through it).

Two halves:

* training: ``networks``, :meth:`ModelFamily.optimizer_groups`, :meth:`ModelFamily.train_step` (with the
  trainer's :class:`~gmdrit_cli.training.engine.Engine`), :meth:`ModelFamily.sample_grid`,
  :meth:`ModelFamily.extra_state`;
* test time: :attr:`ModelFamily.test_time_networks`, :meth:`ModelFamily.translate`,
  :meth:`ModelFamily.sample_attributes`, :meth:`ModelFamily.encode_reference` and the typed
  :class:`Capabilities` that say which of the optional test-time methods apply.

Attributes are pairs ``(z, condition)``: ``z`` N x nz and the generator's conditioning N x D (a domain
one-hot, or GM-DRIT's y over its mixture components).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..colour_gate import gated_draw
from ..config.schema import Config
from ..data.unpaired import Batch
from ..plain import keep_plain

if TYPE_CHECKING:
    from ..training.engine import Engine

Attributes = tuple[torch.Tensor, torch.Tensor]  # (z N x nz, condition N x D)


@dataclass
class OptimizerGroup:
    """One optimizer a family asks for: its name (a network's name), its learning rate and its
    parameter groups (dicts with ``params`` and optionally ``lr_mult``, which scales ``lr`` for that
    group). ``scheduled=False``: the learning-rate schedule leaves it alone (MDMM's D_c)."""

    name: str
    lr: float
    param_groups: list[dict] = field(default_factory=list)
    scheduled: bool = True


@dataclass(frozen=True)
class Phase:
    """A stretch of training a family declares (``ModelFamily.phases()``): ``epochs`` passes over every image of
    ``domains`` (shuffled, each image once per epoch, the last batch of an epoch may be smaller), stepping only
    the optimizer groups ``optimizers``. At its first iteration those optimizers start fresh (empty state) and
    the learning-rate schedule restarts at epoch 0, as a new optimizer and scheduler would."""

    name: str
    epochs: int
    domains: tuple[int, ...]
    optimizers: tuple[str, ...]


@dataclass(frozen=True)
class BenchmarkRow:
    """A row a family offers to `gmdrit benchmark`: a preset timed at one resolution. ``report_seconds``: the
    source's mean seconds per iteration on a Tesla T4 (the report [R1], Table 3), None where it gives
    none; ``in_report_table``: part of the default table (the report's Table 3), else only with ``--rows``."""

    key: str
    label: str
    preset: str
    resolution: int
    report_seconds: float | None = None
    in_report_table: bool = False
    phase: str = ""  # a phased family: the training phase timed (its first iterations)
    nz_is_crop: bool = False  # attribute size = crop size (the report's GM-DRIT rows)
    resize_is_crop: bool = False  # resized straight to the crop (BicycleGAN, as the report and edges2shoes)


@dataclass(frozen=True)
class Capabilities:
    """What a family offers beyond the common contract, in place of probing it for attributes."""

    #: mixture components per domain that test time can pin (``--component``); 0: no mixture
    components_per_domain: int = 0
    #: :meth:`ModelFamily.classify` and :meth:`ModelFamily.component_probabilities` work (an inferred q(y|x))
    classifies_domains: bool = False
    #: trained on paired images (else unpaired)
    paired_data: bool = False
    #: the generator is conditioned on the target domain's code (else on an inferred y)
    domain_conditioned: bool = True
    #: the (source, target) domain pairs the model translates; None: every ordered pair of different domains
    translation_tasks: tuple[tuple[int, int], ...] | None = None
    #: translate and eval draw random attributes unless told otherwise; False: they use the prior's mean (one
    #: output per input) unless --samples is given (the VAE translates with z = mu by default)
    random_by_default: bool = True

    def tasks(self, num_domains: int) -> list[tuple[int, int]]:
        """The (source, target) pairs ``translate`` and ``eval`` may use."""
        if self.translation_tasks is not None:
            return list(self.translation_tasks)
        return [(s, t) for s in range(num_domains) for t in range(num_domains) if s != t]

    @property
    def has_mixture(self) -> bool:
        return self.components_per_domain > 0


class ModelFamily(ABC):
    """A model family: its networks, its optimizer groups, one training step and its test-time API.

    Subclasses set ``name`` and ``description``, register with :func:`gmdrit_cli.families.register`, and
    build ``networks`` (an ``nn.ModuleDict`` of pure modules) in ``__init__``. They never build
    optimizers or choose precision: the trainer's :class:`~gmdrit_cli.training.engine.Engine` does.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    #: the networks translation needs; inference loads and exports only these
    test_time_networks: ClassVar[tuple[str, ...]] = ("content_encoder", "attribute_encoder", "generator")
    #: ``section.key=value`` settings the contract test adds to its tiny 32 px config for this family (what a
    #: 32 px model of it needs beyond the common tiny settings, e.g. fewer discriminator layers)
    tiny_overrides: ClassVar[tuple[str, ...]] = ()
    #: what `gmdrit benchmark` can time of this family (the report's Table 3 rows, in the table's order)
    benchmark_rows: ClassVar[tuple[BenchmarkRow, ...]] = ()

    def __init__(self, cfg: Config, device: torch.device, training: bool = True):
        self.cfg = cfg
        self.training = training
        self.device = device
        self.networks = nn.ModuleDict()
        #: where the weights came from (a ``model_files.ModelSource``); set by ``load_for_inference``
        self.source: Any = None
        #: an export's colour gate by target domain (:mod:`gmdrit_cli.colour_gate`); set by ``load_for_inference``
        self.colour_gate: dict = {}
        #: the JSON record the gate was read from (an ONNX export copies it), or None
        self.colour_gate_record: dict | None = None

    # -- training -------------------------------------------------------------------------------

    @abstractmethod
    def optimizer_groups(self) -> list[OptimizerGroup]:
        """The optimizers the engine builds: one :class:`OptimizerGroup` per optimized network."""

    def phases(self) -> list[Phase]:
        """Training phases, in order (each with its data, optimizers and schedule restart; see
        :class:`~gmdrit_cli.training.engine.Phase`). Empty (the default): one run over ``train.max_iters`` iterations
        with batches drawn as MDMM does; ``train_step`` reads its phase with ``engine.span_at(iteration)``."""
        return []

    def batches_per_step(self) -> int:
        """How many batches one :meth:`train_step` consumes."""
        return 1

    @abstractmethod
    def train_step(self, batches: list[Batch], iteration: int, engine: Engine) -> dict[str, torch.Tensor]:
        """One training iteration with ``engine``'s optimizers and precision; returns detached scalar
        losses by name (no host sync needed)."""

    def extra_state(self, iteration: int, iterations_per_epoch: int) -> dict:
        """Derived scalars recorded in ``state.json`` for people to read (resume recomputes them)."""
        return {}

    def iterations_per_epoch(self, dataset_len: int) -> int:
        return max(1, math.ceil(dataset_len / self.cfg.train.batch_size))

    @abstractmethod
    def sample_grid(self, examples: Batch) -> torch.Tensor:
        """The report's display grid: rows x columns x 3 x S x S in [-1, 1], one row per domain; the
        global RNG untouched and the networks left in training mode."""

    def parameter_counts(self) -> dict[str, int]:
        return {name: sum(p.numel() for p in net.parameters()) for name, net in self.networks.items()}

    # -- test time ------------------------------------------------------------------------------

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this model offers at test time (see :class:`Capabilities`)."""

    def keep_test_time_networks(self) -> None:
        """Drop every network test time does not use (discriminators)."""
        for name in list(self.networks.keys()):
            if name not in self.test_time_networks:
                del self.networks[name]

    def to(self, device: torch.device) -> ModelFamily:
        self.networks.to(device)
        self.device = device
        return self

    def eval_mode(self) -> None:
        """Networks in eval mode (no content noise)."""
        for net in self.networks.values():
            net.eval()

    @abstractmethod
    def encode_content(self, images: torch.Tensor) -> torch.Tensor:
        """Content codes of images N x 3 x S x S (noise-free in eval mode): N x ..., one row per image, whose
        meaning is the family's own (a feature map for the DRIT-style families, the posterior's parameters
        [mu, logvar] N x 2J for the VAE). Shared code only batches the rows (expand, repeat, index) and hands
        them back to :meth:`generate`."""

    @abstractmethod
    def generate(self, content: torch.Tensor, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Images N x 3 x S x S in (-1, 1) from content codes, z N x nz and conditioning N x D."""

    @torch.no_grad()
    def translations_of_draws(self, content: torch.Tensor, z: torch.Tensor, condition: torch.Tensor, batch: int):
        """Every draw applied to every input: content codes of n inputs, draws z M x nz and condition M x D ->
        yields, ``batch`` draws at a time, (m, images m*n x 3 x S x S: draw 0 on each input, then draw 1, ...)."""
        n = content.shape[0]
        for z_part, c_part in zip(z.split(batch), condition.split(batch)):
            m = len(z_part)
            repeated = content.repeat(m, *(1,) * (content.dim() - 1))
            yield m, self.generate(repeated, z_part.repeat_interleave(n, 0), c_part.repeat_interleave(n, 0))

    def generate_for_export(self, content: torch.Tensor, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """:meth:`generate` as a traced graph (ONNX export) can hold it: the same images, without control flow
        that depends on the data (a trace would freeze it). The default is :meth:`generate` itself."""
        return self.generate(content, z, condition)

    @abstractmethod
    def sample_attributes(
        self,
        domain: int,
        n: int,
        component: int | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> Attributes:
        """``n`` random attributes for ``domain`` from the model's prior; ``temperature`` scales the prior's
        standard deviation (1 = the prior itself); ``component`` pins a mixture component of the domain."""

    def draw_attributes(
        self,
        domain: int,
        n: int,
        component: int | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> Attributes:
        """:meth:`sample_attributes` behind the export's colour gate, if it has one for ``domain``: the draws every
        test-time sampler (translate, eval, the app) uses."""
        return gated_draw(
            lambda m: self.sample_attributes(domain, m, component, generator, temperature),
            n,
            self.colour_gate.get(domain),
            lambda z: z.detach().float().cpu().numpy(),
            lambda parts: torch.cat(parts),
        )

    @abstractmethod
    def encode_reference(self, images: torch.Tensor, domains: torch.Tensor | None = None) -> Attributes:
        """The attributes of reference images N x 3 x S x S of ``domains`` (N long)."""

    @abstractmethod
    def attribute_prior(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) N x nz of the attribute prior at conditioning ``condition`` N x D."""

    @torch.no_grad()
    def translate(
        self,
        images: torch.Tensor,
        target: int,
        attributes: Attributes | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Translate images N x 3 x S x S into domain ``target``: N*M x 3 x S x S (composited with the inputs by
        ``model.keep_plain`` when it is above 0).

        ``attributes`` (z, condition) have N*M rows: output ``i*M + j`` is input ``i`` with attribute row
        ``i*M + j``. ``None``: one random attribute of ``target`` per input, drawn with ``generator``.
        """
        if attributes is None:
            attributes = self.draw_attributes(target, images.shape[0], None, generator)
        z, condition = attributes
        n = images.shape[0]
        if z.shape[0] % n:
            raise ValueError(f"{z.shape[0]} attributes for {n} images: give a multiple of the number of images")
        content = self.encode_content(images)
        m = z.shape[0] // n
        if m > 1:  # one input: a broadcast view, as the CLI always did; several: each input's rows together
            content = content.expand(m, *content.shape[1:]) if n == 1 else content.repeat_interleave(m, dim=0)
        out = self.generate(content, z, condition)
        if self.cfg.model.keep_plain > 0:  # test time: the input's plain pixels kept (gmdrit_cli.plain)
            sources = images if n == 1 or m == 1 else images.repeat_interleave(m, dim=0)  # one input broadcasts
            out = keep_plain(sources.to(out.dtype), out, self.cfg.model.keep_plain)
        return out

    def refit_prior(
        self, images: list[torch.Tensor], strength: float = 1.0, method: str = "posterior"
    ) -> tuple[dict[str, torch.Tensor], list[dict]]:
        """Refit the attribute prior after training (an ex-post prior fit, for ``gmdrit export --refit-prior``):
        ``images[d]`` are float N_d x 3 x S x S training images of domain d in [-1, 1]; ``strength`` in (0, 1] is
        the share of the way each parameter moves. ``method``: ``posterior`` moves the means onto the attributes
        the images encode to; ``discriminator`` moves means and spreads onto the draws the run's discriminator
        rates most real on the images' translations (:meth:`refit_networks` names the networks it needs besides
        the test-time ones). Returns the replaced weights (``"network.parameter"`` -> tensor) and one record
        per prior component refitted. A family whose prior is fixed (N(0, I)) has nothing to refit."""
        from ..errors import InferenceError

        raise InferenceError(f"the {self.name} family has no learnt attribute prior to refit")

    def refit_networks(self, method: str) -> tuple[str, ...]:
        """Training networks (discriminators) :meth:`refit_prior` needs for ``method``, loaded from the run's
        checkpoint before it is called; none by default."""
        return ()

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Domain probabilities N x C (``capabilities.classifies_domains``)."""
        raise NotImplementedError(f"{self.name} has no domain classifier")

    def component_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Mixture component probabilities N x K of images (``capabilities.classifies_domains``)."""
        raise NotImplementedError(f"{self.name} has no mixture components")

    # -- helpers --------------------------------------------------------------------------------

    def onehot(self, domains: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(domains, self.cfg.num_domains).float()
