"""The rollout loop: first state → stages every stride → guard → observers; and its result.

:class:`Rollout` puts the parts together from a :class:`~equignnmd.rollout.config.
RolloutConfig`: :func:`~equignnmd.rollout.state.init_state`, the stages
(:func:`~equignnmd.rollout.stages.standard_stages` unless given), a
:class:`~equignnmd.rollout.guard.StabilityGuard` and, with ``out_dir``, a
:class:`~equignnmd.rollout.reporter.RolloutReporter` attached as the first observer.
:func:`run_rollout` is the one-call form.

**Speed** (one definition, used by the summary of ``equignnmd rollout``, its progress bar,
``thermo.csv``'s ``wall_s``/``ns_per_day`` and :class:`RolloutResult`): strides completed by
the rollout loop divided by the wall seconds spent in that loop, cumulative from the first
stride of the first :meth:`Rollout.run` (setup excluded: reading the structure, loading the
model, building the stages, writing step 0); ``ns/day`` is that rate × the stride,
``steps/s × stride_fs × 86400 / 10⁶``, per replica (R replicas advance together). A resumed
run counts from the step it resumed at.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..outputs import claim_output
from ..potential import make_energy_source
from ..units import fs_to_ps, ns_per_day
from .config import RolloutConfig
from .guard import NoveltyWarning, RolloutStopped, RolloutUnstable, StabilityGuard
from .reporter import RolloutReporter, RolloutRestart, read_restart
from .stages import (
    ENERGY_THERMO,
    EnergyRescale,
    NoveltyMonitor,
    Stage,
    Thermostat,
    energy_thermo,
    finite_difference,
    init_stages,
    model_temperature,
    standard_stages,
    step,
    thermostat_of,
)
from .state import RolloutState, init_state

__all__ = [
    "RecordedRun",
    "Rollout",
    "RolloutResult",
    "check_same_settings",
    "init_run",
    "make_stages",
    "record_rollout",
    "run_settings",
    "run_rollout",
]


@dataclass
class RolloutResult:
    """Per-step thermo arrays (rows: step 0 … last step; columns: replicas) and how it ended."""

    step: np.ndarray
    time_ps: np.ndarray
    temperature_K: np.ndarray
    kinetic_energy_eV: np.ndarray
    momentum_amu_A_per_ps: np.ndarray
    min_distance_A: np.ndarray
    wall_s: np.ndarray
    stopped_reason: str | None
    stopped_step: int | None = None
    stopped_replica: int | None = None
    finite_difference_velocities: bool = False
    final_state: RolloutState | None = None
    files: dict = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.stopped_reason is None

    @property
    def steps_per_s(self) -> float:
        """Strides per wall second of the rollout loop, cumulative (module doc, "Speed");
        NaN when no stride was completed."""
        n = int(self.step[-1] - self.step[0]) if len(self.step) else 0
        return n / self.wall_s[-1] if n > 0 and self.wall_s[-1] > 0 else float("nan")

    @property
    def ns_per_day(self) -> float:
        """Simulated ns per day of wall time, per replica: :attr:`steps_per_s` × stride (R
        replicas advance together); NaN when no stride was completed."""
        if len(self.step) < 2 or self.wall_s[-1] <= 0:
            return float("nan")
        return ns_per_day(self.time_ps[-1] - self.time_ps[0], self.wall_s[-1])


def _model_fingerprint(model) -> str:
    """SHA-256 (first 16 hex digits) of the model's weights and buffers, in order."""
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        if isinstance(tensor, torch.Tensor):
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def run_settings(model, config: RolloutConfig, state: RolloutState, stages) -> dict:
    """What a resumed run must share with the run it continues (``steps`` may differ): the
    model's weights, the stride, the stages (thermostat, energy), the replicas and their
    atoms, the seed and the outputs."""
    thermostat = thermostat_of(stages)
    energy = next((s for s in stages if isinstance(s, EnergyRescale)), None)
    return {
        "model": _model_fingerprint(model),
        "model_dtype": str(model.dtype).replace("torch.", ""),
        "dt_fs": float(config.dt_fs),
        "thermostat": thermostat.description if thermostat else "none",
        "stages": [type(s).__name__ for s in stages],
        "energy": energy.description if energy is not None else None,
        "replicas": state.n_replicas,
        "species": torch.bincount(state.species).tolist(),
        "seed": config.seed,
        "remove_momentum": config.remove_momentum,
        "fmt": config.fmt,
        "write_every": config.write_every,
        "thermo_every": config.thermo_interval,
        "neighbour_skin_A": config.neighbour_skin_A,
    }


