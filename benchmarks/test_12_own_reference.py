"""Every shipped model against its own reference (issue 35): the reference MD its training data
came from (the LAMMPS potential or ASE calculator its checkpoint records), run with velocity
Verlet at the largest step that is measured to be stable, against the surrogate's strides, in
simulated time per wall second on the same box with the same single thread.

The stability of the reference is measured, not assumed: from a state equilibrated at the
hottest temperature the model was trained on (``ladder_temperature``; the step a user needs
holds across the model's whole range only if it holds there), the reference runs NVE at each
step of the plan's ladder on a small box, and the drift of its total energy
(``fidelity.score.nve_row``'s linear fit) decides. One measurement per distinct reference and
temperature: the Al models share one.
"""

from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from _boxes import SITE_SEED, TEMPERATURE_K, cells_for, initial_arrays
from _engine import PRETRAINED, short_error
from _plan import Plan, StepCase

from equignnmd.checkpoint import read_checkpoint
from equignnmd.data.lammps_md import MDSettings
from equignnmd.data.reference_md import time_reference
from equignnmd.fidelity.run import equilibrated_state, make_config, reference_engine, verlet_nve
from equignnmd.fidelity.score import nve_row
from equignnmd.materials import Material
from equignnmd.mlip import INSTALL, named_calculator
from equignnmd.units import fs_to_ps

STABLE_DRIFT_MEV_ATOM_PS = 0.1
"""A velocity-Verlet step is stable when the total energy drifts by less than this, meV per
atom per ps: 0.1 meV/atom/ps is ~4 % of kT at 300 K (25.9 meV) per 10 ps, so a 10-ps run at
the step keeps its temperature to ~1 %. It sits between what a step that holds and one that
fails measure: Al EAM drifts 0.00001/0.0005/0.004 meV/atom/ps at 1/5/10 fs and 1.6 at 20 fs
(the fidelity benchmark, 500 atoms, 20 ps), and on this table's short runs (256 atoms, 200
steps, four equilibrated states) at most 0.014 at 10 fs and 0.17–0.48 at 20 fs."""
HOT_FACTOR = 1.5
"""A run is also unstable when its temperature exceeds this multiple of the start's: an
integrator blowing up heats the box before the energy fit of a short run shows it."""
THREADS = 1
"""Both sides run on one thread: LAMMPS serial (in process, one rank) and torch with one
intra-op thread, so the ratio compares the methods, not their parallel runtimes."""
TIMING_MAX_STEPS = 100_000
"""The reference's timed steps are bounded by the plan's ``own_reference.timing_s``, not by
a count (a cheap EAM step takes ~0.3 ms at 256 atoms)."""


@dataclass
class Stability:
    """The velocity-Verlet ladder of one reference on one small box."""

    description: str
    engine: str
    atoms: int
    drifts: dict[float, float | None]
    """step fs → drift of the total energy, meV/atom/ps (None: the run stopped or was short)"""
    stable: dict[float, bool]
    why: dict[float, str]
    """step fs → why it is unstable ('' when stable)"""
    wall_s: float

    @property
    def largest_fs(self) -> float | None:
        """The largest tried step that is stable, fs (None: none is)."""
        ok = [dt for dt, good in self.stable.items() if good]
        return max(ok) if ok else None

    def ladder(self) -> str:
        """ "1: 1.2e-05, …, 20: 1.6 ✗" (✗: unstable)."""
        parts = []
        for dt, drift in self.drifts.items():
            value = "stopped" if drift is None else f"{drift:.2g}"
            parts.append(f"{dt:g}: {value}{'' if self.stable[dt] else ' ✗'}")
        return ", ".join(parts)


_STABILITY: dict[tuple, Stability] = {}
_REFERENCE_SPEED: dict[tuple, dict] = {}


