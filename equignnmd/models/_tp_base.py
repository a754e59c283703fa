"""The two channel-wise tensor products of the equivariant model, in plain torch (the default
backend). :mod:`equignnmd.models._tp_cueq` subclasses both with NVIDIA cuEquivariance kernels;
:class:`~equignnmd.models.equivariant.InteractionLayer` picks the classes at build time
(NequIP's ``_tp_scatter_base.py`` / ``_tp_scatter_cueq.py`` split). A subclass adds no
parameters and no persistent buffers, so the ``state_dict`` is the same with either backend.

Every Clebsch-Gordan (Wigner 3j) table is an exact float64 constant
(:func:`~equignnmd.models.layers.register_exact`), cast to the features' dtype at use.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import nn
from torch_geometric.utils import scatter

from ..radial import exact, register_exact
from .irreps import channelwise_paths, irreps_blocks, offsets

__all__ = ["ChannelwiseTP", "EdgeConvolution", "channelwise_tp"]


class EdgeConvolution(nn.Module):
    """Channel-wise tensor-product convolution ``Σ_j (h_j ⊗ Y(r̂_ij))`` with radial weights.

    For every path ``p = (l1, l2 → lo)`` allowed by O(3) selection rules (``lo`` among the
    ``targets``), the message from j to i in channel u is::

        m_ij[u, lo] = a_u(r_ij) · Σ_p W_p(r_ij) · CG_p(h_j[u, l1], Y^{l2}(r̂_ij))

    ``W_p`` (per path, shared by channels, times the cutoff envelope) and ``a_u`` (per
    channel) are a linear head on the radial features (the output of a radial
    MLP of the Bessel basis shared by all layers, given to :meth:`forward`): a factorised
    form ``w_{u,p} = a_u W_p`` of the per-edge "uvu" weights of NequIP/TrajCast. It makes every
    edge one small matrix product, ``m_ij = a ⊙ (K_ij @ h_j)`` with ``K_ij = Σ_p W_p CG_p Y^{l2}``,
    whose per-edge intermediates are ``channels × dim`` instead of ``channels × Σ_paths dim``
    (≈ 4× less memory traffic and no per-path kernel launches). CG blocks use e3nn's real
    Wigner 3j symbols with component normalisation, divided by √(number of paths into lo).

    Features enter and leave irrep-major ("ir_mul"): (N, D, C) with D = Σ dim over the irreps
    blocks, so that the per-edge product is one batched (D_out × D) @ (D × C) matrix product.
    ``self.paths`` keeps ``(b1, b2, bo, w3j[i, j, k])`` of every path (float64) for backends.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_sh: o3.Irreps,
        targets: o3.Irreps,
        num_radial_features: int,
    ):
        super().__init__()
        irreps_in, irreps_sh = o3.Irreps(irreps_in), o3.Irreps(irreps_sh)
        muls = {mul for mul, _ in irreps_in}
        if len(muls) != 1:
            raise ValueError(f"EdgeConvolution: irreps_in {irreps_in} need one multiplicity")
        self.channels = muls.pop()
        self.irreps_in, self.irreps_sh = irreps_in, irreps_sh
        paths = channelwise_paths(irreps_in, irreps_sh, targets)
        wanted = sorted({ir for _, ir in o3.Irreps(targets)})
        out_irs = [ir for ir in wanted if any(p[2] == ir for p in paths)]
        self.irreps_out = o3.Irreps([(self.channels, ir) for ir in out_irs])
        dim_in = sum(ir.dim for _, ir in irreps_in)
        dim_sh = irreps_sh.dim
        dim_out = sum(ir.dim for ir in out_irs)
        off_in = offsets([ir.dim for _, ir in irreps_in])
        off_sh = offsets([ir.dim for _, ir in irreps_sh])
        off_out = offsets([ir.dim for ir in out_irs])
        fan_in = {ir: sum(1 for p in paths if p[2] == ir) for ir in out_irs}
        # cg[p, j, k, i]: path p, harmonic component j, output component k, input component i
        cg = torch.zeros(len(paths), dim_sh, dim_out, dim_in, dtype=torch.float64)
        self.paths: list[tuple[int, int, int, torch.Tensor]] = []
        for k, (b1, b2, ir_out) in enumerate(paths):
            ir1, ir2 = irreps_in[b1].ir, irreps_sh[b2].ir
            bo = out_irs.index(ir_out)
            w3j = o3.wigner_3j(ir1.l, ir2.l, ir_out.l, dtype=torch.float64)
            w3j = w3j * math.sqrt(ir_out.dim / fan_in[ir_out])
            self.paths.append((b1, b2, bo, w3j))
            cg[
                k,
                off_sh[b2] : off_sh[b2] + ir2.dim,
                off_out[bo] : off_out[bo] + ir_out.dim,
                off_in[b1] : off_in[b1] + ir1.dim,
            ] = w3j.permute(1, 2, 0)
        self.num_paths = len(paths)
        self.dim_in, self.dim_sh, self.dim_out = dim_in, dim_sh, dim_out
        register_exact(self, "cg", cg.reshape(len(paths) * dim_sh, dim_out * dim_in))
        # the table's nonzeros per kernel entry (out, in): ((path, harmonic, coefficient), ...);
        # plain Python constants for the compiled path (a few hundred, not per atom or edge)
        flat = cg.reshape(len(paths), dim_sh, dim_out * dim_in)
        terms: list[list[tuple[int, int, float]]] = [[] for _ in range(dim_out * dim_in)]
        for p, j, c in torch.nonzero(flat).tolist():
            terms[c].append((p, j, float(flat[p, j, c])))
        self.kernel_terms = tuple(tuple(t) for t in terms)
        self.radial_head = nn.Linear(num_radial_features, self.channels + self.num_paths)

    def weights(self, radial: torch.Tensor, envelope: torch.Tensor):
        """Per-edge ``(W_p · envelope (E, paths), a (E, channels))`` from the radial features."""
        w = self.radial_head(radial)
        return w[:, self.channels :] * envelope.unsqueeze(-1), w[:, : self.channels]

    def forward(self, x, src, dst, edge_sh, radial, envelope, slots=None):
        """x (N, D_in, C) → summed messages (N, D_out, C); edge tensors are (E, ...).

        ``src``/``dst`` (E,) are the neighbour and centre atoms, ``edge_sh`` (E, D_sh) the edge
        harmonics, ``radial`` (E, F) the shared radial features, ``envelope`` (E,) the cutoff
        envelope. ``slots`` = M: the edges are the node-major table of
        :func:`~equignnmd.graph.node_major_edges` (E = N·M, centre i's edges at i·M … i·M + M - 1),
        so the neighbour sum is a reduction over M instead of a scatter.
        """
        num_edges = edge_sh.shape[0]
        path_w, a = self.weights(radial, envelope)
        if torch.compiler.is_compiling():
            # the kernel from the CG table's nonzeros only (83 of its 8,019 entries at lmax 2)
            # as pointwise sums, which inductor fuses into one loop, instead of a dense matrix
            # product; then the contraction as a broadcast product and sum, which inductor
            # fuses with the gather, the channel weights and the sum without materialising
            # (E, D_out, D_in, C) (2-4x faster than the batched tiny-matrix bmm). 4000 atoms,
            # lmax 2, 2 threads: 105 → 84 µs per atom-step for the sparse kernel
            # (docs/studies/issue-13-fast-step.md).
            # Eager keeps the dense product and bmm (one call each; a few hundred small calls
            # would cost more there).
            zero = edge_sh.new_zeros(num_edges)
            entries = []
            for terms in self.kernel_terms:
                entry = None
                for p, j, coefficient in terms:
                    term = (path_w[:, p] * edge_sh[:, j]) * coefficient
                    entry = term if entry is None else entry + term
                entries.append(zero if entry is None else entry)
            kernel = torch.stack(entries, 1).reshape(num_edges, self.dim_out, self.dim_in)
            if slots is not None:
                # one reduction over (slot, input component) straight into (N, D_out, C): no
                # (E, D_out, C) message array written and scattered back (at 4,000 atoms that
                # array is ~200 MB per layer; one compiled stride 591 → 395 ms with the
                # pointwise velocity product below: studies/2026-12-07-issue-36-compiled-step.md)
                n, c = x.shape[0], x.shape[-1]
                xs = (x[src] * a.unsqueeze(1)).reshape(n, slots, 1, self.dim_in, c)
                table = kernel.reshape(n, slots, self.dim_out, self.dim_in, 1)
                return (table * xs).sum((1, 3))
            messages = (kernel.unsqueeze(-1) * x[src].unsqueeze(1)).sum(2) * a.unsqueeze(1)
        else:
            cg = exact(self.cg, x.dtype)
            kernel = (path_w.unsqueeze(-1) * edge_sh.unsqueeze(1)).reshape(num_edges, -1) @ cg
            kernel = kernel.reshape(num_edges, self.dim_out, self.dim_in)
            messages = torch.bmm(kernel, torch.index_select(x, 0, src)) * a.unsqueeze(1)
        if slots is not None:
            return messages.reshape(x.shape[0], slots, self.dim_out, -1).sum(1)
        return scatter(messages, dst, dim=0, dim_size=x.shape[0], reduce="sum")


