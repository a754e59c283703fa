"""Typed settings of a rollout: what the CLI, ``evaluate``, the quickstart and ``SurrogateMD``
build, checked (errors name the field) before anything is read or written."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, build
from ..io import TRAJECTORY_SUFFIX

__all__ = ["THERMOSTATS", "RolloutConfig"]

THERMOSTATS = {
    "none": "none",
    "nve": "none",
    "csvr": "csvr",
    "bussi": "csvr",
    "langevin": "langevin",
}
"""Accepted thermostat names (case-insensitive) → the thermostat."""


@dataclass
class RolloutConfig:
    """Settings of one rollout (metal units: fs, K, Å, 1/ps).

    Ensemble: NVE (``thermostat="none"``) gives the model each replica's initial kinetic
    temperature as its label; NVT (``"csvr"``, τ = ``tau_fs``, default 100 × stride, or
    ``"langevin"``, ``friction_per_ps``, default 1 / τ) gives it the set point
    ``temperature_K``. ``temperature_K`` (scalar or one per replica) also sets the
    Maxwell–Boltzmann velocities of structures that have none (or all, with
    ``resample_velocities``: replicas of one structure with given velocities otherwise start
    identical and, in NVE, stay identical). Replica r draws from a stream seeded ``seed + r``.

    Guard (:class:`~equignnmd.rollout.guard.StabilityGuard`): ``min_distance_A``,
    ``max_temperature_factor`` and ``min_temperature_factor`` (off when None);
    ``on_unstable`` "stop" (warn, return) or "raise"
    (:class:`~equignnmd.rollout.guard.RolloutUnstable`).

    Output (:class:`~equignnmd.rollout.reporter.RolloutReporter`; nothing written when
    ``out_dir`` is None): ``fmt`` "extxyz" | "lammps-dump", a frame every ``write_every``
    steps (0 = none), a ``thermo.csv`` row every ``thermo_every`` steps (default
    ``write_every``, or 1), and a restart file every ``restart_every`` steps (default the
    frame interval, else the thermo interval; 0: none). ``progress``: a progress bar. An
    ``out_dir`` that holds anything is refused (:func:`equignnmd.outputs.claim_output`) unless
    ``overwrite`` (write over it) or ``resume`` (continue the run there from its restart file,
    exactly as if it had not stopped, up to ``steps`` strides in all; the settings must be
    the same).

    Speed: ``neighbour_skin_A`` (Å) is the skin of the neighbour list the model step keeps
    across strides (:class:`~equignnmd.rollout.stages.ModelStep`; exact, 0 searches every
    stride).
    """

    dt_fs: float = 0.0
    """stride, fs"""
    steps: int = 0
    temperature_K: float | list[float] | None = None
    """set point, K, and the temperature of initial velocities where the structure has none"""
    thermostat: str = "none"
    """thermostat"""
    tau_fs: float | None = None
    """thermostat time constant τ, fs: CSVR's, and Langevin's damping time (default: 100 ×
    stride)"""
    friction_per_ps: float | None = None
    """Langevin friction, 1/ps (default: 1 / τ)"""
    replicas: int = 1
    """replicas run together"""
    seed: int | None = 0
    """replica r draws from seed + r"""
    remove_momentum: bool = True
    resample_velocities: bool = False
    min_distance_A: float = 1.5
    """guard: stop below this pair distance, Å"""
    max_temperature_factor: float | None = 3.0
    """guard: stop above this × the model's temperature label"""
    min_temperature_factor: float | None = None
    """guard: stop below this × set point (default: off)"""
    on_unstable: str = "stop"
    out_dir: str | None = None
    """output folder"""
    fmt: str = "extxyz"
    """trajectory format"""
    write_every: int = 10
    """write a frame every N steps (0: none)"""
    thermo_every: int | None = None
    restart_every: int | None = None
    """write the restart file every N steps (0: none) (default: write_every, else every
    thermo row)"""
    overwrite: bool = False
    resume: bool = False
    progress: bool = True
    energy: str = "none"
    """potential energy of the states: none, reference (with --data the dataset's own
    reference, LAMMPS or ASE; else the default Al EAM file), model (the checkpoint's energy
    head, see `equignnmd energy-head`) or an EAM file; with it the
    velocities are rescaled after each step so that K + U is conserved (NVE) or changes only
    by the thermostat's work (NVT), and thermo.csv gains energy columns"""
    energy_rescale: bool = True
    split_thermostat: bool | None = None
    neighbour_skin_A: float = 1.0
    novelty: bool = True
    """watch for atoms outside the model's training states where the checkpoint carries their
    box (equignnmd.novelty): thermo.csv gains novelty_fraction, a warning comes once"""
    novelty_threshold: float = 0.02
    """the fraction of a replica's atoms outside the training box that warns (or stops)"""
    novelty_stop: bool = False
    """stop the run (as the stability guard does) when the novelty threshold is passed"""

    @classmethod
    def of(cls, source: str = "rollout settings", **values: Any) -> RolloutConfig:
        """Built from keyword values, types checked, then :meth:`validate`d (``ConfigError``,
        a ``ValueError``, naming ``source`` and the field). Paths, NumPy values and tensors
        are accepted where a string or number is expected."""
        values = {k: _plain(v) for k, v in values.items()}
        if "thermostat" in values and values["thermostat"] is None:
            values["thermostat"] = "none"
        return build(cls, values, source)

    @property
    def thermostat_kind(self) -> str:
        """The thermostat: one of none, csvr, langevin."""
        return THERMOSTATS[self.thermostat.lower()]

    @property
    def nvt(self) -> bool:
        return self.thermostat_kind != "none"

    @property
    def set_point_K(self):
        """The thermostat's set point (the model's label), or None for NVE."""
        return self.temperature_K if self.nvt else None

    @property
    def has_energy(self) -> bool:
        return self.energy.lower() not in ("", "none")

    @property
    def split(self) -> bool:
        """Whether the thermostat acts in half-strides around the model step."""
        return self.has_energy if self.split_thermostat is None else bool(self.split_thermostat)

    @property
    def thermo_interval(self) -> int:
        return int(self.thermo_every or (self.write_every or 1))

    @property
    def restart_interval(self) -> int:
        """Steps between restart files (0: none)."""
        if self.restart_every is not None:
            return int(self.restart_every)
        return int(self.write_every or self.thermo_interval)

    def validate(self, source: str = "rollout settings") -> None:
        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(
                f"{source}: field '{name}' = {getattr(self, name)!r}; expected {expected}"
            )

        if not (self.dt_fs > 0 and math.isfinite(self.dt_fs)):
            raise bad("dt_fs", "a stride > 0 fs")
        if self.steps < 0:
            raise bad("steps", "≥ 0")
        if not (self.neighbour_skin_A >= 0 and math.isfinite(self.neighbour_skin_A)):
            raise bad("neighbour_skin_A", "a skin ≥ 0 Å (0: a neighbour search every stride)")
        if self.thermostat.lower() not in THERMOSTATS:
            raise bad("thermostat", "one of none, csvr, langevin")
        temps = self.temperature_K if isinstance(self.temperature_K, list) else [self.temperature_K]
        if self.temperature_K is not None and not all(t >= 0 for t in temps):
            raise bad("temperature_K", "temperatures ≥ 0 K")
        if self.nvt and self.temperature_K is None:
            raise ConfigError(
                f"{source}: field 'temperature_K' is missing: thermostat {self.thermostat!r} "
                "needs temperature_K (the set point)"
            )
        for name in ("tau_fs", "friction_per_ps"):
            if getattr(self, name) is not None and not getattr(self, name) >= 0:
                raise bad(name, "≥ 0 or unset (the default)")
        if self.replicas < 1:
            raise bad("replicas", "≥ 1")
        if not self.min_distance_A >= 0:
            raise bad("min_distance_A", "≥ 0 Å")
        if self.max_temperature_factor is not None and not self.max_temperature_factor > 0:
            raise bad("max_temperature_factor", "> 0 or unset (no upper bound)")
        if self.min_temperature_factor is not None and not self.min_temperature_factor >= 0:
            raise bad("min_temperature_factor", "≥ 0 or unset (no lower bound)")
        if self.on_unstable not in ("stop", "raise"):
            raise bad("on_unstable", "'stop' or 'raise'")
        if self.fmt not in TRAJECTORY_SUFFIX:
            raise bad("fmt", f"a trajectory format, one of {list(TRAJECTORY_SUFFIX)}")
        if self.write_every < 0:
            raise bad("write_every", "≥ 0 (0: no frames)")
        if self.thermo_every is not None and self.thermo_every < 0:
            raise bad("thermo_every", "≥ 1, or unset (write_every)")
        if not 0.0 <= self.novelty_threshold < 1.0:
            raise bad("novelty_threshold", "a fraction of the atoms in [0, 1)")
        if self.restart_every is not None and self.restart_every < 0:
            raise bad("restart_every", "≥ 0 (0: no restart file), or unset (write_every)")
        if self.resume and self.out_dir is None:
            raise bad("resume", "False without out_dir (a run resumes from its out_dir)")
        if self.resume and self.overwrite:
            raise bad("resume", "not both resume and overwrite (continue, or start anew)")


def _plain(value: Any) -> Any:
    """A path as ``str``; NumPy scalars / arrays and tensors as Python numbers / lists."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    return value
