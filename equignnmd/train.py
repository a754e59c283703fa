"""``equignnmd train``: one model-agnostic training loop for every registered architecture.

The paper's recipe (spec §2.3): AdamW (lr 1e-3, weight decay 1e-5), ReduceLROnPlateau on the
validation loss (factor 0.5, patience 5), gradient-norm clip 1.0, a checkpoint every epoch and
the best one by validation loss, fixed seeds for torch / NumPy / ``random``.

Loss. The paper minimises the mean over atoms of ‖r_pred − r_true‖². We train several strides
at once, whose displacements differ 50-fold in size, so each sample's squared error is divided
by the training-split mean square displacement at its stride (``stats.disp_rms``); for a single
stride this is the paper's loss up to a constant (``position_loss: ballistic`` divides by
r + vΔt's mean square error at that stride instead, ``stats.ballistic_rms``). Models that
predict velocities add ``velocity_weight`` × the velocity MSE normalised the same way (by
``stats.dvel_rms``).

Data parallel: launched by ``torchrun --nproc_per_node=N -m equignnmd train …`` the loop wraps
the model in DistributedDataParallel (NCCL on GPUs, gloo on CPU) with a DistributedSampler;
only rank 0 writes files.

Resume: ``last.pt`` holds model, optimiser, scheduler, epoch, best loss and every RNG state;
the shuffling order of epoch e depends only on (seed, e), so on CPU a run interrupted and
resumed ends with the same weights as one run straight through. A run folder that holds
anything is refused unless the run resumes it or overwrites it (:func:`train`).

Time budget (``max_minutes``): checked after every training batch, so a run overshoots it by
at most one batch plus the validation and checkpoint that close the run. The budget ends the
epoch in progress early: that short epoch is validated, stepped by the scheduler, compared
with ``best.pt`` and checkpointed like any other, and its ``metrics.csv`` row says how many of
the epoch's batches it took (``batches`` < ``epoch_batches``). Resume stays exact because a
cut epoch *is* an epoch in every record: ``last.pt`` holds the state after its last batch
(optimiser, scheduler, RNG) and epoch e, so ``--resume`` continues with epoch e + 1, whose
order depends only on (seed, e + 1); the rest of epoch e's order is not made up (the next
epoch is a fresh order of the whole split). Under torchrun every rank stops after the same
batch (a max-reduction of the ranks' "over budget" flags after every batch).

Progress: with ``progress=False`` (``--no-progress``) rank 0 prints one line per epoch
(losses, validation error, time spent and an estimate of the time left) and, in epochs
longer than :data:`PROGRESS_EVERY_S`, a line per that interval (batches done of the epoch's);
with ``progress=True``, tqdm bars instead.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch_geometric.loader import DataLoader

from .checkpoint import energy_head_of, load_checkpoint, read_checkpoint, save_checkpoint
from .config import ConfigError, build, read_yaml
from .data.dataset import PairDataset
from .device import pick_device
from .graph import check_box
from .models import build_model, model_class, model_config
from .models.base import FINE_TUNABLE, SurrogateModel, TrainingStats
from .novelty import dataset_novelty_box
from .onestep import stride_errors
from .outputs import claim_output
from .units import fs_to_ps

METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_pos_mean_A",
    "lr",
    "epoch_time_s",
    "samples_per_s",
    "atoms_per_s",
    "replay_states",
    "replay_s",
    "elapsed_min",
    "batches",
    "epoch_batches",
)
"""``metrics.csv`` columns; ``batches`` is the training batches an epoch took (per rank),
``epoch_batches`` a whole epoch's: fewer when the time budget cut the epoch short."""

RUN_FILES = (
    "best.pt",
    "last.pt",
    "metrics.csv",
    "run.json",
    "validation.md",
    "validation.json",
    "ddp.json",
    "replay",
)
"""What a run writes in its folder: an overwriting run (``overwrite=True``) removes these
first, and leaves anything else there alone."""

PROGRESS_EVERY_S = 60.0
"""Seconds between the in-epoch progress lines printed without a progress bar."""


@dataclass
class SpeciesTransfer:
    """How a fine-tune on another material (:func:`transfer_species`) starts."""

    stats: TrainingStats
    """The new data's statistics: its normalisation and species."""
    sources: dict[int, int] | None
    """Per species of the data, the checkpoint's species its weights are copied from (the
    model's ``expand_species``); ``None``: the weights carry over row for row."""


def _named(z: int) -> str:
    """``29`` → ``"Cu (29)"``."""
    from ase.data import chemical_symbols

    return f"{chemical_symbols[z]} ({z})"


def transfer_species(
    learned: TrainingStats,
    data: TrainingStats,
    source: str,
    arch: str,
    species_map: dict[int, int] | None = None,
) -> SpeciesTransfer | None:
    """How a fine-tune from checkpoint ``source`` starts when its data is another material.

    ``None`` when the checkpoint learned the data's species and no ``species_map`` is given
    (an ordinary fine-tune keeps the checkpoint's statistics). Otherwise the normalisation is
    the new data's (its velocity and displacement scales, its density), the checkpoint's energy
    head, fitted to the other material's reference, is not carried (refit it with
    ``equignnmd energy-head``), and the weights start as follows:

    * as many species, no map: row for row (the checkpoint's i-th species input becomes the
      data's i-th: Al → Cu for two FCC metals), any architecture;
    * more species (or a map, train field ``init_species``, {data species: checkpoint
      species}): an architecture with ``expand_species`` (equivariant) copies every species'
      weights from the mapped species, else from the same element, else (when every species
      of the checkpoint is one of the data's) from the checkpoint's first species: Al → Al,
      Cu → Al for Al–Cu data from an Al checkpoint. Anything else is a ``ConfigError``.
    """
    learned_z, data_z = [int(z) for z in learned.species], [int(z) for z in data.species]
    if learned_z == data_z and not species_map:
        return None
    shown = f"the checkpoint learned species {learned_z}, the data has {data_z}"
    where = f"train field 'init_from' = {source!r}"
    if len(learned_z) == len(data_z) and not species_map:
        warnings.warn(
            f"init_from {source}: {shown}; its weights start the run row for row, with this "
            "data's normalisation, and without its energy head",
            stacklevel=3,
        )
        return SpeciesTransfer(data, None)
    if getattr(model_class(arch), "expand_species", None) is None:
        raise ConfigError(
            f"{where}: {shown}; the {arch!r} architecture maps species row for row only, so "
            "it needs as many species and no 'init_species' (the equivariant architecture "
            "copies a new species' weights from one of the checkpoint's)"
        )
    species_map = {int(k): int(v) for k, v in (species_map or {}).items()}
    unmapped = sorted(set(data_z) - set(learned_z) - set(species_map))
    problems = [
        f"{what} {found}"
        for what, found in (
            ("keys not species of the data:", sorted(set(species_map) - set(data_z))),
            ("values not the checkpoint's:", sorted(set(species_map.values()) - set(learned_z))),
            (
                "new species it does not name:",
                unmapped if not set(learned_z) <= set(data_z) else [],
            ),
        )
        if found
    ]
    if problems:
        raise ConfigError(
            f"train field 'init_species' = {species_map} with {where}: {shown}; "
            f"{'; '.join(problems)}. Expected {{data species: checkpoint species}} (atomic "
            "numbers) naming every species of the data that the checkpoint lacks, unless the "
            f"data has all of the checkpoint's species (then those copy {learned_z[0]})"
        )
    from .models.equivariant import species_sources

    sources = species_sources(learned_z, data_z, species_map)
    copies = "; ".join(f"{_named(z)} from {_named(s)}" for z, s in sources.items())
    warnings.warn(
        f"init_from {source}: {shown}; each species' weights start from one of the "
        f"checkpoint's ({copies}; rescaled for the new species count: with the same "
        "normalisation a box of one species gives the checkpoint's outputs), with this data's "
        "normalisation, and without its energy head",
        stacklevel=3,
    )
    return SpeciesTransfer(data, sources)