class ChannelwiseTP(o3.TensorProduct):
    """Depthwise ("uvu") e3nn tensor product with external per-sample weights (node level),
    built by :func:`channelwise_tp`.

    It *is* an ``o3.TensorProduct`` (same parameters, buffers, ``state_dict`` and weight layout:
    one ``mul`` segment per instruction, flat), but its forward contracts exact float64 Wigner
    3j blocks (times e3nn's ``path_weight``) cast to the inputs' dtype, instead of e3nn's
    default-dtype ``_w3j_*`` buffers, so a float32 → float64 round trip stays exact.
    The second input must have multiplicity 1 per block (spherical harmonics).

    ``forward(x1 (N, irreps_in1.dim), x2 (N, irreps_in2.dim), weight (N, weight_numel))``
    → (N, irreps_out.dim), e3nn layout.
    """

    def __init__(self, irreps_in1, irreps_in2, irreps_out, instructions):
        super().__init__(
            irreps_in1,
            irreps_in2,
            irreps_out,
            instructions,
            internal_weights=False,
            shared_weights=False,
        )
        if {mul for mul, _ in self.irreps_in2} != {1}:
            raise ValueError(f"ChannelwiseTP: irreps_in2 {self.irreps_in2} need multiplicity 1")
        # every path's nonzero coefficients ((i, j, k, path_weight · w3j[i, j, k]), ...) as
        # plain Python constants for the compiled forward (about a hundred at lmax 2)
        path_terms = []
        for k, ins in enumerate(self.instructions):
            if ins.connection_mode != "uvu" or not ins.has_weight:
                raise ValueError(f"ChannelwiseTP: unsupported instruction {ins}")
            ls = (self.irreps_in1[ins.i_in1].ir.l, self.irreps_in2[ins.i_in2].ir.l)
            w3j = o3.wigner_3j(*ls, self.irreps_out[ins.i_out].ir.l, dtype=torch.float64)
            cg = ins.path_weight * w3j
            register_exact(self, f"cg_{k}", cg)
            path_terms.append(
                tuple((i, j, o, float(cg[i, j, o])) for i, j, o in torch.nonzero(cg).tolist())
            )
        self.path_terms = tuple(path_terms)
        # plain ints for the forward (torch.compile cannot guard e3nn's Irreps)
        self.weight_sizes = [math.prod(ins.path_shape) for ins in self.instructions]
        self.in1_blocks = irreps_blocks(self.irreps_in1)
        self.in2_slices = tuple((s.start, s.stop) for s in self.irreps_in2.slices())
        self.out_blocks = irreps_blocks(self.irreps_out)
        self.path_blocks = tuple((i.i_in1, i.i_in2, i.i_out) for i in self.instructions)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        n = x1.shape[0]
        ws = weight.split(self.weight_sizes, dim=-1)
        if torch.compiler.is_compiling():
            return self._pointwise(x1, x2, ws)
        out: list[torch.Tensor | None] = [None] * len(self.out_blocks)
        pairs: dict[tuple[int, int], torch.Tensor] = {}
        for k, (i1, i2, io) in enumerate(self.path_blocks):
            if (i1, i2) not in pairs:  # (N, mul, d1, d2) outer product, once per input pair
                start, mul, dim = self.in1_blocks[i1]
                a = x1[:, start : start + mul * dim].reshape(n, mul, dim)
                lo, hi = self.in2_slices[i2]
                pairs[(i1, i2)] = a.unsqueeze(-1) * x2[:, lo:hi].reshape(n, 1, 1, hi - lo)
            xx = pairs[(i1, i2)]
            mul = xx.shape[1]
            cg = exact(getattr(self, f"cg_{k}"), x1.dtype)  # (d1, d2, d_out)
            r = (xx.reshape(n * mul, -1) @ cg.reshape(-1, cg.shape[-1])).reshape(n, mul, -1)
            r = r * ws[k].unsqueeze(-1)
            out[io] = r if out[io] is None else out[io] + r
        blocks = []
        for o, (_, mul, dim) in zip(out, self.out_blocks):
            blocks.append(x1.new_zeros(n, mul * dim) if o is None else o.reshape(n, mul * dim))
        return torch.cat(blocks, dim=-1)

    def _pointwise(self, x1: torch.Tensor, x2: torch.Tensor, ws) -> torch.Tensor:
        """The same product as a sum over the 3j symbols' nonzeros of (N, mul) columns, which
        inductor fuses into a few node-level loops: the dense form is one small matrix product
        per path with an inner size of 3-25 (about a tenth of a compiled stride)."""
        n = x1.shape[0]
        columns: list[list[torch.Tensor | None]] = [[None] * dim for _, _, dim in self.out_blocks]
        for k, (i1, i2, io) in enumerate(self.path_blocks):
            start, mul, dim = self.in1_blocks[i1]
            a = x1[:, start : start + mul * dim].reshape(n, mul, dim) * ws[k].unsqueeze(-1)
            lo = self.in2_slices[i2][0]
            for i, j, k_out, coefficient in self.path_terms[k]:
                term = a[:, :, i] * (x2[:, lo + j] * coefficient).unsqueeze(-1)
                previous = columns[io][k_out]
                columns[io][k_out] = term if previous is None else previous + term
        blocks = []
        for cols, (_, mul, dim) in zip(columns, self.out_blocks):
            full = [x1.new_zeros(n, mul) if c is None else c for c in cols]
            blocks.append(torch.stack(full, -1).reshape(n, mul * dim))
        return torch.cat(blocks, dim=-1)


