"""ASE integration: a surrogate model as an ``ase.md.md.MolecularDynamics`` integrator.

>>> dyn = SurrogateMD(atoms, model, timestep=10 * ase.units.fs, temperature_K=300,
...                   thermostat="csvr", trajectory="md.traj", logfile="md.log")
>>> dyn.attach(lambda: print(dyn.nsteps), interval=10)
>>> dyn.run(1000)

Everything ASE-facing is in ASE units (``timestep``, ``taut`` in ASE time, ``friction`` in
1/ASE time, velocities in Å per ASE time); the step itself is :func:`equignnmd.rollout.advance`
(the same code as batched rollouts, metal units inside).

Positions: ``atoms.positions`` are kept wrapped into the cell (``wrap=False`` keeps them
unwrapped, like ASE's own integrators); ``dyn.unwrapped_positions`` (and
``atoms.arrays["unwrapped_positions"]``) hold the running sum of displacements. If something
else moves the atoms between steps, the unwrapped copy restarts from the new positions.

No forces, no calculator: ``atoms.calc`` may be ``None``. ASE's ``MDLogger`` asks for the
potential energy and fails without a calculator, so ``logfile=`` attaches a
:class:`KineticOnlyLogger` (time, kinetic energy, temperature) when there is none; attach it
yourself in the same way (``dyn.attach(KineticOnlyLogger(dyn, atoms, "md.log"), interval=10)``).
``Trajectory`` writers and observers work unchanged. Temperatures printed by ASE use 3N degrees
of freedom; the model's and the thermostat's use 3N − 3 (net momentum is removed every step).
"""

from __future__ import annotations

import numpy as np
import torch
from ase import units
from ase.md.logger import MDLogger
from ase.md.md import MolecularDynamics

from . import thermostats as th
from .graph import check_box
from .rollout import RolloutState, advance, make_generators
from .units import velocity_from_ase, velocity_to_ase

__all__ = ["KineticOnlyLogger", "SurrogateMD"]


class KineticOnlyLogger(MDLogger):
    """``MDLogger`` without potential energy: ``Time[ps] Ekin[eV] T[K]`` per line (flushed).

    For force-free surrogate dynamics where ``atoms.calc`` is ``None``. Arguments as
    ``ase.md.MDLogger`` (``stress`` is not supported).
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
        dat = (self.dyn.get_time() / (1000 * units.fs),) if self.dyn is not None else ()
        dat += (ekin, self.atoms.get_temperature())
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
        temperature_K: thermostat set point and the model's temperature label; for NVE
            (``thermostat="none"``) defaults to the initial kinetic temperature.
        thermostat: "none" | "csvr" | "langevin".
        taut: CSVR time constant, ASE time units (default 100 × timestep).
        friction: Langevin friction, 1 / ASE time units (default 1 / (100 × timestep)).
        seed: seed of the torch generator for initial velocities and thermostat noise.
        trajectory, logfile, loginterval, **kwargs: as ``MolecularDynamics`` (the log is a
            :class:`KineticOnlyLogger` when ``atoms.calc`` is None, else ASE's ``MDLogger``).
        remove_momentum: remove net momentum every step (default True).
        wrap: keep ``atoms.positions`` wrapped into the cell (default True).
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
        **kwargs,
    ):
        super().__init__(
            atoms, timestep, trajectory=trajectory, logfile=None, loginterval=loginterval, **kwargs
        )
        check_box(atoms.cell.array, model.cutoff, where="SurrogateMD(atoms)")
        self.model = model.eval()
        self.dt_fs = float(timestep / units.fs)
        self.thermostat_name = (thermostat or "none").lower()
        self.remove_momentum = bool(remove_momentum)
        self.wrap = bool(wrap)
        self.seed = seed
        device = model.device
        self.generators = make_generators(1, seed, device)
        self.finite_difference = not bool(getattr(model, "predicts_velocity", True))
        nvt = self.thermostat_name not in ("none", "nve")
        if nvt and temperature_K is None:
            raise ValueError(f"SurrogateMD: thermostat {thermostat!r} needs temperature_K")

        masses = torch.as_tensor(atoms.get_masses(), dtype=torch.float64, device=device)
        self._dof = None if self.remove_momentum else 3 * len(atoms)
        vel = atoms.get_velocities()
        if not np.any(vel):
            if temperature_K is None or temperature_K <= 0:
                raise ValueError(
                    "SurrogateMD: the atoms have no velocities; pass temperature_K or set them "
                    "(e.g. ase.md.velocitydistribution.MaxwellBoltzmannDistribution)"
                )
            v = th.maxwell_boltzmann(masses, float(temperature_K), self.generators[0])
            atoms.set_velocities(velocity_to_ase(v.cpu().numpy()))
        if temperature_K is None:
            v = torch.as_tensor(velocity_from_ase(atoms.get_velocities()), device=device)
            if self.remove_momentum:
                v = th.remove_net_momentum(v, masses)
            temperature_K = float(th.kinetic_temperature(v, masses, dof=self._dof)[0])
        self.temperature_K = float(temperature_K)
        self.thermostat = th.make_thermostat(
            self.thermostat_name,
            self.temperature_K,
            self.dt_fs,
            tau_fs=None if taut is None else taut / units.fs,
            friction_per_ps=None if friction is None else friction * 1000.0 * units.fs,
            dof=self._dof,
        )
        self.unwrapped_positions = atoms.get_positions().copy()
        self._last_positions = atoms.get_positions().copy()
        if logfile:
            cls = KineticOnlyLogger if atoms.calc is None else MDLogger
            logger = self.closelater(cls(dyn=self, atoms=atoms, logfile=logfile))
            self.attach(logger, loginterval)

    def todict(self):
        d = super().todict()
        d.update(
            {
                "model": getattr(self.model, "arch", type(self.model).__name__),
                "temperature_K": self.temperature_K,
                "thermostat": getattr(self.thermostat, "description", "none"),
            }
        )
        return d

    def _refresh_properties(self):
        # The base class asks for forces after every step; a surrogate run has none to give.
        if self.atoms.calc is not None:
            super()._refresh_properties()

    def step(self):
        atoms = self.atoms
        positions = atoms.get_positions()
        if not np.array_equal(positions, self._last_positions):  # moved by someone else
            self.unwrapped_positions = positions.copy()
        state = RolloutState.from_arrays(
            [self.unwrapped_positions],
            [velocity_from_ase(atoms.get_velocities())],
            [atoms.cell.array],
            [atoms.numbers],
            [atoms.get_masses()],
            device=self.model.device,
            step=self.nsteps,
        )
        new, self.finite_difference = advance(
            self.model,
            state,
            self.dt_fs,
            self.temperature_K,
            self.thermostat,
            self.generators,
            self.remove_momentum,
        )
        self.unwrapped_positions = new.unwrapped.cpu().numpy()
        atoms.set_positions(new.positions.cpu().numpy() if self.wrap else self.unwrapped_positions)
        atoms.set_velocities(velocity_to_ase(new.velocities.cpu().numpy()))
        atoms.arrays["unwrapped_positions"] = self.unwrapped_positions.copy()
        self._last_positions = atoms.get_positions().copy()