def ladder_temperature(checkpoint: dict) -> float:
    """The temperature of the stability ladder, K: the hottest of the model's training
    temperatures (``data_summary["train"]["temperatures_K"]``), else ``TEMPERATURE_K``. A
    reference step that holds at 300 K may not hold at the top of the model's range (Cu
    quadratic SNAP: 20 fs drifts −0.006 meV/atom/ps at 300 K, +2.1 at 1000 K)."""
    trained = checkpoint.get("data_summary", {}).get("train", {}).get("temperatures_K") or []
    return float(max(trained)) if trained else TEMPERATURE_K


def measure_stability(
    reference, material: Material, plan: Plan, temperature_K: float = TEMPERATURE_K
) -> Stability:
    """Equilibrate ``plan.own_reference.cells``³ cells of ``material`` at ``temperature_K``
    under ``reference``, then NVE at every step of the ladder from that one state; cached per
    reference, material and temperature."""
    key = (repr(reference), material, temperature_K)
    if key in _STABILITY:
        return _STABILITY[key]
    own = plan.own_reference
    t0 = time.perf_counter()
    cfg = make_config(
        "smoke", cells=own.cells, equilibrate_ps=own.equilibrate_ps, nve_ps=own.nve_ps, seed=2029
    )
    start = equilibrated_state(cfg, material, temperature_K, reference=reference)
    atoms = len(start["positions"])
    drifts, stable, why = {}, {}, {}
    for dt in own.verlet_fs:
        length = replace(cfg, nve_ps=max(own.nve_ps, fs_to_ps(own.min_steps * dt)))
        run = verlet_nve(length, material, start, dt, reference=reference, sample_fs=own.sample_fs)
        row = nve_row(f"{dt:g} fs", run, atoms, dt, run)
        drift = row["drift_meV_per_atom_ps"]
        t_max = float(np.max(run["temperature_K"])) if len(run["temperature_K"]) else math.inf
        reasons = []
        if row["stopped"]:  # lost atoms, or a calculator's non-finite energy: no drift to fit
            reasons.append(row["stopped"])
            drift = None
        elif drift is None or not math.isfinite(drift):
            reasons.append("too few energy samples for a drift")
            drift = None
        elif abs(drift) >= STABLE_DRIFT_MEV_ATOM_PS:
            reasons.append(f"|drift| ≥ {STABLE_DRIFT_MEV_ATOM_PS:g} meV/atom/ps")
        if not row["stopped"] and t_max > HOT_FACTOR * temperature_K:
            reasons.append(f"T reached {t_max:.3g} K")
        drifts[dt] = drift
        stable[dt] = not reasons
        why[dt] = "; ".join(reasons)
    result = Stability(
        getattr(reference, "description", Path(str(reference)).name),
        reference_engine(reference),
        atoms,
        drifts,
        stable,
        why,
        time.perf_counter() - t0,
    )
    _STABILITY[key] = result
    return result


def recorded_stability(recorded: dict, reference) -> Stability:
    """The ladder a checkpoint records for a reference too costly to ladder in this table
    (``checkpoint["reference_stable_step"]``: ``drifts`` {step fs: meV/atom/ps}, ``atoms``,
    ``how`` — the command and study that measured it; SevenNet-0's ladder, 200 steps per
    rung on 256 atoms, would take ~1.5 h of one core). A step is stable by the same drift
    rule as a measured ladder's."""
    drifts = {float(k): v for k, v in recorded["drifts"].items()}
    stable = {dt: v is not None and abs(v) < STABLE_DRIFT_MEV_ATOM_PS for dt, v in drifts.items()}
    why = {
        dt: "" if ok else f"|drift| ≥ {STABLE_DRIFT_MEV_ATOM_PS:g} meV/atom/ps"
        for dt, ok in stable.items()
    }  # fmt: skip
    return Stability(
        getattr(reference, "description", Path(str(reference)).name),
        reference_engine(reference),
        int(recorded["atoms"]),
        drifts,
        stable,
        why,
        0.0,
    )