def check_same_settings(restart: RolloutRestart, settings: dict) -> None:
    """A ``ValueError`` naming every setting in which a resumed run differs from the run."""
    differ = [
        f"{key}: {restart.settings.get(key)!r} in the run, {value!r} now"
        for key, value in settings.items()
        if restart.settings.get(key) != value
    ]
    if differ:
        raise ValueError(
            f"cannot resume from {restart.path}: the settings differ ({'; '.join(differ)}); "
            "expected the model and settings of the run being resumed (only the number of "
            "steps may change), or start anew with --overwrite"
        )


def _model_species(model) -> list[int] | None:
    """The atomic numbers ``model`` was trained on (``model.stats.species``), if it says."""
    species = getattr(getattr(model, "stats", None), "species", None)
    return None if species is None else [int(z) for z in species]


def init_run(
    model,
    structures,
    config: RolloutConfig,
    stages: Sequence[Stage] | None = None,
    names: Sequence[str] | None = None,
    energy_source=None,
) -> tuple[RolloutState, list[Stage]]:
    """A run's first state and its stages, ready to :func:`~equignnmd.rollout.stages.step`.

    :func:`init_state` from ``structures`` with the config's velocities, replicas and seed (on
    the model's device; every structure checked by :func:`~equignnmd.rollout.state.
    check_structures` against the model's cutoff and species before anything else happens;
    ``names`` as there); ``stages``
    default to the config's standard ones (its thermostat, momentum removal, the model's
    label, an :class:`EnergyRescale` from ``energy_source`` — a source of
    :mod:`equignnmd.potential`, an ASE calculator — or else from ``config.energy``); every
    stage's ``init`` has run on the state.
    """
    state = init_state(
        structures,
        config.temperature_K,
        replicas=config.replicas,
        seed=config.seed,
        device=model.device,
        remove_momentum=config.remove_momentum,
        resample_velocities=config.resample_velocities,
        cutoff_A=model.cutoff,
        names=names,
        species=_model_species(model),
        min_distance_A=config.min_distance_A,
    )
    stages = make_stages(model, config, stages, energy_source)
    return init_stages(stages, state), stages


def make_stages(
    model, config: RolloutConfig, stages: Sequence[Stage] | None = None, energy_source=None
) -> list[Stage]:
    """The stages of a run (``stages`` as given, else the config's standard ones: see
    :func:`init_run`), before their ``init`` (a resumed run has their state already)."""
    if stages is not None:
        return list(stages)
    source = make_energy_source(
        energy_source if energy_source is not None else config.energy, model=model
    )
    energy = None if source is None else EnergyRescale(source, config.energy_rescale)
    split = config.split or (energy_source is not None and config.split_thermostat is None)
    thermostat = Thermostat.make(
        config.thermostat_kind,
        config.set_point_K,
        config.dt_fs,
        tau_fs=config.tau_fs,
        friction_per_ps=config.friction_per_ps,
        fraction=0.5 if split else 1.0,
    )
    box = getattr(model, "novelty_box", None) if config.novelty else None
    return standard_stages(
        thermostat,
        config.remove_momentum,
        config.set_point_K,
        energy=energy,
        split=split,
        skin_A=config.neighbour_skin_A,
        novelty=None if box is None else NoveltyMonitor(box),
    )


