"""The update engine: what every model family's training shares, owned by the trainer.

A family declares its networks and its optimizer groups (:class:`OptimizerGroup`) and computes losses;
the engine owns everything about turning losses into parameter updates:

* one Adam optimizer per declared group, with the group's learning rate, its per-parameter-group
  ``lr_mult`` and whether the learning-rate schedule scales it;
* autocast, fp16 loss scaling, channels-last weights and inputs, ``torch.compile``;
* the gradient and step helpers, including MDMM's two-step update on one forward graph;
* the learning-rate schedule (:func:`lr_multiplier`) and the epoch length the families read;
* training phases (:class:`Phase`, a family's ``phases()``): each with its own data, optimizers and schedule,
  placed one after the other on the iteration axis (:class:`PhaseSpan`);
* its own state for checkpoints (the loss scaler);
* with several processes (:mod:`gmdrit_cli.training.distributed`): the gradient all-reduce, the averaged buffers
  and losses, and the replica check;
* the EMA copy of the test-time networks (``train.ema_beta``).

Gradients are taken with ``torch.autograd.grad`` and set on ``.grad`` by hand (the two-step update
needs two gradients of one graph). DistributedDataParallel does not support that, so a multi-process
run reduces gradients itself: :meth:`Engine.reduce_gradients` is that place (bucketed all-reduces; the
two-step update overlaps the first gradient's all-reduce with the second backward pass).
:meth:`Engine.update_ema` updates the EMA copy once per iteration, after every optimizer step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..families.base import OptimizerGroup, Phase  # noqa: F401  (values of the family contract the engine runs)
from . import shard, speed
from .distributed import PendingAverage, Processes

if TYPE_CHECKING:
    from ..config.schema import Config
    from ..families.base import ModelFamily


def lr_multiplier(policy: str, epoch: int, n_epochs: int, n_epochs_decay: int, gamma: float = 1.0) -> float:
    """Learning-rate factor during 0-based ``epoch``, as MDMM's schedulers (and torch's ExponentialLR).

    lambda: 1 - max(0, epoch - n_epochs_decay) / (n_epochs - n_epochs_decay + 1);
    linear (BicycleGAN, pix2pix: niter = n_epochs_decay, niter_decay = n_epochs - niter, 1-based epoch e = epoch + 1):
    1 - max(0, e - niter) / (niter_decay + 1), so the last epoch runs at lr / (niter_decay + 1), not 0;
    step: x0.1 every ``n_epochs_decay`` epochs; exponential: gamma ** epoch; constant: 1.
    """
    if policy == "lambda":
        return 1.0 - max(0, epoch - n_epochs_decay) / float(n_epochs - n_epochs_decay + 1)
    if policy == "linear":
        return 1.0 - max(0, epoch + 1 - n_epochs_decay) / float(n_epochs - n_epochs_decay + 1)
    if policy == "step":
        return 0.1 ** (epoch // n_epochs_decay)
    if policy == "exponential":
        return gamma**epoch
    return 1.0


@dataclass(frozen=True)
class PhaseSpan:
    """A :class:`Phase` placed on the run's iteration axis: iterations ``start`` to ``end - 1``."""

    index: int
    phase: Phase
    start: int
    iterations_per_epoch: int

    @property
    def end(self) -> int:
        return self.start + self.phase.epochs * self.iterations_per_epoch

    def position(self, iteration: int) -> tuple[int, int]:
        """(epoch inside the phase, batch inside that epoch) of ``iteration``."""
        return divmod(iteration - self.start, self.iterations_per_epoch)


def plan_phases(phases: Sequence[Phase], iterations_per_epoch: Sequence[int]) -> list[PhaseSpan]:
    """The phases one after the other, phase i with epochs of ``iterations_per_epoch[i]`` iterations."""
    spans, start = [], 0
    for i, (phase, ipe) in enumerate(zip(phases, iterations_per_epoch, strict=True)):
        spans.append(PhaseSpan(i, phase, start, max(1, int(ipe))))
        start = spans[-1].end
    return spans


