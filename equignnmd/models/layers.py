"""Layers shared by the architectures (no copy-pasted variants: add here, reuse there).

Exact constants. A model that must keep float64 accuracy whatever it was cast to before (the
equivariant model: its symmetries hold to float64 rounding after ``.float().double()``) keeps
its constant tables (Clebsch-Gordan blocks, basis frequencies and centres) with
:func:`register_exact` and reads them with :func:`exact`: a non-persistent buffer holding the
*bit pattern* of the float64 values as int64. ``Module.to(dtype)``, ``.float()`` and
``.double()`` cast floating-point tensors only, so the values are never rounded; ``.to(device)``
moves them like any buffer; they are not in the ``state_dict``. No global state (no default
dtype) is involved.
"""

from __future__ import annotations

import torch
from torch import nn


def register_exact(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """Keep ``value`` (converted to float64) on ``module`` as the exact constant ``name``."""
    bits = value.detach().to(torch.float64).contiguous().view(torch.int64)
    module.register_buffer(name, bits, persistent=False)


def exact(bits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The float64 constant stored by :func:`register_exact`, cast to ``dtype`` (same shape)."""
    return bits.view(torch.float64).to(dtype)


class GaussianRBF(nn.Module):
    """Gaussian radial basis on ``n`` evenly spaced centres over [low, high].

    ``exp(-γ (x - μ_k)²)`` with γ = 1/Δ², Δ the centre spacing (the paper's choice).
    Maps (...,) → (..., n).

    The centres are the persistent buffer ``centres`` (in the ``state_dict``). With
    ``exact=True`` they are computed in float64, the buffer holds them in the default dtype,
    and the forward reads an exact float64 copy (:func:`register_exact`) cast to the input's
    dtype; with ``exact=False`` (the paper model) the forward reads the buffer.
    """

    def __init__(self, low: float, high: float, n: int, exact: bool = False):
        super().__init__()
        if high <= low:
            high = low + 1.0
        spacing = (high - low) / max(int(n) - 1, 1)
        self.gamma = 1.0 / spacing**2
        if exact:
            centres = torch.linspace(float(low), float(high), int(n), dtype=torch.float64)
            self.register_buffer("centres", centres.to(torch.get_default_dtype()))
            register_exact(self, "centres_exact", centres)
        else:
            self.register_buffer("centres", torch.linspace(float(low), float(high), int(n)))
            self.centres_exact = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centres = self.centres if self.centres_exact is None else exact(self.centres_exact, x.dtype)
        return torch.exp(-self.gamma * (x.unsqueeze(-1) - centres) ** 2)


def stride_scale(dt_fs: torch.Tensor, strides_fs, values) -> torch.Tensor:
    """The one stride-scale rule of the package: a per-stride statistic (an RMS velocity change
    or displacement, ``values`` at the training ``strides_fs``) at strides ``dt_fs``.

    Piecewise linear through (0, 0) and the training points, constant beyond the largest
    training stride: both statistics grow ∝ Δt for short strides and saturate in a solid (the
    velocity decorrelates, the displacement is bounded by the vibration amplitude), so a linear
    extrapolation would grow without bound. Used by the trainer's loss normalisation and noise
    and by both architectures' output scales. Returns the shape and dtype of ``dt_fs``.
    """
    dt = torch.as_tensor(dt_fs)
    xs = torch.as_tensor(strides_fs, dtype=dt.dtype, device=dt.device).reshape(-1)
    ys = torch.as_tensor(values, dtype=dt.dtype, device=dt.device).reshape(-1)
    if xs.numel() != ys.numel() or xs.numel() == 0:
        raise ValueError(
            f"stride_scale: {xs.numel()} strides and {ys.numel()} values; expected as many, ≥ 1"
        )
    order = torch.argsort(xs)
    xs, ys = xs[order], ys[order]
    # prepend (0, 0) without a data-dependent branch (a Python ``if`` on a tensor value breaks
    # a compiled graph): a table that already starts at 0 keeps its own value there, and the
    # zero-width segment this leaves is never interpolated across (its weight is 0)
    y_first = torch.where(xs[:1] > 0, ys.new_zeros(1), ys[:1])
    xs = torch.cat([xs.new_zeros(1), xs])
    ys = torch.cat([y_first, ys])
    idx = torch.searchsorted(xs, dt.contiguous()).clamp(1, xs.numel() - 1)
    x0, x1, y0, y1 = xs[idx - 1], xs[idx], ys[idx - 1], ys[idx]
    w = ((dt - x0) / (x1 - x0).clamp_min(torch.finfo(xs.dtype).tiny)).clamp(0.0, 1.0)
    return y0 + w * (y1 - y0)


def mlp(sizes: list[int], act: type[nn.Module] = nn.GELU, last_act: bool = False) -> nn.Sequential:
    """Linear layers of the given widths with ``act`` between them (and after, if asked)."""
    layers: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2 or last_act:
            layers.append(act())
    return nn.Sequential(*layers)


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
