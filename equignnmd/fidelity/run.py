"""Running the fidelity benchmark (:mod:`equignnmd.fidelity`): its settings
(:class:`FidelityConfig`, :data:`PRESETS`), the reference runs, the surrogate runs, and
:func:`fidelity`, which scores them (:mod:`.score`) and writes the report (:mod:`.render`).

The reference is the one the checkpoint's training data came from (FCC Al under Mendelev's
EAM where it records none, or under ``potential`` where that is set) unless ``reference``
names a dataset: then its own reference (its LAMMPS potential, or its ASE calculator run with
ASE's dynamics: :class:`~equignnmd.data.calculator_md.AseMD`) and its material (element or a
random substitutional alloy's composition, lattice, relaxed lattice constant, masses) are used
throughout (:func:`fidelity_reference`). An alloy's box is built as ``equignnmd generate``
builds it (:class:`~equignnmd.data.lammps_md.MDSettings`' ``composition_seed``: here the
benchmark's ``seed``); its atomic numbers travel with the equilibrated state (``species``),
and every mass-weighted quantity takes each atom's own mass
(:func:`~equignnmd.fidelity.score.box_species`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import analysis, physics
from .._lammps import resolve_potential
from ..analysis import MIN_SCORE_FRAMES
from ..calculator import AseCalculator
from ..checkpoint import read_checkpoint
from ..config import ConfigError, build
from ..data.format import read_index
from ..data.lammps_md import MDSettings
from ..data.reference_md import (
    Reference,
    checkpoint_reference_material,
    dataset_reference_material,
    reference_md,
)
from ..materials import ALUMINIUM, Material, atomic_number
from ..potential import make_energy_source
from ..rollout import RolloutConfig, RolloutState, step
from ..rollout.config import THERMOSTATS
from ..rollout.engine import record_rollout
from ..rollout.stages import init_stages, standard_stages
from ..units import fs_to_ps, ps_to_fs
from .cache import ReferenceCache, state_digest
from .render import plot_block, write_report
from .score import box_species, nve_row, nvt_scores, step_scores


@dataclass
class FidelityConfig:
    """Settings of a fidelity run (metal units: K, fs, ps; the box is ``cells``³ FCC cells).

    ``energy`` is the energy source of the *surrogate's* NVE/NVT runs ("none": the model
    alone; "reference": rescaled against the reference potential, :class:`~equignnmd.rollout.
    stages.EnergyRescale`); the total energy measured is always the reference's.
    """

    checkpoint: str = "pretrained:symplectic-al"
    potential: str = "reference"
    reference: str = ""
    """a dataset folder whose own reference (LAMMPS potential or ASE calculator) and material
    are run: its element, or its alloy's composition (sites drawn with the seed, each atom its
    own mass; the RDF is the total one), lattice and lattice constant"""
    cells: int = 5
    """conventional cells per side, 5 → 500 atoms (FCC)"""
    temperatures_K: list[float] = field(default_factory=lambda: [300.0, 450.0, 800.0])
    """temperatures, K, comma-separated"""
    strides_fs: list[float] = field(default_factory=lambda: [20.0])
    """surrogate strides, fs"""
    verlet_fs: list[float] = field(default_factory=lambda: [1.0, 5.0, 10.0, 20.0])
    nve_ps: float = 20.0
    """NVE length, ps"""
    nvt_ps: float = 20.0
    """NVT length, ps"""
    thermostats: list[str] = field(default_factory=lambda: ["csvr", "langevin"])
    tau_strides: float = 100.0
    energy: str = "none"
    """surrogate energy rescaling: none, reference (the benchmark's reference), model (the
    checkpoint's energy head) or an EAM file"""
    energy_every: int = 5
    equilibrate_ps: float = 10.0
    onestep_strides_fs: list[float] = field(default_factory=lambda: [5.0, 10.0, 20.0, 50.0])
    onestep_origins: int = 16
    calibration_dK: float = 20.0
    """the calibration rows' offset, K: the reference at T ± dK beside its other-seed row
    (0: the other-seed row only, for a reference too costly for four runs)"""
    reference_fs: float = 1.0
    """the reference's own MD step, fs, in its equilibration, its NVT runs and the run that
    gives the one-step pairs (the Verlet ladder keeps its steps): 1 fs for LAMMPS potentials;
    for a costly reference (an ML potential) its largest stable step
    (``studies/reference_stable_step.py``); strides and one-step strides must be multiples"""
    reference_cache: str = ""
    """a folder that keeps the reference's runs (equilibration, Verlet ladder, NVT) under keys
    of everything that decides them (:class:`~.cache.ReferenceCache`): a killed run, or the
    next checkpoint against the same reference and settings, repeats only what is missing
    (empty: none kept)"""
    min_frames: int = MIN_SCORE_FRAMES
    seed: int = 2029
    device: str = "auto"
    """cpu, cuda, cuda:1 or auto"""
    threads: int = 0
    out: str = "fidelity"
    """report folder"""

    def validate(self, source: str = "fidelity settings") -> None:
        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(
                f"{source}: field '{name}' = {getattr(self, name)!r}; expected {expected}"
            )

        if self.cells < 3:
            raise bad("cells", "≥ 3 (the box must be at least twice the model's cutoff)")
        if not self.temperatures_K or min(self.temperatures_K) <= 0:
            raise bad("temperatures_K", "a list of temperatures > 0 K")
        for name in ("strides_fs", "verlet_fs", "onestep_strides_fs"):
            values = getattr(self, name)
            if any(not v > 0 for v in values):
                raise bad(name, "strides > 0 fs")
            if any(abs(v - round(v)) > 1e-9 for v in values):
                raise bad(name, "whole femtoseconds (LAMMPS runs at 1 fs)")
        for name in ("nve_ps", "nvt_ps", "equilibrate_ps"):
            if getattr(self, name) < 0:
                raise bad(name, "≥ 0 ps")

        if not self.reference_fs > 0 or abs(self.reference_fs - round(self.reference_fs)) > 1e-9:
            raise bad("reference_fs", "a whole number of femtoseconds > 0")
        for name in ("strides_fs", "onestep_strides_fs"):
            values = getattr(self, name)
            steps = [v / self.reference_fs for v in values]
            if any(abs(n - round(n)) > 1e-9 for n in steps):
                raise bad(name, f"multiples of reference_fs = {self.reference_fs:g} fs")
        if self.calibration_dK < 0:
            raise bad("calibration_dK", "≥ 0 K (0: no T ± dK rows)")
        for t in self.thermostats:
            if THERMOSTATS.get(t.lower(), "none") == "none":
                raise bad("thermostats", "a list of csvr / langevin")
        if self.energy_every < 1 or self.onestep_origins < 1 or self.min_frames < 2:
            raise bad("energy_every", "energy_every ≥ 1, onestep_origins ≥ 1, min_frames ≥ 2")
        if self.tau_strides <= 0:
            raise bad("tau_strides", "> 0")


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "cells": 4,
        "temperatures_K": [450.0],
        "strides_fs": [20.0],
        "verlet_fs": [1.0, 20.0],
        "nve_ps": 1.0,
        "nvt_ps": 1.0,
        "thermostats": ["csvr"],
        "equilibrate_ps": 2.0,
        "onestep_strides_fs": [10.0, 20.0],
        "onestep_origins": 2,
        "min_frames": 20,
        "tau_strides": 10.0,
    },
    "default": {},
    "long": {"nvt_ps": 100.0, "strides_fs": [20.0, 50.0]},
}
"""``smoke``: a minute (256 atoms, the fewest cells that hold twice a 6.5-Å cutoff, 1 ps; tests
and the benchmark smoke run); ``default``: the issue's 500-atom, 20-ps benchmark; ``long``:
100-ps NVT at 20 and 50 fs."""