def _config(config, settings: dict) -> RolloutConfig:
    if isinstance(config, RolloutConfig):
        if not settings:
            config.validate()
            return config
        return RolloutConfig.of(**{**dataclasses.asdict(config), **settings})
    if config is not None:
        settings = {"dt_fs": config, **settings}
    return RolloutConfig.of(**settings)


class Rollout:
    """An autoregressive rollout of ``model`` for one or several structures × replicas.

    Args:
        model: a :class:`~equignnmd.models.base.SurrogateModel` (eval mode is set).
        structures: what :func:`~equignnmd.rollout.state.init_state` takes (``ase.Atoms``, a
            path, a list, or a :class:`RolloutState` of arrays).
        config: a :class:`RolloutConfig`, or the stride in fs with the other settings as
            keywords (``Rollout(model, atoms, 2.0, temperature_K=300)``); keywords given with
            a config override its fields. Checked before anything is read or written.
        observers: callables ``fn(state, thermo)``, or ``(fn, interval)``; see :meth:`attach`.
        stages: the step's stages (default :func:`~equignnmd.rollout.stages.standard_stages`
            for the config); they must include a ``ModelStep``.
        energy_source: the potential energy of the states (:mod:`equignnmd.potential`: a source,
            an ASE calculator or an EAM file), in place of ``config.energy``.
        names: how errors name each structure (default "structure k (file PATH)").

    Before ``out_dir`` or any file in it is created: a non-empty ``out_dir`` is refused
    unless ``config.overwrite`` or ``config.resume`` (:func:`equignnmd.outputs.claim_output`);
    the structures are read and checked (:func:`~equignnmd.rollout.state.check_structures`:
    species the model knows, finite positions and velocities, box ≥ 2 × ``model.cutoff``, no
    pair closer than ``config.min_distance_A``), and the first state must pass the stability
    guard (a start hotter than ``max_temperature_factor`` × the set point, or, in NVE, × the
    hottest temperature the model was trained at, is a ``ValueError``).

    With ``config.resume`` the run continues from ``out_dir``'s restart file
    (:func:`~equignnmd.rollout.reporter.read_restart`; ``structures`` is not read and may be
    None): state, step, random streams, the stages' state and the Verlet list as they were,
    the files cut back to that step and appended to, so the result equals a run that was
    never stopped. The settings and the model must be those of the run (``steps`` may grow);
    a ``ValueError`` names what differs.
    """

    def __init__(
        self,
        model,
        structures,
        config: RolloutConfig | float | None = None,
        *,
        observers: Sequence = (),
        stages: Sequence[Stage] | None = None,
        energy_source=None,
        names: Sequence[str] | None = None,
        **settings,
    ):
        self.config = cfg = _config(config, settings)
        self.model = model.eval()
        self.dt_fs = float(cfg.dt_fs)
        if cfg.out_dir is not None:
            claim_output(cfg.out_dir, overwrite=cfg.overwrite, resume=cfg.resume, option="out_dir")
        restart = read_restart(cfg.out_dir, device=model.device) if cfg.resume else None
        if restart is not None:
            self.state = restart.state
            self.stages = make_stages(model, cfg, stages, energy_source)
        else:
            # structures read and checked (species, finite values, box) before any file opens
            self.state, self.stages = init_run(
                model, structures, cfg, stages, names=names, energy_source=energy_source
            )
        self.energy = next((s for s in self.stages if isinstance(s, EnergyRescale)), None)
        self._novelty = any(isinstance(s, NoveltyMonitor) for s in self.stages)
        self.thermostat = thermostat_of(self.stages)
        self.model_temperature = model_temperature(self.state)
        self.guard = StabilityGuard.for_run(
            self.model_temperature,
            min_distance_A=cfg.min_distance_A,
            max_temperature_factor=cfg.max_temperature_factor,
            min_temperature_factor=cfg.min_temperature_factor,
        )
        self.finite_difference = not bool(getattr(model, "predicts_velocity", True))
        self.settings = self.restart_settings()
        if restart is not None:
            check_same_settings(restart, self.settings)
        else:
            self._check_start(names)
        self.observers: list[tuple[Callable, int]] = []
        self.reporter = None
        if cfg.out_dir is not None:
            self.reporter = RolloutReporter(
                cfg.out_dir,
                self.state.n_replicas,
                fmt=cfg.fmt,
                write_every=cfg.write_every,
                thermo_every=cfg.thermo_interval,
                metadata=self.metadata(),
                extra_columns=(ENERGY_THERMO if self.energy is not None else ())
                + (("novelty_fraction",) if self._novelty else ()),
                restart_every=cfg.restart_interval,
                settings=self.settings,
                resume=restart,
            )
            self.attach(self.reporter)
        for obs in observers:
            self.attach(*(obs if isinstance(obs, tuple) else (obs,)))
        self.files = self.reporter.files if self.reporter is not None else {}
        self.out_dir = Path(cfg.out_dir) if cfg.out_dir is not None else None
        self._rows: list[tuple] = []
        self._wall_offset = 0.0
        self._resumed = restart is not None
        self._warned = False  # the novelty warning comes once a run
        self.stopped: tuple | None = None

    def restart_settings(self) -> dict:
        """What a resumed run must share with the run it continues (:func:`run_settings`)."""
        return run_settings(self.model, self.config, self.state, self.stages)

    def _check_start(self, names: Sequence[str] | None) -> None:
        """The guard on the first state, before any file exists (the reporter would otherwise
        write a run that stops at step 0); in NVE the label is the start's own temperature,
        so a start far hotter than anything the model was trained at is refused as well."""
        thermo, problem = self.guard.check(self.state)
        temps = thermo["temperature_K"]
        factor = self.config.max_temperature_factor
        trained = getattr(getattr(self.model, "stats", None), "temperature_range_K", None)
        if problem is None and factor is not None and trained is not None and not self.config.nvt:
            hottest = float(max(trained))
            hot = np.nonzero(temps > factor * hottest)[0]
            if len(hot):
                problem = (
                    int(hot[0]),
                    f"temperature {temps[hot[0]]:.1f} K exceeds max_temperature_factor "
                    f"{factor:g} × {hottest:g} K, the hottest temperature the model was "
                    "trained at",
                )
        if problem is None:
            return
        replica, cause = problem
        copies = self.config.replicas
        name = names[replica // copies] if names else f"structure {replica // copies}"
        raise ValueError(
            f"{name}: field 'velocities' fails the stability guard at step 0 (replica "
            f"{replica}: {cause}); expected a start the model can run from. Velocities in "
            "the file are read in ASE units (extxyz, ASE) or Å/ps (LAMMPS metal): check their "
            "units, or leave them out to draw Maxwell–Boltzmann velocities at the set point "
            "(--temperature; resample_velocities in the API). Nothing was written"
        )

    def attach(self, function: Callable, interval: int = 1) -> None:
        """Call ``function(state, thermo)`` at step 0, every ``interval`` steps, and at the
        state the guard stopped at; ``thermo`` holds ``step``, ``time_fs``, ``time_ps``,
        ``wall_s`` (wall seconds in the rollout loop so far), ``ns_per_day`` (cumulative; both
        as the module doc's "Speed" defines), ``unstable`` (the guard's cause or None) and the
        per-replica arrays temperature_K, kinetic_energy_eV, momentum_amu_A_per_ps,
        min_distance_A (and, with an energy stage, potential_energy_eV, total_energy_eV,
        thermostat_work_eV, energy_clamped)."""
        self.observers.append((function, int(interval)))

    def metadata(self) -> dict:
        """What ``rollout.json`` says about the settings."""
        cfg = self.config
        return {
            "arch": getattr(self.model, "arch", type(self.model).__name__),
            "model_dtype": str(self.model.dtype).replace("torch.", ""),
            "dt_fs": self.dt_fs,
            "thermostat": self.thermostat.description if self.thermostat else cfg.thermostat,
            "stages": [type(s).__name__ for s in self.stages],
            "energy": self.energy.description if self.energy is not None else None,
            "model_temperature_K": self.model_temperature.detach().cpu().tolist(),
            "replicas": self.state.n_replicas,
            "atoms_per_replica": torch.bincount(self.state.batch).tolist(),
            "seed": cfg.seed,
            "remove_momentum": cfg.remove_momentum,
            "maxwell_boltzmann_initialised_replicas": self.state.info[
                "init"
            ].maxwell_boltzmann_replicas,
            "velocities": "finite differences disp/dt (model predicts positions only)"
            if self.finite_difference
            else "predicted by the model",
            "min_distance_A": cfg.min_distance_A,
            "max_temperature_factor": cfg.max_temperature_factor,
            "min_temperature_factor": cfg.min_temperature_factor,
        }

    # ------------------------------------------------------------------ running
    def run(self, steps: int | None = None) -> RolloutResult:
        """Advance ``steps`` strides (default ``config.steps``; for a resumed run, what is
        left of them), continuing from the current state; stops early (or raises) when the
        guard fires. The files get a restart at the end."""
        from tqdm.auto import tqdm

        state = self.state
        if steps is None:
            steps = self.config.steps - (state.step if self._resumed else 0)
        steps = max(int(steps), 0)
        if self.stopped is not None:
            raise RuntimeError(f"this rollout already stopped: {self.stopped[3]}")
        start_step = state.step
        if not self._rows:
            thermo, problem = self._check(state)
            self._record(state, thermo, 0.0)
            if problem is not None:
                return self._stop(state, problem, thermo)
            if not self._resumed:  # a resumed run's files hold this step already
                self._notify(state, thermo, 0.0, 0.0)
        first_step = self._rows[0][0]
        # tqdm's own rate (a moving average) would disagree with the summary: the bar shows
        # the rate of the module doc ("Speed") in its postfix instead
        bar = tqdm(
            total=steps,
            disable=not self.config.progress,
            unit="step",
            dynamic_ncols=True,
            smoothing=0,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
        )
        problem = None
        t0 = time.perf_counter()  # the loop's clock starts here: setup and step 0 excluded
        try:
            with torch.inference_mode():
                for _ in range(steps):
                    state = step(self.model, state, self.dt_fs, self.stages)
                    fd = finite_difference(state)
                    if fd and not self.finite_difference:
                        self.finite_difference = True
                        if self.reporter is not None:
                            self.reporter.update(**self.metadata())
                    if fd and state.step == start_step + 1:
                        warnings.warn(
                            "model predicts displacements only: velocities are finite "
                            "differences disp/dt",
                            stacklevel=2,
                        )
                    thermo, problem = self._check(state)
                    wall = self._wall_offset + time.perf_counter() - t0
                    strides = state.step - first_step
                    ns_day = ns_per_day(fs_to_ps(strides * self.dt_fs), wall)
                    self._record(state, thermo, wall)
                    self.state = state
                    if problem is not None:
                        break
                    self._notify(state, thermo, wall, ns_day)
                    if state.step % self.config.thermo_interval == 0 or bar.n == 0:
                        speed = {
                            "steps/s": f"{strides / wall if wall > 0 else 0.0:.3g}",
                            "ns/day": f"{ns_day:.3g}",
                            "T": f"{float(np.mean(thermo['temperature_K'])):.0f}K",
                        }
                        bar.set_postfix(speed, refresh=False)
                    bar.update(1)
        finally:
            bar.close()
            self._wall_offset += time.perf_counter() - t0
        if problem is not None:
            return self._stop(state, problem, thermo, ns_day, wall)
        if self.reporter is not None:
            self.reporter.checkpoint(state)
            self.reporter.update(stopped_reason=None, steps_done=state.step)
        return self.result()

    def _check(self, state):
        """The guard's thermo and verdict, with the energy and novelty stages' fields when
        there are such stages; atoms outside the model's training box warn once (or stop,
        with ``novelty_stop``) when a replica's fraction passes ``novelty_threshold``."""
        thermo, problem = self.guard.check(state)
        thermo.update(energy_thermo(state))
        record = state.info.get(NoveltyMonitor.name)
        if record is None:
            return thermo, problem
        thermo["novelty_fraction"] = fraction = record.fraction.cpu().numpy()
        over = np.nonzero(fraction > self.config.novelty_threshold)[0]
        if problem is None and len(over) and (self.config.novelty_stop or not self._warned):
            message = self._novelty_message(state, record, int(over[0]))
            if self.config.novelty_stop:
                return thermo, (int(over[0]), message)
            self._warned = True
            warnings.warn(message, NoveltyWarning, stacklevel=3)
        return thermo, problem

    def _novelty_message(self, state, record, r: int) -> str:
        """Which atoms of replica ``r`` left the training box, where, and what that means."""
        s = state.replica_slice(r)
        atoms = torch.nonzero(record.outside[s]).squeeze(-1)
        where = state.positions[s][atoms]
        span = ", ".join(
            f"{axis} {float(lo):.1f}–{float(hi):.1f}"
            for axis, lo, hi in zip("xyz", where.min(0).values, where.max(0).values)
        )
        shown = ", ".join(str(int(i)) for i in atoms[:8]) + (", …" if len(atoms) > 8 else "")
        box = getattr(self.model, "novelty_box", None)
        return (
            f"step {state.step}, replica {r}: {len(atoms)} of {s.stop - s.start} atoms "
            f"({100 * float(record.fraction[r]):.1f} %, above novelty_threshold "
            f"{100 * self.config.novelty_threshold:g} %) have local densities outside the "
            f"model's training states (atoms {shown}; at {span} Å; box from "
            f"{getattr(box, 'source', 'the checkpoint')}): the model extrapolates there, its "
            "trajectory is not to be trusted (a surface, a liquid, a defect it never saw?)"
        )

    def _notify(self, state, thermo, wall, ns_day, unstable: str | None = None) -> None:
        due = [fn for fn, every in self.observers if every > 0 and state.step % every == 0]
        if unstable is not None:
            due = [fn for fn, every in self.observers if every > 0]
        if not due:
            return
        time_fs = state.step * self.dt_fs
        public = {
            "step": state.step,
            "time_fs": time_fs,
            "time_ps": fs_to_ps(time_fs),
            "wall_s": wall,
            "ns_per_day": ns_day,
            "unstable": unstable,
            **thermo,
        }
        for fn in due:
            fn(state, public)

    def _record(self, state, thermo, wall) -> None:
        self._rows.append(
            (
                state.step,
                fs_to_ps(state.step * self.dt_fs),
                thermo["temperature_K"].copy(),
                thermo["kinetic_energy_eV"].copy(),
                thermo["momentum_amu_A_per_ps"].copy(),
                thermo["min_distance_A"].copy(),
                wall,
            )
        )

    def _stop(self, state, problem, thermo, ns_day=0.0, wall=0.0) -> RolloutResult:
        replica, cause = problem
        t_ps = fs_to_ps(state.step * self.dt_fs)
        message = (
            f"rollout unstable at step {state.step} (t = {t_ps:.4f} ps), replica {replica}: {cause}"
        )
        self.stopped = (state.step, replica, cause, message)
        # The reporter keeps the offending frame when it is finite (useful to look at) and
        # its thermo row; every observer hears of the stop.
        self._notify(state, thermo, wall, ns_day, unstable=cause)
        if self.reporter is not None:
            message += f"; output so far is in {self.out_dir}"
            self.reporter.update(
                stopped_reason=message, stopped_step=state.step, stopped_replica=replica
            )
        result = self.result()
        if self.config.on_unstable == "raise":
            self.close()
            raise RolloutUnstable(message, state.step, replica, cause, result)
        warnings.warn(message, RolloutStopped, stacklevel=3)
        return result

    def result(self) -> RolloutResult:
        rows = self._rows
        stopped = self.stopped
        return RolloutResult(
            step=np.array([r[0] for r in rows], dtype=np.int64),
            time_ps=np.array([r[1] for r in rows]),
            temperature_K=np.stack([r[2] for r in rows]),
            kinetic_energy_eV=np.stack([r[3] for r in rows]),
            momentum_amu_A_per_ps=np.stack([r[4] for r in rows]),
            min_distance_A=np.stack([r[5] for r in rows]),
            wall_s=np.array([r[6] for r in rows]),
            stopped_reason=stopped[3] if stopped else None,
            stopped_step=stopped[0] if stopped else None,
            stopped_replica=stopped[1] if stopped else None,
            finite_difference_velocities=self.finite_difference,
            final_state=self.state,
            files=dict(self.files),
        )

    def close(self) -> None:
        if self.reporter is not None:
            self.reporter.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class RecordedRun:
    """A one-replica rollout kept in memory for analysis (:func:`record_rollout`):
    ``positions`` (S+1, N, 3) unwrapped Å and ``velocities`` (S+1, N, 3) Å/ps at step 0 … the
    last step before the guard fired (the start at least), and the run's ``result``."""

    positions: np.ndarray
    velocities: np.ndarray
    result: RolloutResult

    @property
    def steps_completed(self) -> int:
        return len(self.positions) - 1


def record_rollout(
    model, start, config: RolloutConfig, observers: Sequence = (), **kwargs
) -> RecordedRun:
    """Run ``config.steps`` strides from ``start`` (one replica; what :class:`Rollout` takes)
    and keep every frame in memory (:class:`RecordedRun`): what ``evaluate`` and ``fidelity``
    analyse. ``observers`` see every step too (an energy meter); ``kwargs`` go to
    :class:`Rollout`."""
    frames: list[tuple[np.ndarray, np.ndarray]] = []

    def keep(state, thermo):  # at step 0, after every step, and at a guard's stop
        frames.append((state.unwrapped.cpu().numpy().copy(), state.velocities.cpu().numpy().copy()))

    with Rollout(model, start, config, observers=[keep, *observers], **kwargs) as ro:
        result = ro.run()
    if result.stopped_reason is not None:  # the state the guard stopped at is not kept
        frames = frames[: max(len(frames) - 1, 1)]
    return RecordedRun(np.stack([f[0] for f in frames]), np.stack([f[1] for f in frames]), result)


def run_rollout(
    model,
    structures,
    dt_fs: float,
    steps: int,
    temperature_K=None,
    thermostat: str = "none",
    tau_fs: float | None = None,
    replicas: int = 1,
    seed: int | None = 0,
    write_every: int = 10,
    out_dir: str | Path | None = None,
    fmt: str = "extxyz",
    observers: Sequence = (),
    **kwargs,
) -> RolloutResult:
    """Build a :class:`Rollout`, run ``steps`` strides, close its files, return the result.

    Extra keyword arguments are the other :class:`RolloutConfig` fields (friction_per_ps,
    thermo_every, min_distance_A, max_temperature_factor, min_temperature_factor,
    remove_momentum, progress, on_unstable, resample_velocities).
    """
    config = RolloutConfig.of(
        dt_fs=dt_fs,
        steps=steps,
        temperature_K=temperature_K,
        thermostat=thermostat,
        tau_fs=tau_fs,
        replicas=replicas,
        seed=seed,
        write_every=write_every,
        out_dir=out_dir,
        fmt=fmt,
        **kwargs,
    )
    with Rollout(model, structures, config, observers=observers) as ro:
        return ro.run()
