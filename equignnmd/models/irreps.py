"""Irreps helpers of the equivariant model: hidden irreps, tensor-product paths, layouts.

Two layouts of an equivariant feature tensor appear in :mod:`equignnmd.models.equivariant`:

* e3nn's ("mul_ir"): (N, Σ mul·dim), block after block, every block ``mul × ir`` stored as
  (mul, dim) row-major;
* irrep-major ("ir_mul"): (N, Σ dim, mul) when every block has the same ``mul`` (the channels),
  the layout of the edge convolution and of cuEquivariance.

:func:`to_ir_mul` / :func:`from_ir_mul` convert between them with the ``(start, mul, dim)`` block
tables of :func:`irreps_blocks` (plain ints, so ``torch.compile`` can specialise on them).
"""

from __future__ import annotations

import torch
from e3nn import o3

__all__ = [
    "channelwise_paths",
    "from_ir_mul",
    "hidden_irreps",
    "irreps_blocks",
    "offsets",
    "to_ir_mul",
]


def hidden_irreps(channels: int, lmax: int, odd_parity: bool = False) -> o3.Irreps:
    """``channels × (0e + 1o + 2e + …)`` up to ``lmax``; with ``odd_parity`` also 0o, 1e, 2o, …"""
    irreps = []
    for ell in range(lmax + 1):
        p = (-1) ** ell
        irreps.append((channels, (ell, p)))
        if odd_parity:
            irreps.append((channels, (ell, -p)))
    return o3.Irreps(irreps).sort().irreps.simplify()


def channelwise_paths(
    irreps_in1: o3.Irreps, irreps_in2: o3.Irreps, targets: o3.Irreps
) -> list[tuple[int, int, o3.Irrep]]:
    """Every O(3)-allowed path ``(block of in1, block of in2, ir_out)`` with ``ir_out`` among the
    irreps of ``targets``, in the order (in1 block, in2 block, e3nn's order of ``ir1 × ir2``)."""
    wanted = {ir for _, ir in o3.Irreps(targets)}
    paths = []
    for b1, (_, ir1) in enumerate(o3.Irreps(irreps_in1)):
        for b2, (_, ir2) in enumerate(o3.Irreps(irreps_in2)):
            for ir_out in ir1 * ir2:
                if ir_out in wanted:
                    paths.append((b1, b2, ir_out))
    return paths


def offsets(dims: list[int]) -> list[int]:
    """Start of every block of the given sizes: ``[0, d0, d0 + d1, …]`` (without the total)."""
    out, total = [], 0
    for d in dims:
        out.append(total)
        total += d
    return out


def irreps_blocks(irreps: o3.Irreps) -> tuple[tuple[int, int, int], ...]:
    """``(start, mul, dim)`` of every block of ``irreps`` in the e3nn layout (plain ints)."""
    irreps = o3.Irreps(irreps)
    return tuple((s.start, mul, ir.dim) for (mul, ir), s in zip(irreps, irreps.slices()))


def to_ir_mul(x: torch.Tensor, blocks) -> torch.Tensor:
    """e3nn layout (N, Σ mul·dim) → (N, Σ dim, mul); every block must have the same mul."""
    n = x.shape[0]
    parts = [
        x[:, start : start + mul * dim].reshape(n, mul, dim).transpose(1, 2)
        for start, mul, dim in blocks
    ]
    return torch.cat(parts, dim=1)


def from_ir_mul(x: torch.Tensor, blocks) -> torch.Tensor:
    """(N, Σ dim, mul) → e3nn layout (N, Σ mul·dim)."""
    n = x.shape[0]
    parts, row = [], 0
    for _, mul, dim in blocks:
        parts.append(x[:, row : row + dim].transpose(1, 2).reshape(n, mul * dim))
        row += dim
    return torch.cat(parts, dim=-1)