@dataclass
class TrainConfig:
    """Trainer settings (the ``train:`` section of a model config file)."""

    data: str = "data/quick"
    """dataset folder"""
    out: str = "runs/train"
    """run folder: checkpoints, metrics.csv"""
    epochs: int = 50
    """training epochs

    Passes over ``samples_per_epoch`` pairs; 0: no optimisation — the model as it is
    initialised from the data (the ``symplectic`` potential's fit), validated and written as
    ``best.pt`` and ``last.pt``."""
    batch_size: int = 4
    """structures per batch"""
    lr: float = 1.0e-3
    """learning rate"""
    weight_decay: float = 1.0e-5
    lr_factor: float = 0.5
    lr_patience: int = 5
    lr_schedule: str = "plateau"
    """``plateau``: halve-on-plateau of the validation loss (``lr_factor``, ``lr_patience``);
    ``cosine``: ``lr × (0.01 + 0.99 · ½(1 + cos π p))`` set at the start of every epoch, p the
    fraction of the run done (training time / ``max_minutes`` when there is a time budget,
    else epoch / ``epochs``), so a budgeted run keeps learning to its end (a noisy validation
    set makes the plateau rule halve the rate early)."""
    grad_clip: float = 1.0
    strides_fs: list[float] = field(default_factory=lambda: [1.0, 2.0, 5.0, 10.0])
    """Δt set, fs, e.g. 5,10,20,50"""
    velocity_weight: float = 1.0
    kinetic_weight: float = 0.0
    """Weight of the per-graph kinetic-energy term of :func:`loss_terms` (0 = off)."""
    position_loss: str = "displacement"
    """What a stride's position error is measured against (:data:`POSITION_LOSS_SCALES`):
    ``displacement``, the training split's RMS displacement at that stride (a relative
    error); ``ballistic``, the RMS error of r + vΔt at that stride, so 1 means "as good as
    r + vΔt" at every stride and the short strides, where the ballistic step is nearly
    exact, weigh as much as the long ones."""
    seed: int = 0
    """random seed"""
    device: str = "auto"
    """cpu, cuda, cuda:1 or auto (CUDA if present)"""
    dtype: str = "float32"
    """model dtype"""
    num_workers: int = 0
    train_fraction: float = 0.8
    start_every_fs: float = 5.0
    """Spacing of start frames (consecutive 1-fs frames are nearly the same sample)."""
    max_train_samples: int = 0
    """Cap the training split with a fixed, evenly spaced subset; 0 = all."""
    max_val_samples: int = 128
    samples_per_epoch: int = 0
    """Draw this many training pairs afresh every epoch (without replacement, seeded by
    (seed, epoch)), so that a long run sees the whole split; 0 = the whole split per epoch."""
    noise_velocity_rel: float = 0.0
    """Training noise on the input velocities: std as a fraction of the training split's RMS
    velocity change over the sample's stride, ``stats.dvel_rms(Δt)`` (× √(T/300 K)); the
    target stays the true velocity at t + Δt. 0 = off. See :func:`perturb_inputs`."""
    init_from: str = ""
    """Start from this checkpoint's weights and statistics (a file or ``pretrained:NAME``;
    fine-tuning): the architecture and hyperparameters are the checkpoint's. "" = from
    scratch."""
    init_species: dict[int, int] = field(default_factory=dict)
    """With ``init_from`` on data of another material: which of the checkpoint's species
    each species of the data starts from, {atomic number: atomic number}, e.g. {29: 13, 40:
    13}; a species left out starts from its own element in the checkpoint, else from the
    checkpoint's first species when the checkpoint's species are all the data's (equivariant
    architecture; :func:`transfer_species`). {} = that default."""
    unroll: int = 1
    """Strides per sample in the loss: K > 1 feeds the model its own outputs K − 1 more times
    and averages the K strides' losses against the true states t + kΔt (back-propagated
    through the whole chain); see :func:`unrolled_loss`."""
    replay_every: int = 0
    """Every this many epochs, roll the model out from training states and add the states it
    visits, labelled by LAMMPS, to the training pairs (:mod:`equignnmd.replay`); 0 = off."""
    replay_origins: int = 4
    """Training states each replay round starts from."""
    replay_steps: int = 8
    """Strides of each replay rollout (every visited state is labelled)."""
    replay_stride_fs: float = 0.0
    """Stride of the replay rollouts, fs (0 = the largest training stride)."""
    replay_max_states: int = 256
    """The replay set keeps the newest this many labelled states."""
    time_reversal: bool = False
    """Add the time-reversed pair (r_t+Δt, −v_t+Δt) → (r_t, −v_t) of every training pair
    (:class:`~equignnmd.data.dataset.PairDataset`); validation stays forward only."""
    max_minutes: float = 0.0
    """Stop when the run's training time (training and validation epochs, summed over
    resumed sessions; setup and the final report excluded) reaches this many minutes, as if
    ``epochs`` had been reached; 0 = no time budget. Checked after every training batch: the
    epoch in progress ends there and is validated and checkpointed as a short epoch (module
    doc). Equal-budget comparisons of configurations (the accuracy–cost frontier) use it."""
    noise_position_rel: float = 0.0
    """Training noise on the input positions: std as a fraction of ``½ dvel_rms(Δt) Δt``, the
    size of a stride's non-ballistic displacement (× √(T/300 K)); the target stays the true
    position at t + Δt. 0 = off."""
    noise_temperature_K: float = 0.0
    """Training noise on the temperature label a temperature-conditioned model reads (std, K;
    the state and targets untouched): narrow label features between the training
    temperatures are otherwise never trained, and a held-out temperature reads them
    untrained. 0 = off; ignored by a model that does not read the label."""

    def validate(self, source: str = "config") -> None:
        if self.epochs < 0:
            raise ConfigError(f"{source}: field 'epochs' must be ≥ 0 (0: no optimisation)")
        if self.batch_size < 1:
            raise ConfigError(f"{source}: field 'batch_size' must be ≥ 1")
        if self.lr <= 0:
            raise ConfigError(f"{source}: field 'lr' must be > 0")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(
                f"{source}: field 'dtype' = {self.dtype!r}; expected float32 or float64"
            )
        if not self.strides_fs or any(s <= 0 for s in self.strides_fs):
            raise ConfigError(f"{source}: field 'strides_fs' must hold positive strides in fs")
        if self.unroll < 1:
            raise ConfigError(f"{source}: field 'unroll' = {self.unroll}; expected ≥ 1")
        if self.position_loss not in POSITION_LOSS_SCALES:
            raise ConfigError(
                f"{source}: field 'position_loss' = {self.position_loss!r}; expected one of "
                f"{sorted(POSITION_LOSS_SCALES)}"
            )
        if self.lr_schedule not in ("plateau", "cosine"):
            raise ConfigError(
                f"{source}: field 'lr_schedule' = {self.lr_schedule!r}; expected plateau or cosine"
            )
        if self.replay_every and (self.replay_origins < 1 or self.replay_steps < 1):
            raise ConfigError(
                f"{source}: fields 'replay_origins', 'replay_steps' must be ≥ 1 with replay_every"
            )
        bad = {
            k: v
            for k, v in self.init_species.items()
            if not all(isinstance(z, int) and 0 < z < 119 for z in (k, v))
        }
        if bad or (self.init_species and not self.init_from):
            raise ConfigError(
                f"{source}: field 'init_species' = {self.init_species}; expected atomic "
                "numbers {data species: checkpoint species}, with init_from"
            )
        for name in (
            "replay_every",
            "replay_max_states",
            "replay_stride_fs",
            "samples_per_epoch",
            "noise_velocity_rel",
            "noise_position_rel",
            "noise_temperature_K",
            "kinetic_weight",
            "max_minutes",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{source}: field '{name}' must be ≥ 0")


@dataclass
class RunSpec:
    """Everything a run needs: architecture, model hyperparameters, trainer settings."""

    arch: str
    model: dict[str, Any]
    train: TrainConfig


def load_run_spec(
    path: str | Path | None,
    arch: str | None = None,
    train_overrides: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
) -> RunSpec:
    """Read ``arch`` / ``model`` / ``train`` from a YAML file, then apply overrides."""
    data = read_yaml(path) if path is not None else {}
    unknown = sorted(set(data) - {"arch", "model", "train"})
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; expected arch, model, train")
    file_arch = data.get("arch")
    if arch and file_arch and arch != file_arch:
        raise ConfigError(f"{path}: field 'arch' is {file_arch!r} but --arch {arch!r} was given")
    arch = arch or file_arch
    if not arch:
        raise ConfigError(f"{path or 'command line'}: no architecture; give --arch")
    model_cfg = dict(data.get("model") or {})
    model_cfg.update(model_overrides or {})
    model_config(arch, model_cfg, f"{path or 'command line'} [model]", consistent=False)
    train_values = dict(data.get("train") or {})
    train_values.update({k: v for k, v in (train_overrides or {}).items() if v is not None})
    train = build(TrainConfig, train_values, f"{path or 'defaults'} [train]")
    return RunSpec(arch, model_cfg, train)


def builtin_train_values(fields: list[str]) -> dict[str, str]:
    """Per :class:`TrainConfig` field, its values in the built-in configs named like an
    architecture of :data:`~equignnmd.models.REGISTRY` (``configs/<arch>.yaml``), archs with
    the same value grouped: ``{"epochs": "equivariant, paper: 50; symplectic: 8"}``."""
    from .config import CONFIG_DIR
    from .models import REGISTRY

    configs = {
        arch: load_run_spec(CONFIG_DIR / f"{arch}.yaml").train
        for arch in sorted(REGISTRY)
        if (CONFIG_DIR / f"{arch}.yaml").exists()
    }

    def text(value) -> str:  # as the command line writes it
        if isinstance(value, (list, tuple)):
            return ",".join(text(v) for v in value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    shown = {}
    for name in fields:
        groups: dict[str, list[str]] = {}
        for arch, cfg in configs.items():
            groups.setdefault(text(getattr(cfg, name)), []).append(arch)
        shown[name] = "; ".join(f"{', '.join(archs)}: {v}" for v, archs in groups.items())
    return shown


# ----------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """RNG states as checkpoint-safe tensors and lists."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "random": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), int(n[2]), int(n[3]), float(n[4])))
    r = state["random"]
    random.setstate((r[0], tuple(r[1]), r[2]))


def stride_scale(dt_fs: torch.Tensor, stats: TrainingStats, key: str) -> torch.Tensor:
    """Per-graph RMS of ``key`` (``disp_rms`` or ``dvel_rms``) at stride ``dt_fs``, (B,): the
    package's one rule, :func:`equignnmd.models.layers.stride_scale`."""
    from .models.layers import stride_scale as rule

    return rule(dt_fs, stats.strides_fs, getattr(stats, key))


POSITION_LOSS_SCALES = {"displacement": "disp_rms", "ballistic": "ballistic_rms"}
"""``position_loss`` → the per-stride statistic (:class:`TrainingStats` field) that divides a
position error in :func:`loss_terms`."""

KINETIC_HUBER = 0.05
"""Relative kinetic-energy error beyond which the kinetic loss term grows linearly."""


def cosine_lr(lr: float, progress: float) -> float:
    """The ``cosine`` schedule of :class:`TrainConfig` at ``progress`` ∈ [0, 1]."""
    p = min(max(float(progress), 0.0), 1.0)
    return lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * p)))


