"""ASE integration: a surrogate model as an ``ase.md.md.MolecularDynamics`` integrator.

>>> dyn = SurrogateMD(atoms, model, timestep=20 * ase.units.fs, temperature_K=300,
...                   thermostat="langevin", friction=1 / (200 * ase.units.fs),
...                   trajectory="md.traj", logfile="md.log")
>>> dyn.attach(lambda: print(dyn.nsteps), interval=10)
>>> dyn.run(1000)

Everything ASE-facing is in ASE units (``timestep``, ``taut`` in ASE time, ``friction`` in
1/ASE time, velocities in Å per ASE time); inside, the settings are a
:class:`~equignnmd.rollout.RolloutConfig`, the first state and the stages come from
:func:`~equignnmd.rollout.init_run` and each ``step()`` is :func:`equignnmd.rollout.step`:
the same code as batched rollouts, metal units inside.

Positions: ``atoms.positions`` are kept wrapped into the cell (``wrap=False`` keeps them
unwrapped, like ASE's own integrators); ``dyn.unwrapped_positions`` (and
``atoms.arrays["unwrapped_positions"]``) hold the running sum of displacements. If something
else moves the atoms between steps, the unwrapped copy restarts from the new positions.

No forces, no calculator: ``atoms.calc`` may be ``None``. ASE's ``irun`` asks the atoms for
forces before every step's observers (``Dynamics.irun`` in ASE 3.23,
``MolecularDynamics._refresh_properties`` from 3.24 on); ``SurrogateMD`` overrides the public
``irun``/``run`` with the same loop (step, count, log, observers) without that request, so no
calculator is needed and none is made up. ASE's ``MDLogger`` asks for the potential energy
and fails without a calculator, so ``logfile=`` attaches a :class:`KineticOnlyLogger` (time,
kinetic energy, temperature) when there is none; attach it yourself in the same way
(``dyn.attach(KineticOnlyLogger(dyn, atoms, "md.log"), interval=10)``). ``Trajectory``
writers and observers work unchanged. :class:`KineticOnlyLogger` prints the package's kinetic
temperature (:func:`equignnmd.physics.kinetic_temperature`: centre-of-mass motion removed,
3N − 3 degrees of freedom); ASE's own ``get_temperature()`` and ``MDLogger`` count 3N.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.md.logger import MDLogger
from ase.md.md import MolecularDynamics

from . import physics
from .graph import check_box, make_data
from .potential import make_energy_source
from .rollout import RolloutConfig, RolloutState, init_run, read_restart
from .rollout import step as rollout_step
from .rollout.engine import check_same_settings, make_stages, run_settings
from .rollout.reporter import save_restart
from .rollout.stages import finite_difference, model_temperature, thermostat_of
from .units import FS_PER_PS, ase_time_to_fs, fs_to_ps, velocity_from_ase, velocity_to_ase

__all__ = ["KineticOnlyLogger", "SurrogateMD", "predict"]


@torch.inference_mode()
def predict(model, atoms, dt_fs: float, temperature_K: float | None = None):
    """One stride of ``model`` for one ``ase.Atoms`` with velocities (no rollout around it).

    Returns ``(displacement, velocities)`` as NumPy arrays (N, 3): displacement in Å,
    velocities in ASE units (Å per ASE time unit), computed in the model's dtype and device.
    ``temperature_K`` defaults to the label a rollout would give the same state
    (:func:`equignnmd.physics.temperature_label`: centre-of-mass motion removed, 3N − 3; not
    ASE's ``get_temperature()``). A position-only model's velocities are displacement / Δt.
    """
    from torch_geometric.data import Batch

    velocities = velocity_from_ase(atoms.get_velocities())
    if temperature_K is None:
        temperature_K = float(
            physics.temperature_label(
                torch.as_tensor(velocities), torch.as_tensor(atoms.get_masses())
            )[0]
        )
    check_box(atoms.cell.array, model.cutoff, where="predict(atoms)")
    data = make_data(
        atoms.positions,
        velocities,
        atoms.cell.array,
        atoms.numbers,
        atoms.get_masses(),
        dt_fs=dt_fs,
        temperature_K=temperature_K,
        dtype=model.dtype,
    )
    out = model(model.prepare(Batch.from_data_list([data]).to(model.device)))
    disp = out.displacement.double().cpu().numpy()
    vel = disp / fs_to_ps(dt_fs) if out.velocity is None else out.velocity.double().cpu().numpy()
    return disp, velocity_to_ase(vel)


class KineticOnlyLogger(MDLogger):
    """``MDLogger`` without potential energy: ``Time[ps] Ekin[eV] T[K]`` per line (flushed).

    For force-free surrogate dynamics where ``atoms.calc`` is ``None``. Arguments as
    ``ase.md.MDLogger`` (``stress`` is not supported). ``T`` is
    :func:`equignnmd.physics.kinetic_temperature` (3N − 3, centre of mass removed).
    """

    def __init__(self, dyn, atoms, logfile, header: bool = True, peratom: bool = False, mode="a"):
        super().__init__(dyn, atoms, logfile, header=False, peratom=peratom, mode=mode)
        self.hdr = f"{'Time[ps]':<9s} " if self.dyn is not None else ""
        self.fmt = "%-10.4f " if self.dyn is not None else ""
        self.hdr += f"{'Ekin/N[eV]' if peratom else 'Ekin[eV]':>12s}  {'T[K]':>6s}"
        self.fmt += "%12.4f  %6.1f\n"
        if header:
            self.logfile.write(self.hdr + "\n")
            self.logfile.flush()

    def __call__(self):
        ekin = self.atoms.get_kinetic_energy()
        if self.peratom:
            ekin /= self.atoms.get_global_number_of_atoms()
        vel = torch.as_tensor(velocity_from_ase(self.atoms.get_velocities()))
        temp = float(physics.kinetic_temperature(vel, torch.as_tensor(self.atoms.get_masses())))
        dat = (self.dyn.get_time() / (FS_PER_PS * units.fs),) if self.dyn is not None else ()
        dat += (ekin, temp)
        self.logfile.write(self.fmt % dat)
        self.logfile.flush()


class SurrogateMD(MolecularDynamics):
    """Molecular dynamics driven by a surrogate model (one stride per ``step``).

    Args:
        atoms: the system (periodic box at least 2 × ``model.cutoff`` wide); velocities in
            ASE units. With ``temperature_K`` set and all velocities zero, Maxwell–Boltzmann
            velocities at ``temperature_K`` (zero net momentum) are drawn first.
        model: a :class:`~equignnmd.models.base.SurrogateModel` (put in eval mode).
        timestep: the stride in ASE time units (``10 * ase.units.fs``); the model is asked for
            ``timestep / ase.units.fs`` fs.
        temperature_K: thermostat set point (the model's temperature label with a
            thermostat); without one, only used to draw missing velocities: the label is
            the initial kinetic temperature (:func:`equignnmd.physics.temperature_label`).
        thermostat: "none" | "csvr" | "langevin".
        taut: CSVR time constant, ASE time units (default 100 × timestep).
        friction: Langevin friction, 1 / ASE time units (default 1 / (100 × timestep)).
        seed: seed of the torch generator for initial velocities and thermostat noise.
        trajectory, logfile, loginterval, **kwargs: as ``MolecularDynamics`` (the log is a
            :class:`KineticOnlyLogger` when ``atoms.calc`` is None, else ASE's ``MDLogger``).
        remove_momentum: remove net momentum every step (default True).
        wrap: keep ``atoms.positions`` wrapped into the cell (default True).
        energy: a potential energy for the states (:mod:`equignnmd.potential`): an ASE
            calculator (``atoms.calc``, a user's MLIP), "reference" (the default EAM file in
            LAMMPS), "model" (the checkpoint's energy head) or an EAM file; None (default)
            for none.
        energy_rescale: with ``energy``, rescale the velocities after every model step so
            that kinetic + potential energy is conserved (NVE) or changes only by the
            thermostat's work (NVT); the thermostat then acts in half-steps around the model
            step. False: only measure it (``dyn.total_energy_eV``).
        restart: a restart file, as ASE's optimizers take one: where it exists, the dynamics
            continues from it (``atoms`` get its positions and velocities, ``nsteps`` its step,
            the thermostat its random streams: the trajectory equals one never stopped; the
            model and settings must be the run's, else a ``ValueError`` names what differs);
            it is written (atomically) every ``restart_interval`` steps. ASE's own
            ``trajectory`` file is not cut back: pass ``append_trajectory=True`` and expect
            the frames after the last restart twice.
        restart_interval: steps between restart files (default 10).
    """

    def __init__(
        self,
        atoms,
        model,
        timestep: float,
        temperature_K: float | None = None,
        thermostat: str = "none",
        taut: float | None = None,
        friction: float | None = None,
        seed: int | None = None,
        trajectory=None,
        logfile=None,
        loginterval: int = 1,
        remove_momentum: bool = True,
        wrap: bool = True,
        energy=None,
        energy_rescale: bool = True,
        restart: str | os.PathLike | None = None,
        restart_interval: int = 10,
        **kwargs,
    ):
        # settings, first state and stages before ASE opens any file: errors come first
        cfg = RolloutConfig.of(
            "SurrogateMD",
            dt_fs=ase_time_to_fs(timestep),
            temperature_K=temperature_K,
            thermostat=thermostat,
            tau_fs=None if taut is None else ase_time_to_fs(taut),
            # 1/ASE time → 1/ps: × (ASE time units per ps)
            friction_per_ps=None if friction is None else friction * FS_PER_PS * units.fs,
            seed=seed,
            remove_momentum=remove_momentum,
            write_every=0,
            progress=False,
            energy_rescale=energy_rescale,
            split_thermostat=energy is not None,
        )
        source = None if energy is None else make_energy_source(energy, model=model)
        self.restart = None if restart is None else Path(restart)
        resumed = self.restart is not None and self.restart.exists()
        if resumed:
            saved = read_restart(self.restart, device=model.device)
            state, stages = saved.state, make_stages(model, cfg, energy_source=source)
            check_same_settings(saved, run_settings(model, cfg, state, stages))
        else:
            state, stages = init_run(
                model, atoms, cfg, names=["SurrogateMD(atoms)"], energy_source=source
            )
        if resumed or state.info["init"].maxwell_boltzmann_replicas:
            atoms.set_velocities(velocity_to_ase(state.velocities.cpu().numpy()))
        super().__init__(
            atoms, timestep, trajectory=trajectory, logfile=None, loginterval=loginterval, **kwargs
        )
        self.config = cfg
        self.model = model.eval()
        self.dt_fs = cfg.dt_fs
        self.wrap = bool(wrap)
        self.seed = seed
        self.stages, self.state = stages, state
        self.thermostat = thermostat_of(self.stages)
        self.finite_difference = not bool(getattr(model, "predicts_velocity", True))
        if resumed:
            self.nsteps = state.step
            unwrapped = state.unwrapped.cpu().numpy()
            atoms.set_positions(unwrapped if not self.wrap else state.positions.cpu().numpy())
        self.unwrapped_positions = unwrapped.copy() if resumed else atoms.get_positions().copy()
        self._last_positions = atoms.get_positions().copy()
        self.restart_settings = run_settings(model, cfg, state, stages)
        if self.restart is not None:
            self.attach(self.write_restart, interval=int(restart_interval))
        if logfile:
            cls = KineticOnlyLogger if atoms.calc is None else MDLogger
            logger = self.closelater(cls(dyn=self, atoms=atoms, logfile=logfile))
            self.attach(logger, loginterval)

    def write_restart(self, path: str | os.PathLike | None = None) -> None:
        """Write the restart file (``path``, default the ``restart`` given) for the current
        state: what a new ``SurrogateMD(..., restart=path)`` continues from."""
        path = self.restart if path is None else Path(path)
        if path is None:
            raise ValueError("SurrogateMD.write_restart: give a path (no restart= was given)")
        save_restart(path, self.state, self.restart_settings)

    @property
    def total_energy_eV(self) -> float | None:
        """Kinetic (centre of mass removed) + potential energy of the current state, eV, from
        the ``energy`` source (None without one)."""
        record = self.state.info.get("energy")
        return None if record is None else float(record.total_eV[0])

    @property
    def temperature_K(self) -> float:
        """The model's temperature label, K (set point, or the initial kinetic temperature)."""
        return float(model_temperature(self.state)[0])

    def todict(self):
        d = super().todict()
        d.update(
            {
                "model": getattr(self.model, "arch", type(self.model).__name__),
                "temperature_K": self.temperature_K,
                "thermostat": self.thermostat.description if self.thermostat else "none",
            }
        )
        return d

    # ASE's loops ask the atoms for forces around every step (module doc): the same loop
    # without that request, through the public entry points.
    def irun(self, steps: int = 50):
        """Run as a generator, as ``MolecularDynamics.irun``; yields whether done."""
        self.max_steps = self.nsteps + steps
        if self.nsteps == 0:
            self.log()
            self.call_observers()
        yield self.nsteps >= self.max_steps
        while self.nsteps < self.max_steps:
            self.step()
            self.nsteps += 1
            self.log()
            self.call_observers()
            yield self.nsteps >= self.max_steps

    def run(self, steps: int = 50) -> bool:
        """Run ``steps`` strides, as ``MolecularDynamics.run``; returns True when done."""
        done = steps == 0
        for converged in self.irun(steps):
            done = converged
        return done

    def step(self):
        atoms = self.atoms
        positions = atoms.get_positions()
        if not np.array_equal(positions, self._last_positions):  # moved by someone else
            self.unwrapped_positions = positions.copy()
        current = RolloutState.from_arrays(
            [self.unwrapped_positions],
            [velocity_from_ase(atoms.get_velocities())],
            [atoms.cell.array],
            [atoms.numbers],
            [atoms.get_masses()],
            device=self.model.device,
            step=self.nsteps,
        )
        state = replace(current, generators=self.state.generators, info=self.state.info)
        self.state = rollout_step(self.model, state, self.dt_fs, self.stages)
        self.finite_difference = finite_difference(self.state)
        new = self.state
        self.unwrapped_positions = new.unwrapped.cpu().numpy()
        atoms.set_positions(new.positions.cpu().numpy() if self.wrap else self.unwrapped_positions)
        atoms.set_velocities(velocity_to_ase(new.velocities.cpu().numpy()))
        atoms.arrays["unwrapped_positions"] = self.unwrapped_positions.copy()
        self._last_positions = atoms.get_positions().copy()