def make_config(preset: str = "default", source: str = "fidelity", **values) -> FidelityConfig:
    """A preset (:data:`PRESETS`) with ``values`` on top, checked."""
    if preset not in PRESETS:
        raise ConfigError(f"{source}: preset {preset!r}; expected one of {sorted(PRESETS)}")
    return build(FidelityConfig, {**PRESETS[preset], **values}, source)


# ------------------------------------------------------------------------------ reference MD
def fidelity_reference(cfg: FidelityConfig) -> tuple[Reference | Path, Material]:
    """The benchmark's reference and material: with ``reference`` (a dataset folder) the
    dataset's own (:func:`~equignnmd.data.reference_md.dataset_reference_material`: its
    reference, and its material as ``dataset.json`` records it: element or an alloy's
    composition, masses, lattice, lattice constant, hcp's c/a); else, with ``potential`` left
    at "reference", the one the checkpoint's training data came from where it records it
    (:func:`~equignnmd.data.reference_md.checkpoint_reference_material`: a Cu-SNAP model is
    scored against Cu SNAP without its dataset at hand); else ``potential`` ("reference":
    Mendelev's Al EAM) and FCC Al."""
    reference, material, _ = _reference_and_origin(cfg)
    return reference, material


def _reference_and_origin(cfg: FidelityConfig) -> tuple[Reference | Path, Material, str]:
    """:func:`fidelity_reference` and where it came from, for the report: "dataset D",
    "checkpoint C" or "" (the ``potential`` field, FCC Al)."""
    if cfg.reference:
        where = f"fidelity: field 'reference' (--reference) = {cfg.reference!r}"
        return (
            *dataset_reference_material(read_index(cfg.reference), where),
            f"dataset {cfg.reference}",
        )
    if cfg.potential == "reference":
        recorded = checkpoint_reference_material(
            read_checkpoint(cfg.checkpoint), f"fidelity: checkpoint {cfg.checkpoint}"
        )
        if recorded is not None:
            return (*recorded, f"checkpoint {cfg.checkpoint}")
    reference = resolve_potential(None if cfg.potential == "reference" else cfg.potential)
    return reference, ALUMINIUM, ""