def channelwise_tp(
    irreps_in1: o3.Irreps, irreps_in2: o3.Irreps, targets: o3.Irreps, cls=ChannelwiseTP
):
    """A :class:`ChannelwiseTP` (or the backend subclass ``cls``) over every path
    ``(ir1 ⊗ ir2 → ir_out)`` with ``ir_out`` among the irreps of ``targets``; paths with the
    same output irrep and input multiplicity are summed into one output block
    (``mul × ir_out``), so the output has the irreps of the hidden features.
    """
    irreps_in1 = o3.Irreps(irreps_in1)
    irreps_in2 = o3.Irreps(irreps_in2)
    out_blocks: list[tuple[int, o3.Irrep]] = []
    paths = []
    for i1, i2, ir_out in channelwise_paths(irreps_in1, irreps_in2, targets):
        blk = (irreps_in1[i1].mul, ir_out)
        if blk not in out_blocks:
            out_blocks.append(blk)
        paths.append((i1, i2, blk))
    order = sorted(range(len(out_blocks)), key=lambda k: (out_blocks[k][1], out_blocks[k][0]))
    out_blocks = [out_blocks[k] for k in order]
    instructions = [(i1, i2, out_blocks.index(blk), "uvu", True) for i1, i2, blk in paths]
    return cls(irreps_in1, irreps_in2, o3.Irreps(out_blocks), instructions)