def loss_terms(
    pred,
    batch,
    stats: TrainingStats,
    velocity_weight: float,
    kinetic_weight: float = 0.0,
    position_loss: str = "displacement",
):
    """Normalised position MSE (+ velocity MSE, + kinetic-energy term); (loss, {name: value}).

    The position error at each stride is divided by the statistic ``position_loss`` names
    (:data:`POSITION_LOSS_SCALES`).

    The kinetic term is the squared relative error of each graph's kinetic energy at t + Δt,
    ``((Σ m v_pred² − Σ m v_true²) / Σ m v_true²)²`` (linear beyond ±``KINETIC_HUBER``),
    averaged over graphs. A bias of a few
    per cent in the speed of the predicted velocities barely moves the velocity MSE (it is
    dominated by the force-driven change), yet in a rollout it heats or cools the system by
    that much every stride; this term is what a rollout's temperature feels.
    """
    key = POSITION_LOSS_SCALES[position_loss]
    if not getattr(stats, key):
        raise ValueError(
            f"position_loss {position_loss!r}: the training statistics have no '{key}' (they "
            "predate it); train from the data, not from an older checkpoint's statistics"
        )
    sr = stride_scale(batch.dt_fs, stats, key)[batch.batch].unsqueeze(-1)
    pos = (((pred.displacement - batch.disp) / sr) ** 2).sum(-1).mean() / 3.0
    parts = {"pos": pos}
    loss = pos
    if pred.velocity is not None and velocity_weight > 0:
        sv = stride_scale(batch.dt_fs, stats, "dvel_rms")[batch.batch].unsqueeze(-1)
        vel = (((pred.velocity - batch.vel_next) / sv) ** 2).sum(-1).mean() / 3.0
        parts["vel"] = vel
        loss = loss + velocity_weight * vel
    if pred.velocity is not None and kinetic_weight > 0:
        from torch_geometric.utils import scatter

        def twice_ke(v):
            return scatter(batch.mass * (v * v).sum(-1), batch.batch, dim=0, reduce="sum")

        ke_true = twice_ke(batch.vel_next)
        rel = (twice_ke(pred.velocity) - ke_true) / ke_true.clamp(min=1e-12)
        # Huber: quadratic for the per-cent biases that matter in a rollout, linear beyond
        # KINETIC_HUBER, so that a graph the model gets badly wrong (a 5 K state at a 50 fs
        # stride, say) cannot swamp the batch
        kin = torch.nn.functional.huber_loss(rel, torch.zeros_like(rel), delta=KINETIC_HUBER)
        kin = 2.0 * kin  # huber_loss is ½x² inside delta: make it x², the relative error²
        parts["kinetic"] = kin
        loss = loss + kinetic_weight * kin
    return loss, parts