def reference_speed(reference, material: Material, atoms: int, dt_fs: float, plan) -> dict:
    """The reference's velocity Verlet at ``dt_fs`` on the benchmark box of ``atoms`` (the
    surrogate's start state: lattice sites, Maxwell–Boltzmann 300 K), serial: s per step,
    µs per atom-step, simulated ps per wall second; cached."""
    key = (repr(reference), material, atoms, dt_fs)
    if key not in _REFERENCE_SPEED:
        arrays = initial_arrays(atoms, 0, material)
        settings = MDSettings(
            potential=reference,
            material=material,
            cells=cells_for(atoms, material),
            temperature_K=TEMPERATURE_K,
            timestep_fs=dt_fs,
            ensemble="nve",
            descriptors=False,
            composition_seed=SITE_SEED,  # an alloy's sites as in the surrogate's box
        )
        state = {k: arrays[k] for k in ("positions", "velocities", "cell", "species")}
        timing = time_reference(settings, plan.own_reference.timing_s, TIMING_MAX_STEPS, state)
        s_step = timing.wall_s / timing.steps
        _REFERENCE_SPEED[key] = {
            "steps": timing.steps,
            "s_step": s_step,
            "us_atom_step": 1e6 * timing.s_per_atom_step,
            "ps_per_s": fs_to_ps(dt_fs) / s_step,
        }
    return _REFERENCE_SPEED[key]