def like_param(grad: torch.Tensor | None, param: torch.Tensor) -> torch.Tensor | None:
    """``grad`` in ``param``'s memory layout. ``autograd.grad`` does not promise it (``.backward()``
    does): a channels-last conv weight can get a contiguous gradient, and CUDA's fused Adam refuses
    tensors of different strides (seen on an H200 with torch 2.11). Same values; a copy only on a mismatch."""
    if grad is None or grad.stride() == param.stride():
        return grad
    return torch.empty_like(param, dtype=grad.dtype).copy_(grad)


class Engine:
    """Optimizers, precision, memory layout and the update steps of one training run of ``family``.

    Building it puts the family's networks in their training layout (channels-last, compiled) and
    builds the optimizers from ``family.optimizer_groups()``. ``iterations_per_epoch`` is the epoch
    length the schedule (and e.g. GM-DRIT's Gumbel temperature) counts in. A family with ``phases()``
    gets them placed on the iteration axis (:attr:`spans`), epochs of ``phase_epoch_lengths[i]``
    iterations in phase i (default: ``iterations_per_epoch`` each; the trainer counts them from the data).
    """

    def __init__(
        self,
        family: ModelFamily,
        iterations_per_epoch: int = 1,
        phase_epoch_lengths: Sequence[int] | None = None,
        processes: Processes | None = None,
    ):
        cfg: Config = family.cfg
        self.cfg = cfg
        self.device = family.device
        self.networks = family.networks
        self.iterations_per_epoch = max(1, int(iterations_per_epoch))
        #: the processes sharing each global batch (one when not under torchrun)
        self.processes = processes or Processes()
        #: this process's rows of every global batch (None: it holds them all)
        self.shard = (
            shard.split_batch(cfg.train.batch_size, self.processes.rank, self.processes.world)
            if self.processes.distributed
            else None
        )
        sp = cfg.speed
        self.amp_dtype, self.amp_reason = speed.amp_choice(sp.amp, self.device)
        self.scaler = speed.LossScaler() if self.amp_dtype == torch.float16 else None
        self.channels_last = speed.channels_last(sp.channels_last, self.device, self.amp_dtype)
        speed.keep_freed_memory(sp.keep_freed_memory, self.device)
        self.tf32 = speed.use_tf32(sp.tf32, self.device)
        self.cudnn_benchmark = speed.use_cudnn_benchmark(sp.cudnn_benchmark, self.device)
        if self.channels_last:
            self.networks.to(memory_format=torch.channels_last)
        if sp.compile:
            # the two-step update takes two gradients of one graph (retain_graph=True), which compiled
            # backwards with donated buffers refuse
            import torch._functorch.config as functorch_config

            functorch_config.donated_buffer = False
            for net in self.networks.values():
                net.compile()  # in place: state_dict keys stay as they are
        o = cfg.optim
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.base_lrs: dict[str, float] = {}
        unscheduled = set()
        # after compile: the groups read parameters by name, and compiling in place keeps the names
        for group in family.optimizer_groups():
            self.base_lrs[group.name] = group.lr
            if not group.scheduled:
                unscheduled.add(group.name)
            groups = [{**g, "lr": group.lr * g.get("lr_mult", 1.0)} for g in group.param_groups]
            self.optimizers[group.name] = torch.optim.Adam(
                groups,
                lr=group.lr,
                betas=(o.beta1, o.beta2),
                weight_decay=o.weight_decay,
                **speed.optimizer_options(sp.optimizer),
            )
        #: optimizers whose learning rate the schedule leaves alone
        self.unscheduled: frozenset[str] = frozenset(unscheduled)
        phases = family.phases()
        #: the family's phases on the iteration axis (empty: one phase-less run, the schedule over all epochs)
        lengths = phase_epoch_lengths or [self.iterations_per_epoch] * len(phases)
        self.spans: list[PhaseSpan] = plan_phases(phases, lengths) if phases else []
        #: the EMA copy of the test-time networks' tensors by checkpoint key ("generator.<name>"), or None
        self.ema: dict[str, torch.Tensor] | None = None
        self._ema_sources: list[tuple[torch.Tensor, torch.Tensor, bool]] = []
        if cfg.train.ema_beta > 0:
            self.reset_ema([n for n in family.test_time_networks if n in self.networks])

    # -- precision and layout -------------------------------------------------------------------

    def autocast(self):
        return speed.autocast(self.device, self.amp_dtype)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        """A batch of images B x 3 x S x S on the training device, in the networks' memory layout."""
        if self.device.type == "cuda" and not images.is_pinned():
            images = images.pin_memory()  # lets the copy below overlap with compute
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    # -- schedule -------------------------------------------------------------------------------

    @property
    def total_iterations(self) -> int | None:
        """Where the last phase ends (None without phases: ``train.max_iters`` alone ends the run)."""
        return self.spans[-1].end if self.spans else None

    def span_at(self, iteration: int) -> PhaseSpan | None:
        """The phase ``iteration`` belongs to (the last one past the end; None without phases)."""
        for span in self.spans:
            if iteration < span.end:
                return span
        return self.spans[-1] if self.spans else None

    def epoch(self, iteration: int) -> int:
        """The epoch of ``iteration``, counted inside its phase when there are phases."""
        span = self.span_at(iteration)
        if span is not None:
            return span.position(iteration)[0]
        return iteration // self.iterations_per_epoch

    def phase_state(self, iteration: int) -> dict | None:
        """Where ``iteration`` is in the phases, for ``state.json`` (None without phases)."""
        span = self.span_at(iteration)
        if span is None:
            return None
        epoch, batch = span.position(iteration)
        return {
            "index": span.index,
            "name": span.phase.name,
            "epoch": epoch,
            "batch": batch,
            "iterations_per_epoch": span.iterations_per_epoch,
            "start": span.start,
            "end": span.end,
        }

    def apply_schedule(self, iteration: int) -> tuple[int, float]:
        """Set the learning rates of ``iteration``'s epoch; return (epoch, factor). At the first iteration of
        a phase its optimizers start fresh (state emptied), as new optimizers would."""
        o = self.cfg.optim
        span = self.span_at(iteration)
        if span is not None and iteration == span.start:
            for name in span.phase.optimizers:
                self.optimizers[name].state.clear()
        epoch = self.epoch(iteration)
        factor = lr_multiplier(o.lr_policy, epoch, o.n_epochs, o.n_epochs_decay, o.lr_gamma)
        self.set_lr_multiplier(factor)
        return epoch, factor

    def set_lr_multiplier(self, factor: float) -> None:
        for name, opt in self.optimizers.items():
            lr = self.base_lrs[name] * (1.0 if name in self.unscheduled else factor)
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_mult", 1.0)

    # -- gradients and steps --------------------------------------------------------------------

    def reduce_gradients(self, grads: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """THE place where gradients are all-reduced across processes (multi-GPU training): every
        gradient of every update passes here (or through :meth:`start_gradient_reduction`), before
        unscaling and before any optimizer step. Each process's loss is its share of the global batch's
        loss (:mod:`gmdrit_cli.training.shard`), so the average over processes is the global gradient. One
        process: returned unchanged."""
        return self.start_gradient_reduction(grads).wait() if self.processes.distributed else grads

    def start_gradient_reduction(self, grads: list[torch.Tensor | None]) -> PendingAverage | _Done:
        """:meth:`reduce_gradients` without waiting: ``.wait()`` gives the reduced list."""
        return self.processes.start_average(grads) if self.processes.distributed else _Done(grads)

    def sharded_step(self):
        """Context of one training step: random draws and batch sums follow this process's shard."""
        return shard.batch_shard(self.shard)

    # -- EMA ------------------------------------------------------------------------------------

    def reset_ema(self, names: Sequence[str]) -> None:
        """Start the EMA copy of networks ``names`` from their current tensors."""
        self.ema, self._ema_sources = {}, []
        for name in names:
            params = {id(p) for p in self.networks[name].parameters()}
            for key, value in self.networks[name].state_dict(keep_vars=True).items():
                copy = value.detach().clone()
                self.ema[f"{name}.{key}"] = copy
                self._ema_sources.append((copy, value, id(value) in params and value.is_floating_point()))

    @torch.no_grad()
    def update_ema(self) -> None:
        """THE place where the EMA copy of the test-time networks is updated, once per training iteration
        after every optimizer step: ``ema = beta * ema + (1 - beta) * weight`` for every parameter
        (``beta = train.ema_beta``), buffers (e.g. running statistics) copied as they are."""
        if self.ema is None:
            return
        weight = 1.0 - self.cfg.train.ema_beta
        averaged = [(e, v) for e, v, is_param in self._ema_sources if is_param]
        if averaged:
            emas, values = zip(*averaged)
            torch._foreach_lerp_(list(emas), list(values), weight)  # ema + w * (value - ema)
        for ema, value, is_param in self._ema_sources:
            if not is_param:
                ema.copy_(value)

    # -- several processes ----------------------------------------------------------------------

    @torch.no_grad()
    def sync_buffers(self) -> None:
        """Average every floating-point buffer over the processes (running statistics that each process
        updated from its own rows); parameters need nothing: their gradients were averaged."""
        if not self.processes.distributed:
            return
        buffers = [b for net in self.networks.values() for b in net.buffers() if b.is_floating_point()]
        for buffer, averaged in zip(buffers, self.processes.average(list(buffers))):
            buffer.copy_(averaged)

    def mean_losses(self, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        """The losses of the global batch as floats: each process's losses averaged over the processes
        (each is its share's part of the global loss). The loop's only host sync."""
        if not self.processes.distributed:
            return {k: float(v) for k, v in losses.items()}
        names = list(losses)  # the same order on every process: the same code made the dict
        stacked = torch.stack([losses[k].detach().float().to(self.device) for k in names])
        return dict(zip(names, self.processes.average([stacked])[0].tolist()))

    def check_replicas(self, iteration: int) -> None:
        """Raise if the weights or optimizer states differ between processes (a checksum comparison)."""
        named = {
            f"weights.{k}": v
            for name, net in self.networks.items()
            for k, v in ((f"{name}.{k}", v) for k, v in net.state_dict().items())
        }
        for name, opt in self.optimizers.items():
            for i, state in enumerate(opt.state.values()):
                named.update({f"optimizer.{name}.{i}.{k}": v for k, v in state.items() if torch.is_tensor(v)})
        self.processes.check_identical(named, iteration)

    # -- gradients and steps --------------------------------------------------------------------

    def grads(self, loss: torch.Tensor, params: Sequence[nn.Parameter], retain_graph: bool = False):
        """Gradients of ``loss`` w.r.t. ``params`` (None for unused ones), reduced across processes and
        loss-scaled under fp16; None where the update must be skipped (fp16 overflow)."""
        return self._finish_grads(self._start_grads(loss, params, retain_graph))

    def _start_grads(self, loss: torch.Tensor, params: Sequence[nn.Parameter], retain_graph: bool):
        scaled = loss if self.scaler is None else loss * self.scaler.scale
        grads = list(torch.autograd.grad(scaled, params, retain_graph=retain_graph, allow_unused=True))
        return self.start_gradient_reduction(grads)

    def _finish_grads(self, pending):
        grads = pending.wait()
        if self.scaler is None:
            return grads
        return grads if self.scaler.unscale(grads) else None

    def step(self, names: Sequence[str], grads: dict[nn.Parameter, torch.Tensor | None]) -> None:
        """One optimizer step of each network in ``names`` with the gradients ``grads`` (by parameter)."""
        for name in names:
            for p in self.networks[name].parameters():
                p.grad = like_param(grads.get(p), p)
            self.optimizers[name].step()
            for p in self.networks[name].parameters():
                p.grad = None  # leave no stale gradients behind

    def update(self, name: str, loss: torch.Tensor) -> None:
        """Gradient of ``loss`` for network ``name`` and one step of its optimizer."""
        params = list(self.networks[name].parameters())
        grads = self.grads(loss, params)
        if grads is not None:
            self.step((name,), dict(zip(params, grads)))

    def joint_update(self, names: Sequence[str], loss: torch.Tensor) -> None:
        """One gradient of ``loss`` for all networks ``names`` together and one step of each's optimizer
        (parameters the loss does not reach get no gradient, so Adam leaves them alone; BicycleGAN's E/G update,
        where the family keeps a term off a network's graph)."""
        params = [p for n in names for p in self.networks[n].parameters()]
        grads = self.grads(loss, params)
        if grads is not None:
            self.step(names, dict(zip(params, grads)))
            if self.scaler is not None:
                self.scaler.update()

    def clipped_update(self, name: str, loss: torch.Tensor, max_norm: float) -> None:
        """:meth:`update` with the gradient norm of network ``name`` clipped to ``max_norm`` first."""
        params = list(self.networks[name].parameters())
        grads = self.grads(loss, params)
        if grads is not None:
            for p, g in zip(params, grads):
                p.grad = like_param(g, p)
            nn.utils.clip_grad_norm_(params, max_norm)
            self.optimizers[name].step()
            for p in params:
                p.grad = None

    def two_step_update(
        self, first: tuple[Sequence[str], torch.Tensor], second: tuple[Sequence[str], torch.Tensor]
    ) -> None:
        """Two updates from one forward graph (MDMM's E/G update; docs/mdmm.md, differences).

        ``first`` and ``second`` are (network names, loss). Both gradients are taken before any step
        (the graph is kept for the second); then the first networks step with the first gradient and the
        second networks with the second. A fp16 overflow in either skips both.
        """
        names1, loss1 = first
        names2, loss2 = second
        params1 = [p for n in names1 for p in self.networks[n].parameters()]
        params2 = [p for n in names2 for p in self.networks[n].parameters()]
        if self.processes.distributed:  # the first gradient's all-reduce runs during the second backward
            pending1 = self._start_grads(loss1, params1, retain_graph=True)
            grads2 = self._finish_grads(self._start_grads(loss2, params2, False))
            grads1 = self._finish_grads(pending1)
        else:
            grads1 = self.grads(loss1, params1, retain_graph=True)
            grads2 = self.grads(loss2, params2)
        if grads1 is not None and grads2 is not None:
            self.step(names1, dict(zip(params1, grads1)))
            self.step(names2, dict(zip(params2, grads2)))
            if self.scaler is not None:
                self.scaler.update()

    # -- checkpoints ----------------------------------------------------------------------------

    def ema_tensors(self) -> dict[str, torch.Tensor]:
        """The EMA copy for ``model.safetensors``, keys ``ema.<network>.<name>`` (empty without EMA)."""
        return {f"ema.{k}": v.detach().cpu().contiguous() for k, v in (self.ema or {}).items()}

    def load_ema_tensors(self, tensors: dict[str, torch.Tensor]) -> bool:
        """Load the EMA copy from ``ema.*`` tensors; when there are none (a run that kept no copy so far)
        restart the copy from the networks' current (just loaded) weights and return False."""
        if self.ema is None:
            return True
        found = {k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")}
        if not found:
            with torch.no_grad():
                for ema, value, _ in self._ema_sources:
                    ema.copy_(value)
            return False
        missing = sorted(set(self.ema) - set(found))
        if missing:
            from ..errors import CheckpointError

            raise CheckpointError(f"the checkpoint's EMA copy lacks {missing[0]} ({len(missing)} tensors)")
        with torch.no_grad():
            for key, value in self.ema.items():
                value.copy_(found[key])
        return True

    def state_dict(self) -> dict:
        """The engine's own scalars for ``state.json`` (optimizer tensors go to ``optim.safetensors``)."""
        return {"loss_scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and "loss_scaler" in state:
            self.scaler.load_state_dict(state["loss_scaler"])


class _Done:
    """A reduction that needed no communication (one process): ``wait`` returns the gradients."""

    def __init__(self, grads: list[torch.Tensor | None]):
        self.grads = grads

    def wait(self) -> list[torch.Tensor | None]:
        return self.grads