def unrolled_loss(
    net,
    model,
    batch,
    stats,
    velocity_weight,
    kinetic_weight=0.0,
    unroll=1,
    position_loss="displacement",
):
    """:func:`loss_terms` over ``unroll`` strides fed the model's own outputs; (loss, parts).

    Stride 1 is the usual one-step loss. For stride k > 1 the model starts from its own
    state after k − 1 strides (positions r_t + Σ predicted displacements, its predicted
    velocities) and is scored against the true state at t + kΔt (``batch.disp_unroll``,
    ``batch.vel_unroll``; the displacement target is what is left to reach it), so the loss is
    the error of a K-stride rollout, each stride normalised like a one-step loss; gradients
    flow through the whole chain. The returned loss is the mean over the K strides, ``parts``
    those of the first stride plus ``unrolled`` (the mean over strides 2 … K).
    """
    import copy

    pred = net(batch)
    loss, parts = loss_terms(pred, batch, stats, velocity_weight, kinetic_weight, position_loss)
    if unroll <= 1:
        return loss, parts
    total, later = loss, 0.0
    cum = pred.displacement
    vel = pred.velocity
    for k in range(1, unroll):
        nxt = copy.copy(batch)
        for key in ("edge_index", "shifts", "cutoff", "descriptors"):
            if key in nxt:
                del nxt[key]  # a new state: its own neighbours and descriptors
        nxt.pos = batch.pos + cum
        nxt.vel = (
            vel
            if vel is not None
            else pred.displacement / fs_to_ps(batch.dt_fs)[batch.batch].unsqueeze(-1)
        )
        nxt.disp = batch.disp_unroll[:, k] - cum
        nxt.vel_next = batch.vel_unroll[:, k]
        nxt = model.prepare(nxt)
        pred = net(nxt)
        step_loss, _ = loss_terms(pred, nxt, stats, velocity_weight, kinetic_weight, position_loss)
        total = total + step_loss
        later = later + step_loss.detach()
        cum = cum + pred.displacement
        vel = pred.velocity
    parts["unrolled"] = later / (unroll - 1)
    return total / unroll, parts


def perturb_inputs(
    batch,
    stats: TrainingStats,
    velocity_rel: float,
    position_rel: float,
    generator=None,
    temperature_K: float = 0.0,
):
    """Training-noise injection (in place): the model learns to pull a perturbed state back.

    Autoregressive rollouts feed a model its own slightly wrong outputs; trained on exact
    states only, it has never seen such inputs, and its errors compound (typically as
    heating). Here the input velocities and positions of every graph get Gaussian noise of std
    ``velocity_rel · s_v`` and ``position_rel · ½ s_v Δt``, with ``s_v = stats.dvel_rms`` at the
    graph's stride times √(T/300 K) (thermal amplitudes scale as √T): the noise is the size of
    the errors a model makes over one stride, so short strides get little. The mass-weighted
    mean is removed per graph, so net momentum and the centre of mass are untouched. Targets
    keep the true state at t + Δt: ``disp`` is reduced by the position noise, ``vel_next`` is
    unchanged. ``temperature_K`` > 0 adds Gaussian noise of that std to every graph's label
    (after the state noise, which scales with the true T), kept ≥ 0 K by reflection.
    """
    if velocity_rel > 0 or position_rel > 0:
        _perturb_state(batch, stats, velocity_rel, position_rel, generator)
    if temperature_K > 0:  # after the state noise, which scales with the true T
        label = batch.temperature_K
        jitter = torch.randn(label.shape, generator=generator, dtype=label.dtype)
        batch.temperature_K = (label + temperature_K * jitter.to(label.device)).abs()
    return batch


