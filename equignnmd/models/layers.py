"""Layers shared by the architectures (no copy-pasted variants: add here, reuse there); the
radial basis, its envelope and the exact constants live one layer down in
:mod:`equignnmd.radial` (the learned potential, :mod:`equignnmd.potential`, uses them too).

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

from ..radial import exact, register_exact


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
