"""The physics kernel: kinetic observables of a batch of periodic systems, defined once.

Every temperature, kinetic energy and momentum the package reports, logs, thermostats on or
feeds a model comes from here (the rollout engine, the ASE integrator, ``predict``, the
thermostats, the analysis of trajectories, ``equignnmd convert``).

Tensors: ``vel`` (N, 3) Å/ps, ``masses`` (N,) amu and ``batch`` (N,) the system index of every
atom (``None`` for one system). Units are LAMMPS ``metal`` (Å, ps, eV, amu, K). Nothing is
modified in place.

**Temperature.** The kinetic temperature of a system is that of its thermal motion: the
centre-of-mass velocity is removed and the kinetic energy left is shared by 3N − 3 degrees of
freedom (LAMMPS' default ``compute temp`` once momentum is zeroed),

    T = 2 K_internal / ((3N − 3) k_B),   K_internal = ½ Σ m |v − v_com|².

It does not depend on whether net momentum was removed. ASE's ``Atoms.get_temperature()``
counts 3N degrees of freedom and keeps the centre-of-mass motion: for a system at rest it reads
(3N − 3)/3N of this value.

**Temperature label.** Models are conditioned on a temperature (the paper's spec). The label a
model gets is :func:`temperature_label`: the thermostat set point where there is one (NVT
rollouts, the NVT reference trajectories it was trained on), else the kinetic temperature of
the starting state, held fixed for the whole run (NVE rollouts, ``predict`` without a
temperature, ``SurrogateMD`` without a thermostat).
"""

from __future__ import annotations

import torch

from .units import KB_EV_PER_K, MVV2E

__all__ = [
    "degrees_of_freedom",
    "internal_kinetic_energy",
    "kinetic_energy",
    "kinetic_temperature",
    "net_momentum",
    "per_system",
    "remove_net_momentum",
    "sum_per_system",
    "system_index",
    "temperature_label",
]


# --------------------------------------------------------------------------------- batching
def system_index(batch: torch.Tensor | None, n: int, device) -> torch.Tensor:
    """(N,) long system index of every atom: ``batch``, or zeros for one system."""
    if batch is None:
        return torch.zeros(n, dtype=torch.long, device=device)
    return batch.to(device=device, dtype=torch.long)


def num_systems(graph: torch.Tensor) -> int:
    return int(graph.max().item()) + 1 if graph.numel() else 0


def per_system(value, num: int, like: torch.Tensor) -> torch.Tensor:
    """A scalar or (B,) value as a (B,) tensor of ``like``'s dtype and device."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(-1)
    if t.numel() == 1:
        return t.expand(num).clone()
    if t.numel() != num:
        raise ValueError(f"expected a scalar or {num} per-system values, got {t.numel()}")
    return t


def sum_per_system(x: torch.Tensor, graph: torch.Tensor, num: int) -> torch.Tensor:
    """(B, ...) sums of the per-atom ``x`` (N, ...) over each system."""
    out = torch.zeros((num,) + x.shape[1:], dtype=x.dtype, device=x.device)
    return out.index_add_(0, graph, x)


def degrees_of_freedom(batch: torch.Tensor, num: int | None = None) -> torch.Tensor:
    """(B,) float64 degrees of freedom of the thermal motion: 3N − 3 per system (at least 1)."""
    graph = batch.to(torch.long)
    num = num if num is not None else num_systems(graph)
    counts = torch.bincount(graph, minlength=num).to(torch.float64)
    return (3.0 * counts - 3.0).clamp_min(1.0)


# --------------------------------------------------------------------------------- observables
def net_momentum(vel: torch.Tensor, masses: torch.Tensor, batch=None) -> torch.Tensor:
    """(B, 3) total momentum per system, amu·Å/ps."""
    graph = system_index(batch, vel.shape[0], vel.device)
    p = masses.to(vel.dtype).unsqueeze(-1) * vel
    return sum_per_system(p, graph, num_systems(graph))


def remove_net_momentum(vel: torch.Tensor, masses: torch.Tensor, batch=None) -> torch.Tensor:
    """Velocities with each system's centre-of-mass velocity subtracted."""
    graph = system_index(batch, vel.shape[0], vel.device)
    num = num_systems(graph)
    m = masses.to(vel.dtype)
    total_p = sum_per_system(m.unsqueeze(-1) * vel, graph, num)
    total_m = sum_per_system(m, graph, num)
    return vel - (total_p / total_m.unsqueeze(-1))[graph]


def kinetic_energy(vel: torch.Tensor, masses: torch.Tensor, batch=None) -> torch.Tensor:
    """(B,) total kinetic energy ½ Σ m v² per system, eV (centre-of-mass motion included)."""
    graph = system_index(batch, vel.shape[0], vel.device)
    per_atom = 0.5 * MVV2E * masses.to(vel.dtype) * (vel * vel).sum(-1)
    return sum_per_system(per_atom, graph, num_systems(graph))


def internal_kinetic_energy(vel: torch.Tensor, masses: torch.Tensor, batch=None) -> torch.Tensor:
    """(B,) kinetic energy of the motion relative to each system's centre of mass, eV."""
    return kinetic_energy(remove_net_momentum(vel, masses, batch), masses, batch)


def kinetic_temperature(vel: torch.Tensor, masses: torch.Tensor, batch=None) -> torch.Tensor:
    """(B,) kinetic temperature 2 K_internal / ((3N − 3) k_B) per system, K (module doc)."""
    graph = system_index(batch, vel.shape[0], vel.device)
    num = num_systems(graph)
    ke = internal_kinetic_energy(vel, masses, graph)
    nf = degrees_of_freedom(graph, num=num).to(device=vel.device, dtype=vel.dtype)
    return 2.0 * ke / (nf * KB_EV_PER_K)


def temperature_label(
    vel: torch.Tensor, masses: torch.Tensor, batch=None, set_point_K=None
) -> torch.Tensor:
    """(B,) float64 temperature label a model is given for this state, K (module doc).

    ``set_point_K`` (scalar or (B,)), where there is a thermostat; otherwise the kinetic
    temperature of the state.
    """
    graph = system_index(batch, vel.shape[0], vel.device)
    num = num_systems(graph)
    if set_point_K is not None:
        like = torch.zeros((), dtype=torch.float64, device=vel.device)
        return per_system(set_point_K, num, like)
    return kinetic_temperature(vel.to(torch.float64), masses, graph)