def _perturb_state(batch, stats, velocity_rel, position_rel, generator) -> None:
    """The position and velocity noise of :func:`perturb_inputs`, in place."""
    from torch_geometric.utils import scatter

    graph = batch.batch
    dt_fs = batch.dt_fs.reshape(-1)
    s_v = stride_scale(dt_fs, stats, "dvel_rms")
    s_v = s_v * torch.sqrt(batch.temperature_K.reshape(-1).clamp(min=0) / 300.0)
    m = batch.mass.unsqueeze(-1)
    total = scatter(batch.mass, graph, dim=0, reduce="sum").unsqueeze(-1)

    def noise(std_per_graph):
        x = torch.randn(batch.pos.shape, generator=generator, dtype=batch.pos.dtype)
        x = x.to(batch.pos.device) * std_per_graph[graph].unsqueeze(-1)
        return x - (scatter(m * x, graph, dim=0, reduce="sum") / total)[graph]

    if velocity_rel > 0:
        batch.vel = batch.vel + noise(velocity_rel * s_v)
    if position_rel > 0:
        dr = noise(position_rel * 0.5 * s_v * fs_to_ps(dt_fs))
        batch.pos = batch.pos + dr
        batch.disp = batch.disp - dr


class _Dist:
    """Process-group facts; a single process when not launched by torchrun."""

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        self.device = device
        if self.enabled and not dist.is_initialized():
            if device.type == "cuda":
                self.device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value: float) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank; a collective: every rank calls it as often."""
        if not self.enabled:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather_objects(self, obj):
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def param_checksum(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum().item() for p in model.parameters()))


# ------------------------------------------------------------------------------ trainer
class Trainer:
    """Trains any :class:`SurrogateModel` on pairs from a dataset folder.

    Args:
        spec: architecture, model hyperparameters and trainer settings; ``spec.train.out`` is
            the run folder.
        resume: continue the run in ``out`` from its ``last.pt``.
        progress: tqdm bars; ``False``: printed lines instead (module doc).
        overwrite: start a new run in an ``out`` that holds files, removing the run's own
            (:data:`RUN_FILES`) once the data and model are set up.

    Raises:
        OutputExistsError: ``out`` holds anything and neither ``resume`` nor ``overwrite`` is
            given; checked first, before the data are read.
    """

    def __init__(
        self, spec: RunSpec, resume: bool = False, progress: bool = True, overwrite: bool = False
    ):
        if resume and overwrite:
            raise ValueError(
                "--resume continues the run in --out and --overwrite replaces it; give one"
            )
        claim_output(
            spec.train.out, overwrite=overwrite, resume=resume, what="run folder", option="--out"
        )
        self.spec = spec
        self.cfg = cfg = spec.train
        self.progress = progress
        self.dist = _Dist(pick_device(cfg.device))
        self.device = self.dist.device
        self.dtype = getattr(torch, cfg.dtype)
        self.out = Path(cfg.out)
        seed_everything(cfg.seed)
        kw = dict(
            train_fraction=cfg.train_fraction,
            start_every_fs=cfg.start_every_fs,
            dtype=self.dtype,
        )
        self.train_set = PairDataset(
            cfg.data,
            cfg.strides_fs,
            "train",
            max_samples=cfg.max_train_samples or None,
            time_reversal=cfg.time_reversal,
            unroll=cfg.unroll,
            **kw,
        )
        self.val_set = PairDataset(
            cfg.data, cfg.strides_fs, "val", max_samples=cfg.max_val_samples or None, **kw
        )
        if len(self.train_set) == 0 or len(self.val_set) == 0:
            raise ValueError(
                f"dataset {cfg.data}: no train or validation pairs at strides {cfg.strides_fs} fs"
            )
        last = self.out / "last.pt"
        self.start_epoch = 0
        self.elapsed_s = 0.0  # training time so far, over resumed sessions (max_minutes)
        self.best = float("inf")
        ckpt, transfer = None, None
        if resume:
            if not last.exists():
                raise FileNotFoundError(f"--resume: no checkpoint {last} to resume from")
            ckpt = read_checkpoint(last)
            stats = TrainingStats.from_dict(ckpt["stats"], f"checkpoint {last} [stats]")
            model_cfg = ckpt["config"]
            changed = sorted(k for k, v in spec.model.items() if model_cfg.get(k, v) != v)
            if changed:
                warnings.warn(
                    f"--resume: model settings {changed} differ from {last}; the checkpoint's "
                    "values are used (a resumed run keeps its architecture)",
                    stacklevel=2,
                )
        elif cfg.init_from:
            start = load_checkpoint(cfg.init_from, device="cpu")
            if start.arch != spec.arch:
                raise ConfigError(
                    f"train field 'init_from' = {cfg.init_from!r}: a {start.arch!r} checkpoint, "
                    f"but the run's architecture is {spec.arch!r}"
                )
            stats, model_cfg = start.stats, dict(start.config)
            transfer = transfer_species(
                start.stats,
                self.train_set.statistics(),
                cfg.init_from,
                spec.arch,
                cfg.init_species,
            )
            if transfer is not None:
                # another material: the weights carried over, this data's normalisation and
                # species
                stats = transfer.stats
                if model_cfg.get("species"):
                    model_cfg["species"] = list(stats.species)
            # switches that leave the parameters as they are may change on fine-tuning
            model_cfg.update({k: v for k, v in spec.model.items() if k in FINE_TUNABLE})
            changed = sorted(k for k, v in spec.model.items() if model_cfg.get(k, v) != v)
            if changed:
                warnings.warn(
                    f"init_from: model settings {changed} differ from {cfg.init_from}; the "
                    "checkpoint's values are used (fine-tuning keeps its architecture)",
                    stacklevel=2,
                )
        else:
            stats = self.train_set.statistics()
            model_cfg = spec.model
        key = POSITION_LOSS_SCALES[cfg.position_loss]
        if not getattr(stats, key):
            source = last if resume else cfg.init_from
            raise ConfigError(
                f"train field 'position_loss' = {cfg.position_loss!r} needs the statistic "
                f"'{key}', which the statistics of {source} predate; train from scratch or "
                "keep position_loss: displacement"
            )
        model = build_model(spec.arch, stats=stats, **model_cfg).to(self.dtype)
        if cfg.epochs == 0 and not (cfg.init_from or hasattr(model, "initialise_from_data")):
            raise ConfigError(
                f"train field 'epochs' = 0: the {spec.arch!r} model would be written with its "
                "random initial weights; expected epochs ≥ 1, or a model that initialises "
                "itself from the data (symplectic), or init_from"
            )
        if ckpt is None and cfg.init_from:
            if transfer is not None and transfer.sources is not None:
                model.expand_species(start, transfer.sources)
            else:
                model.load_state_dict(start.state_dict())
            if transfer is None:
                # the energy head reads positions only: still the checkpoint's energy
                model.attach_energy_head(start.energy_head, start.energy_head_fit)
        elif ckpt is not None and ckpt.get("energy_head") is not None:
            model.attach_energy_head(*energy_head_of(ckpt["energy_head"], f"checkpoint {last}"))
        elif ckpt is None and hasattr(model, "initialise_from_data"):
            # a model with a data-fitted starting point (the symplectic potential)
            model.initialise_from_data(cfg.data)
        for tr in self.train_set.trajectories:
            check_box(tr.read("cell", 0), model.cutoff, where=f"trajectory file {tr.path}")
        # what the model learned: the box of its training split's local densities, so that
        # rollouts warn when a state leaves it (equignnmd.novelty; fitted again on resume,
        # deterministic; a fine-tune gets the box of the data it was tuned on)
        model.novelty_box = dataset_novelty_box(
            cfg.data, model.cutoff, train_fraction=cfg.train_fraction
        )
        self.model: SurrogateModel = model.to(self.device)
        self.net = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.lr0 = float(cfg.lr)
        self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.opt, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience
        )
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            state = ckpt["trainer"]
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.start_epoch = int(state["epoch"]) + 1
            self.elapsed_s = float(state.get("elapsed_s", 0.0))
            self.best = float(state["best_val"])
            before = (state.get("spec") or {}).get("train") or {}
            loss_keys = ("velocity_weight", "kinetic_weight", "strides_fs", "position_loss")
            defaults = TrainConfig()  # a field newer than the checkpoint had its default
            changed = [
                k for k in loss_keys if before.get(k, getattr(defaults, k)) != getattr(cfg, k)
            ]
            if changed:
                # the validation loss is now another function: compare new epochs among
                # themselves, not with the old best
                warnings.warn(
                    f"--resume: {changed} changed, so the loss is redefined: the optimiser's "
                    "moment estimates restart (stale ones send the first steps astray) and "
                    "best.pt will be replaced by the first resumed epoch",
                    stacklevel=2,
                )
                self.best = float("inf")
                self.opt.state.clear()  # learning rate (param_groups) and schedule are kept
            set_rng_state(state["rng"])
        if overwrite:  # every check has passed: the earlier run's files go
            if self.dist.main:
                self._remove_run_files()
            self.dist.gather_objects(None)  # a barrier: no rank sees half-removed files
        self.replay = None
        if cfg.replay_every:
            from .data.reference_md import dataset_reference
            from .replay import ReplaySet

            self.replay = ReplaySet(  # labelled by the data's own reference, LAMMPS or ASE
                self.out / "replay",
                cfg.strides_fs,
                dataset_reference(self.train_set.meta, f"dataset {cfg.data}"),
                cfg.replay_max_states,
            )
        self.data_summary = {
            "train": self.train_set.summary(),
            "val": self.val_set.summary(),
            # the data's reference and crystal, whole (its LAMMPS potential record or ASE
            # calculator, its material): a checkpoint alone then runs its own reference
            # (equignnmd.data.reference_md.dataset_reference_material)
            "dataset_meta": {
                k: self.train_set.meta.get(k)
                for k in (
                    "potential",
                    "potential_sha256",
                    "lammps_potential",
                    "calculator",
                    "material",
                    "lammps_version",
                    "ensemble",
                )
            },
        }

    def _remove_run_files(self) -> None:
        """Remove :data:`RUN_FILES` from the run folder (a stale ``last.pt`` or replay set
        would otherwise leak into the new run)."""
        import shutil

        for name in RUN_FILES:
            path = self.out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()

    # -- data ------------------------------------------------------------------------
    def _loader(self, dataset, epoch: int, shuffle: bool, shard: bool = True) -> DataLoader:
        """Training batches are sharded across ranks; evaluation sees the whole split on
        every rank, so that every rank steps the scheduler with the same loss."""
        sampler = None
        generator = torch.Generator().manual_seed(self.cfg.seed * 1000003 + epoch)
        per_epoch = self.cfg.samples_per_epoch
        if shuffle and 0 < per_epoch < len(dataset):
            pick = torch.randperm(len(dataset), generator=generator)[:per_epoch]
            dataset = torch.utils.data.Subset(dataset, pick.tolist())
        if self.dist.enabled and shard:
            sampler = torch.utils.data.distributed.DistributedSampler(
                dataset, shuffle=shuffle, seed=self.cfg.seed, drop_last=False
            )
            sampler.set_epoch(epoch)
        elif shuffle:
            sampler = torch.utils.data.RandomSampler(dataset, generator=generator)
        return DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.cfg.num_workers,
            persistent_workers=False,
        )

    def training_pairs(self):
        """The training split, with the replay set's pairs when there are any."""
        if self.replay is None:
            return self.train_set
        extra = self.replay.dataset(
            start_every_fs=self.cfg.start_every_fs,
            dtype=self.dtype,
            time_reversal=self.cfg.time_reversal,
            unroll=self.cfg.unroll,
        )
        if extra is None or len(extra) == 0:
            return self.train_set
        return torch.utils.data.ConcatDataset([self.train_set, extra])

    def replay_round(self, epoch: int) -> dict[str, Any]:
        """Add the states the current model visits from ``replay_origins`` training states
        (rank 0 labels them; the others wait): {replay_states, replay_s}."""
        cfg = self.cfg
        t0 = time.time()
        if self.dist.main:
            rng = np.random.default_rng(cfg.seed * 7919 + epoch)
            n = len(self.train_set.index)
            picks = rng.choice(n, size=min(cfg.replay_origins, n), replace=False)
            origins = [self.train_set.raw(int(i)) for i in picks]
            self.replay.add_round(
                self.model,
                origins,
                cfg.replay_stride_fs or max(cfg.strides_fs),
                cfg.replay_steps,
                round_id=epoch,
                seed=cfg.seed + epoch,
            )
        self.dist.gather_objects(None)  # a barrier: every rank reads the same replay set
        return {"replay_states": len(self.replay), "replay_s": time.time() - t0}

    # -- loop ------------------------------------------------------------------------
    def train_epoch(self, epoch: int, deadline: float = math.inf) -> dict[str, Any]:
        """One pass over the epoch's training pairs, or fewer batches: the epoch ends after
        the first batch that finishes past ``deadline`` (a :func:`time.perf_counter` value;
        every rank stops after the same batch). The row has ``batches`` (taken) and
        ``epoch_batches`` (a whole epoch's)."""
        from tqdm.auto import tqdm

        self.net.train()
        loader = self._loader(self.training_pairs(), epoch, shuffle=True)
        total, count, atoms, seen = 0.0, 0, 0, []
        n_batches, done = len(loader), 0
        lines = not self.progress and self.dist.main
        t0 = t_line = time.perf_counter()
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
            unit="batch",
            disable=not (self.progress and self.dist.main),
            leave=False,
        )
        for batch in bar:
            batch = perturb_inputs(
                batch.to(self.device),
                self.model.stats,
                self.cfg.noise_velocity_rel,
                self.cfg.noise_position_rel,
                temperature_K=self.cfg.noise_temperature_K,
            )
            batch = self.model.prepare(batch)
            loss, _ = unrolled_loss(
                self.net,
                self.model,
                batch,
                self.model.stats,
                self.cfg.velocity_weight,
                self.cfg.kinetic_weight,
                self.cfg.unroll,
                self.cfg.position_loss,
            )
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.opt.step()
            total += float(loss.item()) * batch.num_graphs
            count += batch.num_graphs
            atoms += batch.num_nodes
            seen += batch.sample_id.view(-1).tolist()
            done += 1
            now = time.perf_counter()
            bar.set_postfix(
                loss=f"{total / count:.4g}", samples_s=f"{count / max(now - t0, 1e-9):.2f}"
            )
            if lines and now - t_line >= PROGRESS_EVERY_S and done < n_batches:
                t_line = now
                print(
                    f"  epoch {epoch + 1}/{self.cfg.epochs}: batch {done}/{n_batches}, "
                    f"loss {total / count:.4g}, {now - t0:.0f} s",
                    flush=True,
                )
            # deadline is finite on every rank or on none, so every rank joins the collective
            if deadline < math.inf and self.dist.any(now >= deadline) and done < n_batches:
                break
        bar.close()
        elapsed = time.perf_counter() - t0
        return {
            "train_loss": self.dist.mean(total / max(count, 1)),
            "epoch_time_s": elapsed,
            "samples_per_s": count * self.dist.world / elapsed,
            "atoms_per_s": atoms * self.dist.world / elapsed,
            "batches": done,
            "epoch_batches": n_batches,
            "seen": seen,
        }

    @torch.no_grad()
    def evaluate(self, dataset=None, with_baselines: bool = False) -> dict[str, Any]:
        """Validation loss and per-stride mean per-atom position error (Å)."""
        dataset = dataset or self.val_set
        self.model.eval()
        loader = self._loader(dataset, 0, shuffle=False, shard=False)
        acc = {"loss": 0.0, "graphs": 0}

        def add_loss(batch, pred):
            loss, _ = loss_terms(
                pred,
                batch,
                self.model.stats,
                self.cfg.velocity_weight,
                self.cfg.kinetic_weight,
                self.cfg.position_loss,
            )
            acc["loss"] += float(loss.item()) * batch.num_graphs
            acc["graphs"] += batch.num_graphs

        table = stride_errors(self.model, loader, with_baselines, on_batch=add_loss)
        atoms = sum(d["model"]["atoms"] for d in table.values())
        pos_all = sum(d["model"]["pos_mean_A"] * d["model"]["atoms"] for d in table.values())
        return {
            "val_loss": acc["loss"] / max(acc["graphs"], 1),
            "val_pos_mean_A": pos_all / max(atoms, 1),
            "per_stride": table,
        }

    def _trainer_state(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "elapsed_s": self.elapsed_s,
            "best_val": self.best,
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": rng_state(),
            "spec": {"arch": self.spec.arch, "train": asdict(self.cfg)},
        }

    def _truncate_metrics(self, path: Path) -> None:
        """Keep the rows of the epochs ``last.pt`` holds: a run killed after writing an
        epoch's row but before its checkpoint redoes that epoch on resume."""
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= self.start_epoch]
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)

    def run_fraction(self, epoch: int) -> float:
        """Fraction of the run done before ``epoch``: by time with a budget, else by epochs."""
        if self.cfg.max_minutes:
            return self.elapsed_s / (60.0 * self.cfg.max_minutes)
        return epoch / max(self.cfg.epochs, 1)

    def fit(self) -> dict[str, Any]:
        """Train to ``epochs`` or the time budget, then :meth:`final_report` (module doc)."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        budget_s = 60.0 * cfg.max_minutes
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "run.json").write_text(
                json.dumps(
                    {"arch": self.spec.arch, "model": self.model.config, "train": asdict(cfg)},
                    indent=2,
                )
            )
        metrics_path = self.out / "metrics.csv"
        if self.dist.main and metrics_path.exists():
            self._truncate_metrics(metrics_path)
        shards: dict[int, list[list[int]]] = {}
        if cfg.epochs == 0 and self.dist.main and not (self.out / "last.pt").exists():
            # nothing to optimise: the data-initialised model is the result
            save_checkpoint(self.out / "best.pt", self.model, self.data_summary)
            save_checkpoint(
                self.out / "last.pt", self.model, self.data_summary, self._trainer_state(-1)
            )
        bar = tqdm(
            range(self.start_epoch, cfg.epochs),
            desc=f"train {self.spec.arch}",
            unit="epoch",
            disable=not (self.progress and self.dist.main),
            initial=self.start_epoch,
            total=cfg.epochs,
        )
        session = (time.perf_counter(), self.start_epoch)  # for the time-left estimate
        for epoch in bar:
            # spent in an earlier session, or just at the end of the last epoch
            if cfg.max_minutes and self.elapsed_s >= budget_s:
                if self.dist.main:
                    print(
                        f"train: time budget of {cfg.max_minutes:g} min reached after "
                        f"{epoch} epochs ({self.elapsed_s / 60.0:.1f} min); stopping",
                        flush=True,
                    )
                break
            t_epoch = time.perf_counter()
            deadline = t_epoch + budget_s - self.elapsed_s if cfg.max_minutes else math.inf
            if cfg.lr_schedule == "cosine":
                for group in self.opt.param_groups:
                    group["lr"] = cosine_lr(self.lr0, self.run_fraction(epoch))
            replayed = {}
            if self.replay is not None and epoch > 0 and epoch % cfg.replay_every == 0:
                replayed = self.replay_round(epoch)
            row = self.train_epoch(epoch, deadline)
            cut = row["batches"] < row["epoch_batches"]
            row.update(replayed)
            seen = self.dist.gather_objects(row.pop("seen"))
            shards[epoch] = seen
            val = self.evaluate()
            if cfg.lr_schedule == "plateau":
                self.sched.step(val["val_loss"])
            row.update(
                epoch=epoch + 1,
                val_loss=val["val_loss"],
                val_pos_mean_A=val["val_pos_mean_A"],
                lr=self.opt.param_groups[0]["lr"],
            )
            improved = val["val_loss"] < self.best
            self.best = min(self.best, val["val_loss"])
            # every rank stops at the same epoch: the ranks' mean clock decides
            self.elapsed_s += self.dist.mean(time.perf_counter() - t_epoch)
            row["elapsed_min"] = self.elapsed_s / 60.0
            checksums = self.dist.gather_objects(param_checksum(self.model))
            if self.dist.main:
                new = not metrics_path.exists()
                with open(metrics_path, "a", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
                    if new:
                        w.writeheader()
                    w.writerow(row)
                # best before last: a run killed in between resumes from the previous last.pt
                # and redoes this epoch (its metrics row is dropped on resume, see fit())
                if improved:
                    save_checkpoint(self.out / "best.pt", self.model, self.data_summary)
                save_checkpoint(
                    self.out / "last.pt", self.model, self.data_summary, self._trainer_state(epoch)
                )
                if self.dist.enabled:
                    (self.out / "ddp.json").write_text(
                        json.dumps(
                            {
                                "world": self.dist.world,
                                "shards": shards,
                                "param_checksums": checksums,
                            }
                        )
                    )
            bar.set_postfix(
                train=f"{row['train_loss']:.4g}",
                val=f"{val['val_loss']:.4g}",
                samples_s=f"{row['samples_per_s']:.2f}",
            )
            if self.dist.main and not self.progress:
                print(self._epoch_line(row, improved, cut, session), flush=True)
            if cut:  # the budget ran out inside the epoch: checkpointed, so stop here
                if self.dist.main:
                    print(
                        f"train: time budget of {cfg.max_minutes:g} min reached after "
                        f"{epoch + 1} epochs ({self.elapsed_s / 60.0:.1f} min; the last cut "
                        f"after {row['batches']} of its {row['epoch_batches']} batches); "
                        "stopping",
                        flush=True,
                    )
                break
        bar.close()
        final = self.final_report()
        self.dist.close()
        return final

    def _epoch_line(self, row: dict, improved: bool, cut: bool, session: tuple) -> str:
        """``epoch 3/50: train 0.1234, val 0.2345 (0.01234 Å), lr 0.001, 41 s; 2.1 min
        elapsed, ~35 min left``; the time left extrapolates this session's mean epoch time,
        capped by the budget."""
        cfg, epoch = self.cfg, int(row["epoch"])
        per_epoch = (time.perf_counter() - session[0]) / max(epoch - session[1], 1)
        left_s = 0.0 if cut else per_epoch * (cfg.epochs - epoch)
        if cfg.max_minutes:
            left_s = min(left_s, max(60.0 * cfg.max_minutes - self.elapsed_s, 0.0))
        notes = (" (best)" if improved else "") + (
            f" (cut by the time budget after {row['batches']}/{row['epoch_batches']} batches)"
            if cut
            else ""
        )
        return (
            f"epoch {epoch}/{cfg.epochs}: train {row['train_loss']:.4g}, val "
            f"{row['val_loss']:.4g} ({row['val_pos_mean_A']:.4g} Å), lr {row['lr']:.3g}, "
            f"{row['epoch_time_s']:.0f} s{notes}; {self.elapsed_s / 60.0:.1f} min elapsed, "
            f"~{left_s / 60.0:.1f} min left"
        )

    def final_report(self) -> dict[str, Any]:
        """Validation error per stride of the best model beside the three baselines."""
        best = self.out / "best.pt"
        if best.exists():
            self.model.load_state_dict(read_checkpoint(best)["model"])
        result = self.evaluate(with_baselines=True)
        text = format_validation(result["per_stride"], self.spec.arch)
        if self.dist.main:
            (self.out / "validation.md").write_text(text + "\n")
            (self.out / "validation.json").write_text(json.dumps(result, indent=2))
            print(text)
        return result


def format_validation(per_stride: dict, arch: str) -> str:
    """Markdown: mean per-atom position error (Å) per stride, model beside the baselines."""
    lines = [
        f"Validation: mean per-atom position error, Å (velocity error, Å/ps) — {arch}",
        "",
        f"| Δt fs | {arch} | zero displacement | ballistic r+vΔt | 2nd-order Taylor |",
        "|---|---|---|---|---|",
    ]
    for s, d in per_stride.items():
        cells = []
        for name in ("model", "zero", "ballistic", "taylor"):
            if name in d:
                v = d[name]
                vel = "" if np.isnan(v["vel_mean_A_ps"]) else f" ({v['vel_mean_A_ps']:.3f})"
                cells.append(f"{v['pos_mean_A']:.5f}{vel}")
            else:
                cells.append("—")
        lines.append(f"| {float(s):g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def train(
    spec: RunSpec, resume: bool = False, progress: bool = True, overwrite: bool = False
) -> dict[str, Any]:
    """Train ``spec`` into its run folder ``spec.train.out`` (:class:`Trainer`): a folder
    that holds anything is refused (:class:`~equignnmd.outputs.OutputExistsError`, before
    the data are read) unless ``resume`` continues the run there or ``overwrite`` replaces
    it; returns the final validation (:meth:`Trainer.final_report`)."""
    return Trainer(spec, resume=resume, progress=progress, overwrite=overwrite).fit()
