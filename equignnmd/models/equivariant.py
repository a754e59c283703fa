"""E(3)-equivariant message-passing surrogate (TrajCast-style), arch ``"equivariant"``.

One model maps the state (positions, velocities, cell, species) of a periodic system to every
atom's displacement over a stride Δt and its velocity at t + Δt, for any stride in the
training range: Δt and the temperature enter as scalar conditioning.

Architecture (all irreps are O(3) irreps with "natural" parity by default: ``0e + 1o + 2e +
…``; reflections are symmetries of the model, not only rotations):

* **Edges** ``r_ij = pos[j] - pos[i] + shift @ cell`` within ``cutoff``: spherical harmonics
  ``Y^l(r̂_ij)`` for l ≤ ``lmax`` (component normalisation), a Bessel basis of ``|r_ij|`` and a
  smooth polynomial envelope (order ``cutoff_p``) that takes every message to zero, with its
  first and second derivatives, at the cutoff.
* **Nodes**: a scalar conditioning vector ``c_i = [one-hot species, speed RBF, Δt RBF, T RBF]``
  (Gaussian bases of ``|v_i| / vel_rms``, of Δt over ``stats.dt_range_fs`` and of T over
  ``stats.temperature_range_K``) and the velocity direction as spherical harmonics
  ``Y^l(v̂_i)``, l = 1..``lmax``, where ``v̂ = u / sqrt(|u|² + ε²)``, ``u = v / vel_rms``: equal
  to the unit vector for moving atoms, smooth (→ 0) for atoms at rest. An equivariant linear
  layer embeds ``[c_i, Y(v̂_i)]`` into ``channels × (0e + 1o + … )``.
* **Interaction layer** (``layers`` of them):

  1. convolution (:class:`EdgeConvolution`): a channel-wise ("uvu") tensor product of the
     neighbour's features with the edge harmonics, ``m_ij[u] = a_u(r) Σ_p W_p(r) CG_p(h_j[u],
     Y(r̂_ij))``, every O(3)-allowed path p = (l1, l2 → lo) kept, paths into the same lo
     summed. The weights ``w_{u,p} = a_u(r) W_p(r)`` (per channel × per path, a factorised form
     of NequIP/TrajCast's per-edge weights; ``W_p`` carries the cutoff envelope) come from a
     linear head on a radial MLP of the Bessel basis; the MLP trunk is shared by the layers.
     The factorisation makes each edge a single (D_out × D) @ (D × channels) matrix product
     and runs several times faster on CPU than e3nn's per-path kernels;
  2. ``a_i = Σ_j m_ij / n_avg`` with ``n_avg = stats.avg_num_neighbours(cutoff)`` (a constant,
     so the model is local: it does not depend on N);
  3. equivariant linear channel mixing, then a second channel-wise tensor product with the
     atom's own velocity harmonics ``Y(v̂_i)`` whose weights are an MLP of ``c_i`` (speed, Δt,
     T, species): this is how velocities, strides and temperature condition every layer;
  4. equivariant linear → e3nn ``Gate`` (SiLU on even / tanh on odd scalars, sigmoid gates
     on l > 0);
  5. residual species-dependent self-connection ``FullyConnectedTensorProduct(h_i, one-hot)``.

  The last layer outputs ``channels × 1o`` only (every parameter then reaches the readout).
* **Readout**: an equivariant linear map to two ``1o`` vectors per atom, ``o_d`` and ``o_v``.

De-normalisation and conservation (Δt in ps, ``s_v(Δt)`` = ``stats.dvel_rms`` interpolated
linearly over ``stats.strides_fs``, ∝ Δt below the smallest stride, constant above the
largest)::

    Δv_i = s_v(Δt) · o_v,i                  v_i(t+Δt) = v_i + Δv_i − Σ_j m_j Δv_j / M
    r_i  = ½ s_v(Δt) Δt · o_d,i              d_i = v_i Δt + r_i − Σ_j m_j r_j / M

``½ s_v Δt`` is the RMS of the non-ballistic part ``d − vΔt ≈ ½ Δv Δt`` of a displacement for
short strides, so both network outputs are O(1) targets at every stride (``stats.disp_rms``
is the RMS of the *whole* displacement, dominated by ``vΔt``, so it is not used). Subtracting
the per-graph mass-weighted means makes, exactly and by construction,
``Σ m_i v_i(t+Δt) = Σ m_i v_i(t)`` (momentum) and ``Σ m_i d_i = P Δt`` (the centre of mass moves
ballistically; a system at rest keeps its centre of mass). The means are per-graph averages of
per-atom quantities, so a periodic replica of a system gets exactly the same outputs.

Everything is vectorised (no Python loop over atoms or edges); the neighbour list is rebuilt
with vesin unless the batch carries ``edge_index``/``shifts`` for this model's cutoff (vesin
handles unwrapped positions, so atoms outside the cell are fine). The model is built in
float64 and keeps exact float64 copies of its constant buffers (Clebsch-Gordan tables), which
it restores after every ``.to()``/``.float()``/``.double()``, so equivariance holds to float64
rounding (~1e-16) however the model was cast before.
``compiled()`` (or config ``compile: true``) wraps the tensor part of the forward with
``torch.compile(dynamic=True)``; the neighbour list stays eager.

``use_cueq: true`` runs both channel-wise tensor products of every layer through NVIDIA
cuEquivariance (``pip install cuequivariance-torch``; an ImportError naming the packages if it
is missing): the edge convolution, including the gather of ``h_j`` by source atom and the
scatter-sum onto the centre atom, and the velocity product ``tp_vel``. Each is written as a
cuEquivariance segmented polynomial with exactly the numbers of the e3nn path: the same Wigner
3j blocks, the same normalisation and the same weights (``w_{u,p} = a_u W_p`` for the
convolution, with ``a`` and ``W`` as separate operands so the per-edge product is never
materialised; e3nn's flat "uvu" weight layout for ``tp_vel``). The parameters, buffers and
``state_dict`` are identical with the flag on or off, so any checkpoint loads either way;
only the kernels change. The other layers (linears, gate, self-connection, spherical harmonics)
stay e3nn. On a CUDA device cuEquivariance uses its ``uniform_1d`` kernel when
``cuequivariance-ops-torch-cu12`` is installed, and its pure-torch ``naive`` method otherwise
(always on the CPU). Parity with the e3nn path (1e-10 in float64, outputs and gradients) and
equivariance are tested on the CPU through that fallback; the GPU-kernel parity test runs only
where a GPU is present.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

import torch
from e3nn import o3
from e3nn.nn import Gate
from torch import nn
from torch_geometric.utils import scatter

from ..graph import edge_vectors, neighbour_list
from .base import Prediction, SurrogateModel, TrainingStats
from .layers import BesselBasis, GaussianRBF, PolynomialCutoff, mlp, stride_scale


def hidden_irreps(channels: int, lmax: int, odd_parity: bool = False) -> o3.Irreps:
    """``channels × (0e + 1o + 2e + …)`` up to ``lmax``; with ``odd_parity`` also 0o, 1e, 2o, …"""
    irreps = []
    for ell in range(lmax + 1):
        p = (-1) ** ell
        irreps.append((channels, (ell, p)))
        if odd_parity:
            irreps.append((channels, (ell, -p)))
    return o3.Irreps(irreps).sort().irreps.simplify()


def channelwise_tp(irreps_in1: o3.Irreps, irreps_in2: o3.Irreps, targets: o3.Irreps):
    """Depthwise ("uvu") e3nn tensor product with external per-sample weights (node level).

    Every path ``(ir1 ⊗ ir2 → ir_out)`` with ``ir_out`` among the irreps of ``targets`` is kept;
    paths with the same output irrep and input multiplicity are summed into one output block
    (``mul × ir_out``), so the output has the irreps of the hidden features.
    """
    irreps_in1 = o3.Irreps(irreps_in1)
    irreps_in2 = o3.Irreps(irreps_in2)
    wanted = {ir for _, ir in o3.Irreps(targets)}
    out_blocks: list[tuple[int, o3.Irrep]] = []
    paths = []
    for i1, (mul1, ir1) in enumerate(irreps_in1):
        for i2, (_, ir2) in enumerate(irreps_in2):
            for ir_out in ir1 * ir2:
                if ir_out in wanted:
                    if (mul1, ir_out) not in out_blocks:
                        out_blocks.append((mul1, ir_out))
                    paths.append((i1, i2, (mul1, ir_out)))
    order = sorted(range(len(out_blocks)), key=lambda k: (out_blocks[k][1], out_blocks[k][0]))
    out_blocks = [out_blocks[k] for k in order]
    irreps_out = o3.Irreps(out_blocks)
    instructions = [(i1, i2, out_blocks.index(blk), "uvu", True) for i1, i2, blk in paths]
    return o3.TensorProduct(
        irreps_in1,
        irreps_in2,
        irreps_out,
        instructions,
        internal_weights=False,
        shared_weights=False,
    )


def _cueq_tp(tp: o3.TensorProduct) -> _CueqPolynomial:
    """The "uvu" e3nn ``tp`` of :func:`channelwise_tp` as a cuEquivariance polynomial.

    Same weights (e3nn's flat per-sample layout, one ``mul`` segment per instruction), same
    Wigner 3j blocks and e3nn's own path normalisation (``path_weight``); features enter and
    leave irrep-major ("ir_mul", (N, Σ dim · mul)) and the second input is the (N, dim)
    harmonics (multiplicity 1).
    """
    cue = _require_cueq()[0]
    if {mul for mul, _ in tp.irreps_in2} != {1} or len({m for m, _ in tp.irreps_in1}) != 1:
        raise ValueError(f"_cueq_tp: unsupported irreps {tp.irreps_in1} ⊗ {tp.irreps_in2}")
    stp = cue.SegmentedTensorProduct.from_subscripts("u,iu,j,ku+ijk")
    for ins in tp.instructions:
        if ins.connection_mode != "uvu" or not ins.has_weight:
            raise ValueError(f"_cueq_tp: unsupported instruction {ins}")
        stp.add_segment(0, (ins.path_shape[0],))
    stp.add_segments(1, [(ir.dim, mul) for mul, ir in tp.irreps_in1])
    stp.add_segments(2, [(ir.dim,) for _, ir in tp.irreps_in2])
    stp.add_segments(3, [(ir.dim, mul) for mul, ir in tp.irreps_out])
    for k, ins in enumerate(tp.instructions):
        ls = (tp.irreps_in1[ins.i_in1].ir.l, tp.irreps_in2[ins.i_in2].ir.l)
        w3j = o3.wigner_3j(*ls, tp.irreps_out[ins.i_out].ir.l, dtype=torch.float64)
        stp.add_path(k, ins.i_in1, ins.i_in2, ins.i_out, c=(ins.path_weight * w3j).numpy())
    return _CueqPolynomial(cue.SegmentedPolynomial.eval_last_operand(stp))


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

    With ``use_cueq`` the same sum runs as one cuEquivariance segmented polynomial
    ``out[k,u] += c_p[i,j,k] · W_p · a_u · h_j[i,u] · Y[j]`` (``c_p`` the normalised 3j block
    above; cuEquivariance's "ir_mul" layout is this (N, D, C) tensor flattened), which also
    gathers ``h_j`` by ``src`` and scatter-sums onto ``dst``. It adds no parameters or
    persistent buffers.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_sh: o3.Irreps,
        targets: o3.Irreps,
        num_radial_features: int,
        use_cueq: bool = False,
    ):
        super().__init__()
        irreps_in, irreps_sh = o3.Irreps(irreps_in), o3.Irreps(irreps_sh)
        muls = {mul for mul, _ in irreps_in}
        if len(muls) != 1:
            raise ValueError(f"EdgeConvolution: irreps_in {irreps_in} need one multiplicity")
        self.channels = muls.pop()
        self.irreps_in = irreps_in
        wanted = sorted({ir for _, ir in o3.Irreps(targets)})
        paths = []
        for b1, (_, ir1) in enumerate(irreps_in):
            for b2, (_, ir2) in enumerate(irreps_sh):
                for ir_out in ir1 * ir2:
                    if ir_out in wanted:
                        paths.append((b1, b2, ir_out))
        out_irs = [ir for ir in wanted if any(p[2] == ir for p in paths)]
        self.irreps_out = o3.Irreps([(self.channels, ir) for ir in out_irs])
        dim_in = sum(ir.dim for _, ir in irreps_in)
        dim_sh = irreps_sh.dim
        dim_out = sum(ir.dim for ir in out_irs)
        off_in = _offsets([ir.dim for _, ir in irreps_in])
        off_sh = _offsets([ir.dim for _, ir in irreps_sh])
        off_out = _offsets([ir.dim for ir in out_irs])
        fan_in = {ir: sum(1 for p in paths if p[2] == ir) for ir in out_irs}
        # cg[p, j, k, i]: path p, harmonic component j, output component k, input component i
        cg = torch.zeros(len(paths), dim_sh, dim_out, dim_in, dtype=torch.float64)
        blocks = []  # (b1, b2, bo, w3j[i, j, k]) per path: the same numbers for cuEquivariance
        for k, (b1, b2, ir_out) in enumerate(paths):
            ir1, ir2 = irreps_in[b1].ir, irreps_sh[b2].ir
            bo = out_irs.index(ir_out)
            w3j = o3.wigner_3j(ir1.l, ir2.l, ir_out.l, dtype=torch.float64)
            w3j = w3j * math.sqrt(ir_out.dim / fan_in[ir_out])
            blocks.append((b1, b2, bo, w3j))
            cg[
                k,
                off_sh[b2] : off_sh[b2] + ir2.dim,
                off_out[bo] : off_out[bo] + ir_out.dim,
                off_in[b1] : off_in[b1] + ir1.dim,
            ] = w3j.permute(1, 2, 0)
        self.num_paths = len(paths)
        self.dim_in, self.dim_sh, self.dim_out = dim_in, dim_sh, dim_out
        cg = cg.reshape(len(paths) * dim_sh, dim_out * dim_in).to(torch.get_default_dtype())
        self.register_buffer("cg", cg, persistent=False)
        self.radial_head = nn.Linear(num_radial_features, self.channels + self.num_paths)
        self.cueq = None
        if use_cueq:
            cue = _require_cueq()[0]
            # W_p (one scalar per path), a (channels), h_j (ir_mul), Y (per l) → m (ir_mul)
            stp = cue.SegmentedTensorProduct.from_subscripts(",u,iu,j,ku+ijk")
            stp.add_segments(0, [()] * self.num_paths)
            stp.add_segment(1, (self.channels,))
            stp.add_segments(2, [(ir.dim, self.channels) for _, ir in irreps_in])
            stp.add_segments(3, [(ir.dim,) for _, ir in irreps_sh])
            stp.add_segments(4, [(ir.dim, self.channels) for ir in out_irs])
            for k, (b1, b2, bo, w3j) in enumerate(blocks):
                stp.add_path(k, 0, b1, b2, bo, c=w3j.numpy())
            self.cueq = _CueqPolynomial(cue.SegmentedPolynomial.eval_last_operand(stp))

    def forward(self, x, src, dst, edge_sh, radial, envelope):
        """x (N, D_in, C) → summed messages (N, D_out, C); edge tensors are (E, ...).

        ``radial`` (E, F) are the shared radial features, ``envelope`` (E,) the cutoff envelope.
        """
        num_edges = edge_sh.shape[0]
        w = self.radial_head(radial)
        path_w = w[:, self.channels :] * envelope.unsqueeze(-1)
        if self.cueq is not None:
            n = x.shape[0]
            # cuEquivariance gathers h_j by src and scatter-sums the messages by dst itself
            out = self.cueq(
                [path_w, w[:, : self.channels].contiguous(), x.reshape(n, -1), edge_sh],
                input_indices={2: src},
                output_indices={0: dst},
                num_out=n,
            )
            return out.reshape(n, self.dim_out, self.channels)
        a = w[:, : self.channels].unsqueeze(1)
        kernel = (path_w.unsqueeze(-1) * edge_sh.unsqueeze(1)).reshape(num_edges, -1) @ self.cg
        kernel = kernel.reshape(num_edges, self.dim_out, self.dim_in)
        messages = torch.bmm(kernel, torch.index_select(x, 0, src)) * a
        return scatter(messages, dst, dim=0, dim_size=x.shape[0], reduce="sum")


def _offsets(dims: list[int]) -> list[int]:
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


class InteractionLayer(nn.Module):
    """Convolution ⊗ edge harmonics → neighbour sum → velocity conditioning → gate → residual."""

    def __init__(
        self,
        irreps_in: o3.Irreps,
        targets: o3.Irreps,
        irreps_edge_sh: o3.Irreps,
        irreps_vel_sh: o3.Irreps,
        num_species: int,
        num_radial_features: int,
        num_cond: int,
        vel_hidden: list[int],
        avg_num_neighbours: float,
        use_cueq: bool = False,
    ):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.inv_avg_num_neighbours = 1.0 / float(avg_num_neighbours)

        self.conv = EdgeConvolution(
            self.irreps_in, irreps_edge_sh, targets, num_radial_features, use_cueq
        )
        self.in_blocks = irreps_blocks(self.irreps_in)
        self.conv_blocks = irreps_blocks(self.conv.irreps_out)
        self.mix = o3.Linear(self.conv.irreps_out, self.conv.irreps_out)
        # the e3nn module stays even with cuEquivariance: its buffers are in the state_dict
        self.tp_vel = channelwise_tp(self.conv.irreps_out, irreps_vel_sh, targets)
        self.vel_blocks = irreps_blocks(self.tp_vel.irreps_out)
        self.tp_vel_cueq = _cueq_tp(self.tp_vel) if use_cueq else None
        self.vel_mlp = mlp([num_cond, *vel_hidden, self.tp_vel.weight_numel], nn.SiLU)

        targets = o3.Irreps(targets)
        scalars = o3.Irreps([(mul, ir) for mul, ir in targets if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in targets if ir.l > 0])
        acts = [nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
        gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
        self.gate = Gate(scalars, acts, gates, [torch.sigmoid] if len(gates) else [], gated)
        self.lin_out = o3.Linear(self.tp_vel.irreps_out, self.gate.irreps_in)
        self.irreps_out = self.gate.irreps_out
        self.self_connection = o3.FullyConnectedTensorProduct(
            self.irreps_in, o3.Irreps(f"{num_species}x0e"), self.irreps_out
        )

    def forward(
        self,
        x: torch.Tensor,
        onehot: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
        edge_sh: torch.Tensor,
        radial: torch.Tensor,
        envelope: torch.Tensor,
        vel_sh: torch.Tensor,
        cond: torch.Tensor,
    ) -> torch.Tensor:
        pooled = self.conv(to_ir_mul(x, self.in_blocks), src, dst, edge_sh, radial, envelope)
        pooled = from_ir_mul(pooled * self.inv_avg_num_neighbours, self.conv_blocks)
        mixed, vel_w = self.mix(pooled), self.vel_mlp(cond)
        if self.tp_vel_cueq is None:
            h = self.tp_vel(mixed, vel_sh, vel_w)
        else:
            n = x.shape[0]
            mixed = to_ir_mul(mixed, self.conv_blocks).reshape(n, -1)
            h = self.tp_vel_cueq([vel_w, mixed, vel_sh]).reshape(n, -1, self.conv.channels)
            h = from_ir_mul(h, self.vel_blocks)
        h = self.gate(self.lin_out(h))
        return h + self.self_connection(x, onehot)


def _require_cueq():
    """``(cuequivariance, cuequivariance_torch)``, or a clear ImportError naming the packages."""
    try:
        import cuequivariance
        import cuequivariance_torch
    except ImportError as err:
        raise ImportError(
            "equivariant model: config 'use_cueq' is true but NVIDIA cuEquivariance is not "
            "importable (pip install cuequivariance-torch cuequivariance-ops-torch-cu12); "
            "set use_cueq: false to use the e3nn kernels"
        ) from err
    return cuequivariance, cuequivariance_torch


class _CueqPolynomial:
    """A cuEquivariance segmented polynomial run by ``cuequivariance_torch`` on the inputs' device.

    Deliberately not an ``nn.Module``: its coefficient tables stay float64 (cast to the inputs'
    dtype at every call, so float64 runs use the exact Clebsch-Gordan values however the model
    was cast before) and stay out of ``state_dict``, so checkpoints are identical with and
    without cuEquivariance. The executor for a device is built on first use there, or when the
    model moves there (the CPU one eagerly), so that a compiled forward finds it ready:
    cuEquivariance's ``uniform_1d`` CUDA kernel
    on a GPU when ``cuequivariance_ops_torch`` is installed, its pure-torch ``naive`` method
    otherwise. Copies (``deepcopy``, pickling) rebuild their executors.
    """

    def __init__(self, polynomial):
        self.polynomial = polynomial
        self._executors: dict[torch.device, nn.Module] = {}
        self._executor(torch.device("cpu"))

    def _executor(self, device: torch.device) -> nn.Module:
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        executor = self._executors.get(device)
        if executor is None:
            cuet = _require_cueq()[1]
            kernels = importlib.util.find_spec("cuequivariance_ops_torch") is not None
            method = "uniform_1d" if device.type == "cuda" and kernels else "naive"
            executor = cuet.SegmentedPolynomial(self.polynomial, method=method).to(device)
            self._executors[device] = executor
        return executor

    def method(self, device: torch.device | str) -> str:
        """The cuEquivariance method (``"naive"`` or ``"uniform_1d"``) used on ``device``;
        builds the executor there if there is none yet."""
        return self._executor(torch.device(device)).method

    def __call__(self, inputs, input_indices=None, output_indices=None, num_out=None):
        """Inputs (batch or E, size_k) → output (batch, size) or, scattered, (num_out, size)."""
        executor = self._executor(inputs[0].device)
        shapes = None
        if output_indices:
            shapes = {k: inputs[0].new_empty(num_out, 1) for k in output_indices}
        [out] = executor(
            inputs,
            input_indices=input_indices,
            output_shapes=shapes,
            output_indices=output_indices,
        )
        return out

    def __getstate__(self):
        return {"polynomial": self.polynomial}

    def __setstate__(self, state):
        self.__init__(state["polynomial"])

    def __deepcopy__(self, memo):
        return _CueqPolynomial(self.polynomial)


def _restore_after_load(module, _incompatible_keys) -> None:
    module._restore_exact()


def _same_cutoff(value, cutoff: float) -> bool:
    if value is None:
        return False
    if isinstance(value, torch.Tensor):
        value = value.reshape(-1).tolist()
    if isinstance(value, (list, tuple)):
        return len(value) > 0 and all(abs(float(v) - cutoff) < 1e-9 for v in value)
    return abs(float(value) - cutoff) < 1e-9


class EquivariantModel(SurrogateModel):
    """E(3)-equivariant, momentum-conserving displacement + velocity surrogate (see module doc)."""

    arch = "equivariant"
    needs_descriptors = False
    predicts_velocity = True

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "cutoff": 6.0,  # Å: three full FCC shells (2.86, 4.05, 4.96 Å) inside r/rc ≤ 0.83
            "channels": 64,
            "lmax": 2,
            "layers": 3,
            "odd_parity": False,  # also carry 0o, 1e, 2o… features
            "num_radial": 8,  # Bessel functions
            "cutoff_p": 6,  # polynomial envelope order
            "radial_mlp": [64, 64],
            "vel_mlp": [64],
            "speed_basis": 8,  # Gaussians of |v| / vel_rms over [0, speed_max]
            "speed_max": 8.0,
            "vel_eps": 1.0e-3,  # |v| / vel_rms below which the velocity direction fades out
            "cond_basis": 8,  # Gaussians over stats.dt_range_fs and stats.temperature_range_K
            "temperature_conditioning": False,  # True: the label is an input (older models)
            "compile": False,
            "use_cueq": False,
        }

    def __init__(self, config: dict[str, Any], stats: TrainingStats | None = None):
        config = {**self.default_config(), **dict(config)}
        super().__init__(config, stats)
        # Build in float64 so that every constant (Clebsch-Gordan / Wigner 3j tables, basis
        # centres) is exact; keep those float64 values and refill the buffers from them after
        # every dtype/device change, so that float32 → float64 round trips stay exact.
        default = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            self._build()
        finally:
            torch.set_default_dtype(default)
        self._exact_buffers = {
            name: buf.detach().clone()
            for name, buf in self.named_buffers()
            if buf.is_floating_point()
        }
        self.register_load_state_dict_post_hook(_restore_after_load)
        self.to(default)
        self._core_fn = None
        if self.config["compile"]:
            self.compiled()

    def _restore_exact(self) -> None:
        exact = self.__dict__.get("_exact_buffers")
        if not exact:
            return
        with torch.no_grad():
            for name, value in exact.items():
                buf = self.get_buffer(name)
                buf.copy_(value.to(device=buf.device, dtype=buf.dtype))

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self._restore_exact()
        if self.config.get("use_cueq") and "embed" in self._modules:
            device = self.embed.weight.device
            for layer in self.layers:
                layer.conv.cueq.method(device)
                layer.tp_vel_cueq.method(device)
        return out

    def _build(self) -> None:
        c = self.config
        st = self.stats
        if int(c["lmax"]) < 1:
            raise ValueError(f"equivariant model: 'lmax' is {c['lmax']}; expected ≥ 1")
        if int(c["layers"]) < 1:
            raise ValueError(f"equivariant model: 'layers' is {c['layers']}; expected ≥ 1")
        if len(st.strides_fs) != len(st.dvel_rms) or not st.strides_fs:
            raise ValueError(
                f"equivariant model: stats 'strides_fs' ({len(st.strides_fs)} values) and "
                f"'dvel_rms' ({len(st.dvel_rms)} values) must be non-empty and of equal length"
            )
        if c["use_cueq"]:
            _require_cueq()

        channels, lmax = int(c["channels"]), int(c["lmax"])
        self.vel_rms = float(st.vel_rms)
        self.vel_eps = float(c["vel_eps"])
        species = [int(z) for z in st.species]
        self.num_species = len(species)
        lookup = torch.full((119,), -1, dtype=torch.long)
        lookup[torch.tensor(species, dtype=torch.long)] = torch.arange(len(species))
        self.register_buffer("species_index", lookup, persistent=False)

        order = sorted(range(len(st.strides_fs)), key=lambda k: st.strides_fs[k])
        strides = torch.tensor([float(st.strides_fs[k]) for k in order])
        dvel = torch.tensor([float(st.dvel_rms[k]) for k in order])
        self.register_buffer("stride_fs_table", strides, persistent=False)
        self.register_buffer("dvel_rms_table", dvel, persistent=False)

        self.irreps_edge_sh = o3.Irreps.spherical_harmonics(lmax)
        self.irreps_vel_sh = o3.Irreps.spherical_harmonics(lmax)
        self.sh_ls = list(range(lmax + 1))  # plain ints: torch.compile cannot guard Irreps
        self.radial_basis = BesselBasis(self.cutoff, int(c["num_radial"]))
        self.envelope = PolynomialCutoff(self.cutoff, int(c["cutoff_p"]))
        self.speed_rbf = GaussianRBF(0.0, float(c["speed_max"]), int(c["speed_basis"]))
        self.dt_rbf = GaussianRBF(*st.dt_range_fs, int(c["cond_basis"]))
        self.temp_rbf = GaussianRBF(*st.temperature_range_K, int(c["cond_basis"]))
        num_cond = self.num_species + int(c["speed_basis"]) + 2 * int(c["cond_basis"])

        hidden = hidden_irreps(channels, lmax, bool(c["odd_parity"]))
        irreps_embed_in = o3.Irreps(f"{num_cond}x0e") + self.irreps_vel_sh[1:]
        self.embed = o3.Linear(irreps_embed_in, hidden)
        radial_hidden = [int(w) for w in c["radial_mlp"]]
        self.radial_trunk = mlp([int(c["num_radial"]), *radial_hidden], nn.SiLU, last_act=True)
        radial_width = radial_hidden[-1] if radial_hidden else int(c["num_radial"])
        avg_nn = st.avg_num_neighbours(self.cutoff)
        layers = []
        irreps = hidden
        for k in range(int(c["layers"])):
            last = k == int(c["layers"]) - 1
            targets = o3.Irreps(f"{channels}x1o") if last else hidden
            layer = InteractionLayer(
                irreps,
                targets,
                self.irreps_edge_sh,
                self.irreps_vel_sh,
                self.num_species,
                radial_width,
                num_cond,
                [int(w) for w in c["vel_mlp"]],
                avg_nn,
                bool(c["use_cueq"]),
            )
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = nn.ModuleList(layers)
        self.readout = o3.Linear(irreps, o3.Irreps("2x1o"))

    # ------------------------------------------------------------------ public helpers
    compiled_note = "model.compiled(): torch.compile(dynamic=True) of the tensor core"

    def compiled(self, **kwargs) -> EquivariantModel:
        """Wrap the tensor part of the forward with ``torch.compile(dynamic=True)``; in place."""
        kwargs.setdefault("dynamic", True)
        self._core_fn = torch.compile(self._core, **kwargs)
        return self

    def dvel_scale(self, dt_fs: torch.Tensor) -> torch.Tensor:
        """RMS velocity change per component at stride ``dt_fs`` (fs), Å/ps, shape of ``dt_fs``
        (:func:`~equignnmd.models.layers.stride_scale`)."""
        return stride_scale(dt_fs, self.stride_fs_table, self.dvel_rms_table)

    # ------------------------------------------------------------------ forward
    def _edges(self, batch, pos, cell, graph):
        edge_index = getattr(batch, "edge_index", None)
        shifts = getattr(batch, "shifts", None)
        if (
            edge_index is not None
            and shifts is not None
            and _same_cutoff(getattr(batch, "cutoff", None), self.cutoff)
        ):
            return edge_index.to(pos.device), shifts.to(device=pos.device, dtype=pos.dtype)
        return neighbour_list(pos, cell, self.cutoff, graph)

    def forward(self, batch) -> Prediction:
        param = self.embed.weight
        dtype, device = param.dtype, param.device
        pos = batch.pos.to(device=device, dtype=dtype)
        vel = batch.vel.to(device=device, dtype=dtype)
        cell = batch.cell.to(device=device, dtype=dtype).reshape(-1, 3, 3)
        mass = batch.mass.to(device=device, dtype=dtype)
        dt_fs = torch.as_tensor(batch.dt_fs, device=device, dtype=dtype).reshape(-1)
        temp = torch.as_tensor(batch.temperature_K, device=device, dtype=dtype).reshape(-1)
        temp = self.temperature_input(temp)
        graph = getattr(batch, "batch", None)
        if graph is None:
            graph = torch.zeros(pos.shape[0], dtype=torch.long, device=device)
        graph = graph.to(device)
        species = self.species_index[batch.species.to(device)]
        if bool((species < 0).any()):
            bad = sorted(set(batch.species.cpu()[species.cpu() < 0].tolist()))
            raise ValueError(
                f"equivariant model: field 'species' contains atomic numbers {bad}; "
                f"this model knows {list(self.stats.species)}"
            )
        edge_index, shifts = self._edges(batch, pos, cell, graph)
        core = self._core_fn if self._core_fn is not None else self._core
        disp, vel_new = core(pos, vel, cell, mass, species, graph, dt_fs, temp, edge_index, shifts)
        return Prediction(disp, vel_new)

    def _core(self, pos, vel, cell, mass, species, graph, dt_fs, temp, edge_index, shifts):
        num_graphs = cell.shape[0]
        src, dst = edge_index[0], edge_index[1]

        # edges: harmonics, radial basis, envelope
        r_vec = edge_vectors(pos, cell, edge_index, shifts, graph)
        r = torch.linalg.vector_norm(r_vec, dim=-1)
        edge_sh = o3.spherical_harmonics(
            self.sh_ls, r_vec, normalize=True, normalization="component"
        )
        radial = self.radial_trunk(self.radial_basis(r))
        envelope = self.envelope(r)

        # nodes: species, speed, Δt, T scalars and velocity-direction harmonics
        onehot = nn.functional.one_hot(species, self.num_species).to(pos.dtype)
        u = vel / self.vel_rms
        speed = torch.sqrt((u * u).sum(-1) + self.vel_eps**2)
        vel_sh = o3.spherical_harmonics(
            self.sh_ls, u / speed.unsqueeze(-1), normalize=False, normalization="component"
        )
        dt_node = dt_fs[graph]
        cond = torch.cat(
            [onehot, self.speed_rbf(speed), self.dt_rbf(dt_node), self.temp_rbf(temp[graph])], -1
        )
        x = self.embed(torch.cat([cond, vel_sh[:, 1:]], -1))
        for layer in self.layers:
            x = layer(x, onehot, src, dst, edge_sh, radial, envelope, vel_sh, cond)
        out = self.readout(x)

        # de-normalise, then remove the per-graph mass-weighted mean of the learned parts
        dt_ps = dt_node * 1.0e-3
        s_v = self.dvel_scale(dt_fs)[graph].unsqueeze(-1)
        dvel = s_v * out[:, 3:6]
        resid = 0.5 * s_v * dt_ps.unsqueeze(-1) * out[:, 0:3]
        m = mass.unsqueeze(-1)
        total = scatter(mass, graph, dim=0, dim_size=num_graphs, reduce="sum").unsqueeze(-1)
        both = scatter(m * torch.cat([dvel, resid], -1), graph, 0, dim_size=num_graphs)
        mean = (both / total)[graph]
        vel_new = vel + (dvel - mean[:, 0:3])
        disp = vel * dt_ps.unsqueeze(-1) + (resid - mean[:, 3:6])
        return disp, vel_new


__all__ = [
    "EdgeConvolution",
    "EquivariantModel",
    "InteractionLayer",
    "channelwise_tp",
    "hidden_irreps",
]
