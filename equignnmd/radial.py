"""Radial functions of a pair distance, shared by the models and the learned potential.

:class:`BesselBasis` (DimeNet/NequIP's sin(nπr/r_c)/r) and :class:`PolynomialCutoff` (a smooth
envelope vanishing at r_c with two derivatives), each with closed-form first and second
derivatives (forces without autograd), and the exact-constant helpers :func:`register_exact` /
:func:`exact` (:mod:`equignnmd.models.layers` explains them). Distances in Å.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BesselBasis", "PolynomialCutoff", "exact", "register_exact"]


def register_exact(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """Keep ``value`` (converted to float64) on ``module`` as the exact constant ``name``."""
    bits = value.detach().to(torch.float64).contiguous().view(torch.int64)
    module.register_buffer(name, bits, persistent=False)


def exact(bits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The float64 constant stored by :func:`register_exact`, cast to ``dtype`` (same shape)."""
    return bits.view(torch.float64).to(dtype)


class BesselBasis(nn.Module):
    """Radial Bessel basis ``sqrt(2/rc) sin(nπ r/rc) / r`` for n = 1..num_basis (DimeNet/NequIP).

    Maps distances (...,) Å → (..., num_basis). Every function vanishes at ``r = rc``; pair it
    with :class:`PolynomialCutoff` for smooth derivatives there. The frequencies nπ/rc are fixed:
    computed in float64, kept in the ``state_dict`` as the buffer ``freqs`` (default dtype) and
    read exactly (:func:`register_exact`) in the input's dtype.
    """

    def __init__(self, cutoff: float, num_basis: int = 8):
        super().__init__()
        self.cutoff = float(cutoff)
        self.prefactor = (2.0 / self.cutoff) ** 0.5
        freqs = torch.arange(1, int(num_basis) + 1, dtype=torch.float64) * torch.pi / self.cutoff
        self.register_buffer("freqs", freqs.to(torch.get_default_dtype()))
        register_exact(self, "freqs_exact", freqs)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(exact(self.freqs_exact, r.dtype) * r) / r

    def with_derivative(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B(r), dB/dr), each (..., num_basis), in closed form (forces without autograd)."""
        r = r.unsqueeze(-1)
        omega = exact(self.freqs_exact, r.dtype)
        value = self.prefactor * torch.sin(omega * r) / r
        return value, self.prefactor * omega * torch.cos(omega * r) / r - value / r

    def curvature(self, r: torch.Tensor) -> torch.Tensor:
        """d²B/dr², (..., num_basis), in closed form."""
        r = r.unsqueeze(-1)
        omega = exact(self.freqs_exact, r.dtype)
        sin, cos = torch.sin(omega * r), torch.cos(omega * r)
        return self.prefactor * (
            -omega * omega * sin / r - 2.0 * omega * cos / r**2 + 2.0 * sin / r**3
        )


class PolynomialCutoff(nn.Module):
    """Smooth envelope ``1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)``, x = r/rc.

    Equals 1 at r = 0 and goes to 0 at r = rc with vanishing first and second derivatives;
    0 beyond the cutoff. Maps (...,) → (...,).
    """

    def __init__(self, cutoff: float, p: int = 6):
        super().__init__()
        if int(p) != p or p < 1:
            raise ValueError(f"PolynomialCutoff: p = {p}; expected a positive integer")
        self.cutoff = float(cutoff)
        self.p = int(p)
        # the coefficients as constants: float attributes used in arithmetic inside a compiled
        # graph can become symbolic inputs on a recompile, which inductor then fails to lower
        self.coeffs = (
            0.5 * (p + 1.0) * (p + 2.0),
            p * (p + 2.0),
            0.5 * p * (p + 1.0),
        )

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        c0, c1, c2 = self.coeffs
        x = r / self.cutoff
        xp = x.pow(self.p)  # integer powers (x^p, x^(p+1), x^(p+2))
        out = 1.0 - c0 * xp + c1 * xp * x - c2 * xp * x * x
        return out * (x < 1.0).to(out.dtype)

    def with_derivative(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c(r), dc/dr), each (...,), in closed form (forces without autograd)."""
        c0, c1, c2 = self.coeffs
        p = self.p
        x = r / self.cutoff
        inside = (x < 1.0).to(r.dtype)
        xp1 = x.pow(p - 1)
        value = (1.0 - c0 * xp1 * x + c1 * xp1 * x * x - c2 * xp1 * x * x * x) * inside
        slope = (-c0 * p + c1 * (p + 1) * x - c2 * (p + 2) * x * x) * xp1 * inside
        return value, slope / self.cutoff

    def curvature(self, r: torch.Tensor) -> torch.Tensor:
        """d²c/dr², (...,), in closed form (0 beyond the cutoff)."""
        c0, c1, c2 = self.coeffs
        p, x = self.p, r / self.cutoff
        inside = (x < 1.0).to(r.dtype)
        value = (
            -c0 * p * (p - 1) * x ** (p - 2)
            + c1 * (p + 1) * p * x ** (p - 1)
            - c2 * (p + 2) * (p + 1) * x**p
        )
        return value * inside / self.cutoff**2