def test_surrogate_against_its_own_reference(own_reference_case, plan, engine, results):
    name = own_reference_case.name
    own = plan.own_reference
    try:
        reference, material = engine.own_reference(name)
    except (ValueError, FileNotFoundError) as err:
        results.add(
            "own_reference",
            {"model": name, "run": "reference", "notes": f"not measured: {short_error(err)}"},
        )
        pytest.fail(f"{name}: its reference does not resolve: {err}")
    named = named_calculator(getattr(reference, "named", "") or "")
    if named is not None and importlib.util.find_spec(named.package) is None:
        results.add(
            "own_reference",
            {"model": name, "run": "reference", "notes": f"not measured: {INSTALL} missing"},
        )
        pytest.skip(f"{name}: its reference {named.title} needs the optional extra: {INSTALL}")
    results.note(
        "own_reference",
        f"Stable: |drift| < {STABLE_DRIFT_MEV_ATOM_PS:g} meV/atom/ps and T below "
        f"{HOT_FACTOR:g} × the ladder's temperature (the hottest the model was trained at) over "
        "the run, no lost atoms; tried "
        + ", ".join(f"{dt:g}" for dt in own.verlet_fs)
        + " fs, each run "
        f"{own.nve_ps:g} ps or {own.min_steps} steps (whichever is longer), the energy "
        f"every {own.sample_fs:g} fs. One ladder per distinct reference and temperature.",
    )
    checkpoint = read_checkpoint(f"{PRETRAINED}{name}")
    ladder_K = ladder_temperature(checkpoint)
    recorded = checkpoint.get("reference_stable_step")
    if recorded:  # a reference too costly for a ladder here: its measured step, as recorded
        stability = recorded_stability(recorded, reference)
    else:
        stability = measure_stability(reference, material, plan, ladder_K)
    best = stability.largest_fs
    dtype = str(checkpoint.get("dtype", "float32"))
    label = f"{stability.engine} velocity Verlet, {stability.description}"
    ladder = (
        f"{stability.ladder()} ({stability.atoms} atoms, {own.nve_ps:g} ps or "
        f"{own.min_steps} steps each from {own.equilibrate_ps:g} ps equilibrated at "
        f"{ladder_K:g} K; {stability.wall_s:.0f} s)"
        if not recorded
        else f"{stability.ladder()} (not re-run: {recorded['how']})"
    )
    unstable = "; ".join(
        f"{dt:g} fs: {why}" for dt, why in stability.why.items() if why
    )  # fmt: skip
    ladder_note = (
        "largest stable step of "
        + ", ".join(f"{dt:g}" for dt in stability.drifts)
        + " fs"
        + (f" (unstable: {unstable})" if unstable else "")
        + ("; the largest tried: it may hold longer ones" if best == max(stability.drifts) else "")
    )
    failures = []
    for k, atoms in enumerate(plan.throughput_sizes):
        ref_row = {
            "model": name,
            "atoms": atoms,
            "run": label,
            "dt_fs": best,
            # measured once, on the small box: shown in the first row of the model
            "drifts": ladder if k == 0 else "as above",
            "drifts_meV_atom_ps": {f"{dt:g}": v for dt, v in stability.drifts.items()},
            "threads": THREADS,
            "notes": ladder_note if k == 0 else "as above",
        }
        ref = None
        if best is None:
            ref_row["notes"] = f"not measured: no tried step is stable ({unstable})"
        else:
            try:
                ref = reference_speed(reference, material, atoms, best, plan)
            except Exception as err:  # noqa: BLE001 - the row says why, then the test fails
                ref_row["notes"] = f"not measured: {short_error(err)}"
                failures.append(f"{name} reference at {atoms} atoms: {short_error(err)}")
            else:
                ref_row.update(
                    x_reference=1.0,
                    us_atom_step=ref["us_atom_step"],
                    ps_per_s=ref["ps_per_s"],
                    ref_steps=ref["steps"],
                )
                ref_row["notes"] += f"; {ref['steps']} timed steps"
        results.add("own_reference", ref_row)
        # a learned stride's speed is the claim (SevenNet-0, Cu SNAP): its compiled step is
        # timed too, the way a user would run it, alone and with its own energy source
        # rescaling (the fidelity runs' configuration) where it has one; a symplectic model
        # (velocity Verlet over a potential) is eager only
        learned = checkpoint["arch"] != "symplectic"
        modes = [("eager", False)] + [
            ("compiled", energy)
            for energy in (False, True)
            if learned and (not energy or checkpoint.get("energy_head") is not None)
        ]
        for (mode, energy), stride in ((m, s) for m in modes for s in own.strides_fs):
            case = StepCase(
                f"{PRETRAINED}{name}",
                atoms,
                stride,
                mode=mode,
                dtype=dtype,
                threads=THREADS,
                energy=energy,
            )
            m = engine.measure(case)
            row = {
                "model": name,
                "atoms": atoms,
                "run": f"surrogate ({mode}{' + energy head' if energy else ''}, {dtype})",
                "dt_fs": stride,
                "threads": THREADS,
                "notes": "; ".join(
                    [*m.notes, *([f"guard: {m.guard}"] if m.guard else [])]
                ),  # fmt: skip
            }
            if m.error:
                row["notes"] = f"not measured: {m.error}"
                results.add("own_reference", row)
                failures.append(f"{case.id}: {m.error}")
                continue
            s = m.step_s
            row.update(
                us_atom_step=1e6 * s / atoms,
                ps_per_s=fs_to_ps(stride) / s,
                rounds=len(m.times_s),
            )
            if ref is not None:
                row["x_reference"] = row["ps_per_s"] / ref["ps_per_s"]
            else:
                why = "has no stable step" if best is None else "was not timed"
                row["notes"] = f"× reference: – (the reference {why})" + (
                    f"; {row['notes']}" if row["notes"] else ""
                )
            results.add("own_reference", row)
            assert all(math.isfinite(t) and t > 0 for t in m.times_s)
            assert row["ps_per_s"] > 0
        if ref is not None:
            assert ref["s_step"] > 0 and math.isfinite(ref["ps_per_s"])
    if failures:
        pytest.fail("; ".join(failures))
    # the first step of the ladder (1 fs; a recorded ladder's shortest) must hold on any sane
    # reference
    assert stability.stable[min(stability.stable)], stability.why