def _settings(
    cfg: FidelityConfig, material: Material, T: float, ensemble: str, reference=None, **kw
):
    """The reference run's settings: ``reference`` (a :data:`Reference`, or a potential file)
    where given, else the benchmark's (:func:`fidelity_reference`). An alloy's elements are
    placed on the built box's sites with the benchmark's seed (as ``generate`` places them
    with its own; a one-element box ignores it)."""
    if reference is None:
        reference, _ = fidelity_reference(cfg)
    return MDSettings(
        potential=reference,
        material=material,
        cells=cfg.cells,
        temperature_K=T,
        seed=cfg.seed,
        ensemble=ensemble,
        descriptors=False,
        composition_seed=cfg.seed,
        **kw,
    )


def equilibrated_state(
    cfg: FidelityConfig, material: Material, T: float, reference=None
) -> dict[str, Any]:
    """The material's crystal (``cfg.cells``³ cells; an alloy's elements placed with
    ``cfg.seed``) equilibrated at T and 0 bar (NPT for ``equilibrate_ps``; NVT under a
    calculator without stress), put in its average cell and equilibrated there (CSVR, a fifth
    as long): positions (N, 3) unwrapped Å, velocities (N, 3) Å/ps, cell (3, 3) Å, species
    (N,) atomic numbers. ``reference``: the potential or calculator to run (default: the
    benchmark's, :func:`fidelity_reference`)."""
    dt = cfg.reference_fs
    steps = int(round(ps_to_fs(cfg.equilibrate_ps) / dt))
    with reference_md(_settings(cfg, material, T, "npt", reference, timestep_fs=dt)) as md:
        md.run(steps // 2)
        cells = []
        for _ in range(10):
            md.run(max(1, steps // 20))
            cells.append(md.cell())
        frame = md.frame()
        species = md.species()
    cell = np.mean(cells, axis=0)
    frac = np.linalg.solve(frame["cell"].T, frame["positions"].T).T
    state = {
        "positions": frac @ cell,
        "velocities": frame["velocities"],
        "cell": cell,
        "species": species,
    }
    with reference_md(
        _settings(cfg, material, T, "csvr", reference, timestep_fs=dt), state=state
    ) as md:
        md.run(max(1, steps // 5))
        frame = md.frame()
    return {**{k: frame[k] for k in ("positions", "velocities", "cell")}, "species": species}


def verlet_nve(
    cfg,
    material,
    start,
    timestep_fs: float,
    origins: dict | None = None,
    reference=None,
    sample_fs: float = 100.0,
) -> dict:
    """Velocity Verlet of the reference from ``start`` for ``nve_ps``: total energy (eV) and
    temperature (K) every ~``sample_fs`` (a whole number of steps, at least one); with
    ``origins`` ({time_fs: None}), the frames at those times too. ``reference``: the
    potential or calculator to run (default: the benchmark's, :func:`fidelity_reference`);
    the temperature weighs each atom by its own mass (``start``'s ``species``,
    :func:`~equignnmd.fidelity.score.box_species`)."""
    masses = start_masses(material, start)
    total_fs = ps_to_fs(cfg.nve_ps)
    sample_fs = max(timestep_fs, timestep_fs * round(sample_fs / timestep_fs))
    times = set(np.arange(0.0, total_fs + 1e-9, sample_fs).round(6))
    times |= set(origins or {})
    times = sorted(t for t in times if t <= total_fs + 1e-9)
    energy, temp, t_ps, frames = [], [], [], {}
    stopped = None
    settings = _settings(cfg, material, 0.0, "nve", reference, timestep_fs=timestep_fs)
    with reference_md(settings, state=start) as md:
        now = 0.0
        for t in times:
            n = int(round((t - now) / timestep_fs))
            try:
                md.run(n)
            except Exception as err:  # noqa: BLE001 - an unstable integrator is a result
                # (velocity Verlet at 20 fs and 800 K loses atoms): keep what it did
                text = str(err).splitlines()[0] if str(err) else type(err).__name__
                stopped = f"the reference stopped after {fs_to_ps(now):.2f} ps: {text}"
                break
            frame = md.frame()
            if not np.isfinite(frame["thermo"]["etotal_eV"]):  # ASE blows up silently
                stopped = f"the reference blew up after {fs_to_ps(now + n * timestep_fs):.2f} ps"
                break
            now += n * timestep_fs
            energy.append(frame["thermo"]["etotal_eV"])
            temp.append(_temperature(frame["velocities"], masses))
            t_ps.append(fs_to_ps(now))
            if origins is not None and t in origins:
                frames[t] = frame
    return {
        "time_ps": np.array(t_ps),
        "total_energy_eV": np.array(energy),
        "temperature_K": np.array(temp),
        "frames": frames,
        "stopped": stopped,
    }


def _temperature(vel: np.ndarray, masses: np.ndarray) -> float:
    """Kinetic temperature, K, of velocities (N, 3) Å/ps with masses (N,) amu."""
    v = torch.as_tensor(np.asarray(vel), dtype=torch.float64)
    m = torch.as_tensor(np.asarray(masses), dtype=torch.float64)
    return float(physics.kinetic_temperature(v, m))


def start_species(material: Material, start: dict) -> np.ndarray:
    """The atomic numbers (N,) of the atoms of ``start`` (a state: ``positions`` (N, 3) and,
    for an alloy, ``species`` (N,)): :func:`~equignnmd.fidelity.score.box_species`."""
    return box_species(material, len(start["positions"]), start.get("species"), "start")


def start_masses(material: Material, start: dict) -> np.ndarray:
    """Each atom's mass (N,) amu in ``start`` (:func:`start_species`)."""
    return material.atom_masses(start_species(material, start))


def lammps_nvt(cfg, material, start, T, stride_fs, thermostat, seed) -> dict:
    """The reference's NVT (at ``reference_fs``; LAMMPS, or ASE's dynamics for a calculator) from
    ``start`` (with its ``species`` where it has them: an alloy's) for ``nvt_ps``, frames
    every stride."""
    from ..data.reference_md import lammps_reference

    reference, _ = fidelity_reference(cfg)
    n = int(round(ps_to_fs(cfg.nvt_ps) / stride_fs))
    ref = lammps_reference(
        start["positions"],
        start["velocities"],
        start["cell"],
        stride_fs,
        n,
        T,
        thermostat,
        tau_fs=cfg.tau_strides * stride_fs,
        potential=reference,
        material=material,
        md_timestep_fs=cfg.reference_fs,
        seed=seed,
        species=start.get("species"),
    )
    return {k: ref[k] for k in ("positions", "velocities", "wall_s")}


# ------------------------------------------------------------------------------ surrogate
def surrogate_run(model, cfg, material, start, T, stride_fs, thermostat, steps, energy_every):
    """A surrogate rollout from ``start`` (its atoms' ``species`` and their own masses, or
    every atom ``material``'s one element): frames every stride (unwrapped positions,
    velocities), the reference total energy every ``energy_every`` strides, how it ended."""
    species = start_species(material, start)
    state = RolloutState.from_arrays(
        [start["positions"]],
        [start["velocities"]],
        [start["cell"]],
        [species],
        [material.atom_masses(species)],
    )
    config = RolloutConfig.of(
        "fidelity rollout",
        dt_fs=stride_fs,
        steps=steps,
        temperature_K=T,
        thermostat=thermostat,
        tau_fs=cfg.tau_strides * stride_fs,
        seed=cfg.seed,
        energy="none" if cfg.energy == "reference" else cfg.energy,
        progress=False,
        write_every=0,
    )
    reference, _ = fidelity_reference(cfg)
    meter = make_energy_source(reference, material)
    # "reference": the benchmark's own (a dataset's LAMMPS potential or ASE calculator)
    own = make_energy_source(reference, material) if cfg.energy == "reference" else None
    e_t, e_tot = [], []

    def meter_energy(s, thermo):
        if s.step % energy_every == 0 and thermo.get("unstable") is None:
            u = float(meter(s.positions, s.cell, s.species, s.batch)[0])
            k = float(physics.internal_kinetic_energy(s.velocities, s.masses, s.batch)[0])
            e_t.append(thermo["time_ps"])
            e_tot.append(k + u)

    t0 = time.perf_counter()
    run = record_rollout(model, state, config, observers=[meter_energy], energy_source=own)
    wall = time.perf_counter() - t0
    for source in (meter, own):
        if source is not None and hasattr(source, "close"):
            source.close()
    final = run.result.final_state
    return {
        "positions": run.positions,
        "velocities": run.velocities,
        "energy_time_ps": np.array(e_t),
        "total_energy_eV": np.array(e_tot),
        "stopped": run.result.stopped_reason,
        "steps_completed": run.steps_completed,
        "wall_s": wall,
        "clamped": int(final.info["energy"].clamped[0])
        if final is not None and "energy" in final.info
        else 0,
    }


# ------------------------------------------------------------------------------ one step
def onestep_table(
    model, cfg, material, frames: dict, spacing_fs: float, species=None
) -> list[dict]:
    """One-step scores on pairs (t₀, t₀ + Δt) of a 1-fs NVE reference run, model and
    baselines; ``species`` (N,): the run's atomic numbers (default: every atom
    ``material``'s one element), whose own masses weigh the kinetic energies."""
    from ..baselines.predictors import predict_arrays

    rows = []
    origins = [o * spacing_fs for o in range(cfg.onestep_origins)]
    species = box_species(material, len(frames[0.0]["positions"]), species, "onestep_table")
    m = material.atom_masses(species)
    for stride in cfg.onestep_strides_fs:
        pairs = [(frames[o], frames[round(o + stride, 6)]) for o in origins]
        start = RolloutState.from_arrays(
            [a["positions"] for a, _ in pairs],
            [a["velocities"] for a, _ in pairs],
            [a["cell"] for a, _ in pairs],
            [species] * len(pairs),
            [m] * len(pairs),
            device=model.device,
        )
        stages = standard_stages()
        first = init_stages(stages, start)
        new = step(model, first, stride, stages)
        # reversibility: forward, flip the velocities, forward again, flip: exact dynamics
        # returns to the start
        back = step(model, replace(new, velocities=-new.velocities), stride, stages)
        rev_r = np.linalg.norm((back.unwrapped - first.unwrapped).cpu().numpy(), axis=-1).mean()
        rev_v = float(
            torch.linalg.norm(back.velocities + first.velocities)
            / torch.linalg.norm(first.velocities)
        )
        pred_r = new.unwrapped.cpu().numpy().reshape(len(pairs), -1, 3)
        pred_v = new.velocities.cpu().numpy().reshape(len(pairs), -1, 3)
        r0 = np.stack([a["positions"] for a, _ in pairs])
        v0 = np.stack([a["velocities"] for a, _ in pairs])
        f0 = np.stack([a["forces"] for a, _ in pairs])
        r1 = np.stack([b["positions"] for _, b in pairs])
        v1 = np.stack([b["velocities"] for _, b in pairs])
        row: dict[str, Any] = {
            "stride_fs": stride,
            "pairs": len(pairs),
            "reversibility_pos_A": float(rev_r),
            "reversibility_vel_rel": rev_v,
        }
        row.update(step_scores("model", pred_r - r0, pred_v, r1 - r0, v1, m))
        for name in ("zero", "ballistic", "taylor"):
            disp, v = predict_arrays(name, v0, f0, m, stride)
            row.update(step_scores(name, disp, v, r1 - r0, v1, m))
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ the run
def fidelity(cfg: FidelityConfig, model=None, progress=print) -> dict[str, Any]:
    """Run every part for every temperature; write ``fidelity.md``/``.json`` and plots."""
    from ..checkpoint import load_checkpoint
    from ..device import pick_device

    cfg.validate()
    out = Path(cfg.out)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    # before the model: a bad dataset first
    reference, material, origin = _reference_and_origin(cfg)
    if model is None:
        model = load_checkpoint(cfg.checkpoint, device=pick_device(cfg.device))
    # checked on the lattice constant at 0 K, before any reference run: conservative (a box
    # within ~1 % of the limit may be refused that its thermal expansion at 0 bar would fit)
    min_box_A = 2.0 * float(model.cutoff)
    width = min(material.cell_A)
    if cfg.cells * width < min_box_A:
        raise ConfigError(
            f"fidelity: field 'cells' is {cfg.cells} ({cfg.cells * width:.2f} Å); "
            f"expected a box at least 2 × the model's cutoff {min_box_A / 2:g} Å "
            f"(cells ≥ {math.ceil(min_box_A / width)})"
        )
    check_model_species(model, material, cfg.checkpoint)
    n_atoms = material.atoms_per_cell * cfg.cells**3
    engine = reference_engine(reference)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "config": asdict(cfg),
        "reference": getattr(reference, "description", Path(str(reference)).name),
        "reference_origin": origin,
        "material": material_record(material, n_atoms),
        "model": {
            "arch": model.arch,
            "checkpoint": cfg.checkpoint,
            "train_temperatures_K": list(model.stats.temperature_range_K),
            "train_strides_fs": list(model.stats.strides_fs),
        },
        "atoms": n_atoms,
        "temperatures": [],
    }
    # the reference's runs do not depend on the model: kept under what decides them
    cache = ReferenceCache(cfg.reference_cache)
    ref_key = {
        "reference": repr(reference),
        "material": repr(material),
        "cells": cfg.cells,
        "seed": cfg.seed,
        "reference_fs": cfg.reference_fs,
    }

    def cached_nvt(start, t_set, stride, thermostat, seed):
        key = {**ref_key, "start": state_digest(start), "T": t_set, "stride_fs": stride,
               "thermostat": thermostat, "seed": seed, "nvt_ps": cfg.nvt_ps,
               "tau_strides": cfg.tau_strides}  # fmt: skip
        return cache.run(
            "nvt", key, lammps_nvt, cfg, material, start, t_set, stride, thermostat, seed
        )

    # one-step origins this far apart (a whole number of reference steps): uncorrelated pairs
    spacing = max(200.0, max(cfg.onestep_strides_fs) + 5.0)
    spacing = cfg.reference_fs * math.ceil(spacing / cfg.reference_fs - 1e-9)
    for T in cfg.temperatures_K:
        t0 = time.perf_counter()
        progress(f"[fidelity] {T:g} K: equilibrating {n_atoms} atoms ({engine} NPT, then NVT)")
        start = cache.run(
            "equilibrated",
            {**ref_key, "T": T, "equilibrate_ps": cfg.equilibrate_ps},
            equilibrated_state,
            cfg,
            material,
            T,
        )
        cell = start["cell"]
        species = start_species(material, start)
        masses = material.atom_masses(species)
        block: dict[str, Any] = {
            "temperature_K": T,
            "box_A": float(cell[0, 0]),
            "atoms": n_atoms,
            "nve": [],
        }
        # --- NVE: reference velocity Verlet (the run at reference_fs also gives the pairs)
        need = {
            round(o * spacing + s, 6): None
            for o in range(cfg.onestep_origins)
            for s in [0.0, *cfg.onestep_strides_fs]
        }
        one_fs = None
        pairs_fs = cfg.reference_fs  # the run whose frames give the one-step pairs
        for h in sorted(set(cfg.verlet_fs) | {pairs_fs}):
            progress(f"[fidelity] {T:g} K: {engine} velocity Verlet NVE at {h:g} fs")
            run_cfg = (
                replace(cfg, nve_ps=max(cfg.nve_ps, fs_to_ps(max(need) + pairs_fs)))
                if h == pairs_fs
                else cfg
            )
            origins = need if h == pairs_fs else None
            run = cache.run(
                "verlet",
                {**ref_key, "start": state_digest(start), "step_fs": h,
                 "nve_ps": run_cfg.nve_ps, "origins": sorted(origins or {})},
                verlet_nve, run_cfg, material, start, h, origins=origins,
            )  # fmt: skip
            if h == pairs_fs:
                one_fs = run
            if h in cfg.verlet_fs:
                block["nve"].append(
                    nve_row(f"{engine} velocity Verlet {h:g} fs", run, n_atoms, h, run)
                )
                block["nve"][-1]["_trace"] = (run["time_ps"], run["temperature_K"])
        # --- NVE: the surrogate
        for stride in cfg.strides_fs:
            steps = int(round(ps_to_fs(cfg.nve_ps) / stride))
            progress(f"[fidelity] {T:g} K: surrogate NVE at {stride:g} fs ({steps} strides)")
            sur = surrogate_run(
                model, cfg, material, start, T, stride, "none", steps, cfg.energy_every
            )
            run = {
                "time_ps": sur["energy_time_ps"],
                "total_energy_eV": sur["total_energy_eV"],
                "temperature_K": analysis.kinetic_temperature(sur["velocities"], masses),
            }
            row = nve_row(_surrogate_label(model, cfg, stride), run, n_atoms, stride, sur)
            row["_trace"] = (
                fs_to_ps(np.arange(len(sur["velocities"])) * stride),
                run["temperature_K"],
            )
            if len(sur["positions"]) >= 2:
                _, t_k = analysis.plane_wave_temperatures(
                    sur["positions"], sur["velocities"], cell, masses, max_shell=1
                )
                row["long_wave_T_ratio"] = float(t_k[0] / np.mean(run["temperature_K"]))
            block["nve"].append(row)
        # --- one step
        progress(f"[fidelity] {T:g} K: one-step scores on {cfg.onestep_origins} {engine} pairs")
        block["onestep"] = onestep_table(model, cfg, material, one_fs["frames"], spacing, species)
        # --- NVT
        block["nvt"] = []
        for stride in cfg.strides_fs:
            steps = int(round(ps_to_fs(cfg.nvt_ps) / stride))
            for th in cfg.thermostats:
                progress(f"[fidelity] {T:g} K: NVT {th} at {stride:g} fs, {engine} reference")
                ref = cached_nvt(start, T, stride, th, cfg.seed + 1)
                rows = [(f"{engine} {cfg.reference_fs:g} fs (reference)", ref, T)]
                if th == cfg.thermostats[0]:  # calibration rows, once per stride
                    progress(f"[fidelity] {T:g} K: calibration runs (seed, T ± dK)")
                    rows.append(
                        (
                            f"{engine}, another seed",
                            cached_nvt(start, T, stride, th, cfg.seed + 2),
                            T,
                        )
                    )
                    offsets = (-cfg.calibration_dK, cfg.calibration_dK)
                    for dT in offsets if cfg.calibration_dK else ():
                        rows.append(
                            (
                                f"{engine} at T {dT:+g} K",
                                cached_nvt(start, T + dT, stride, th, cfg.seed + 3),
                                T + dT,
                            )
                        )
                progress(f"[fidelity] {T:g} K: surrogate NVT {th} at {stride:g} fs")
                sur = surrogate_run(model, cfg, material, start, T, stride, th, steps, 10**9)
                rows.append((_surrogate_label(model, cfg, stride), sur, T))
                for label, traj, t_set in rows:
                    scores = nvt_scores(
                        traj, ref, t_set, stride, cell, material, cfg.min_frames, species
                    )
                    scores.update(
                        {
                            "run": label,
                            "thermostat": th,
                            "stride_fs": stride,
                            "set_point_K": t_set,
                            "stopped": traj.get("stopped"),
                            "steps_completed": traj.get(
                                "steps_completed", len(traj["positions"]) - 1
                            ),
                            "wall_s": traj.get("wall_s"),
                        }
                    )
                    block["nvt"].append(scores)
        block["wall_s"] = time.perf_counter() - t0
        plot_block(out, block)
        result["temperatures"].append(block)
        result["reference_runs_reused"] = cache.hits  # read back from reference_cache
        write_report(out, result)  # after every temperature: a killed run keeps what it measured
    return result


def material_record(material: Material, n_atoms: int) -> dict[str, Any]:
    """The report's record of the benchmark's material: element, lattice, lattice constant
    (Å), mass (amu; an alloy's mean); an alloy's ``composition`` ({element: fraction}), each
    element's ``masses_amu`` and its atoms in a box of ``n_atoms`` (``counts``)."""
    record: dict[str, Any] = {
        "element": material.element,
        "lattice": material.structure,
        "lattice_A": material.lattice_A,
        "mass_amu": material.mass_amu,
    }
    c = material.composition
    if c is not None:  # only an alloy: a one-element report stays as it was
        record["composition"] = c.mapping()
        record["masses_amu"] = dict(zip(c.elements, c.masses_amu))
        record["counts"] = dict(zip(c.elements, c.counts(n_atoms).tolist()))
    return record


def check_model_species(model, material: Material, checkpoint: str) -> None:
    """ConfigError naming ``checkpoint`` when the model was not trained on every element of
    ``material`` (``model.stats.species``; a model that does not say is not checked): refused
    before any reference run, not after the equilibration."""
    known = getattr(getattr(model, "stats", None), "species", None)
    if known is None:
        return
    known = {int(z) for z in known}
    missing = [e for e in material.elements if atomic_number(e) not in known]
    if missing:
        raise ConfigError(
            f"fidelity: field 'checkpoint' (--checkpoint) = {checkpoint!r} was trained on "
            f"atomic numbers {sorted(known)}, not on {', '.join(missing)} of the benchmark's "
            f"material ({', '.join(material.elements)}); expected a model of every element "
            "(an alloy from a one-element checkpoint: fine-tune with init_from, which expands "
            "the species)"
        )


def reference_engine(reference) -> str:
    """How the rows name the reference's MD: "LAMMPS", or "ASE EMT" for a calculator."""
    if isinstance(reference, AseCalculator):
        return f"ASE {reference.name or 'calculator'}"
    return "LAMMPS"


def _surrogate_label(model, cfg, stride) -> str:
    extra = "" if cfg.energy in ("", "none") else f" + energy rescaling ({cfg.energy})"
    return f"{model.arch} {stride:g} fs{extra}"
