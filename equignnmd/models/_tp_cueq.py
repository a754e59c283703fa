"""NVIDIA cuEquivariance backend of the equivariant model's two channel-wise tensor products.

Swapped in at build time by config ``use_cueq: true`` (``pip install cuequivariance-torch``;
an ImportError naming the packages if it is missing): :class:`CueqEdgeConvolution` and
:class:`CueqChannelwiseTP` subclass the torch/e3nn classes of
:mod:`equignnmd.models._tp_base` and replace only their forward. Each is written as a
cuEquivariance segmented polynomial with exactly the numbers of the base path: the same Wigner
3j blocks, the same normalisation and the same weights (``w_{u,p} = a_u W_p`` for the
convolution, with ``a`` and ``W`` as separate operands so the per-edge product is never
materialised, and which also gathers ``h_j`` by source atom and scatter-sums onto the centre;
e3nn's flat "uvu" weight layout for the velocity product). They add no parameters or
persistent buffers, so parameters, buffers and ``state_dict`` are identical with the flag on or
off and any checkpoint loads either way; only the kernels change.

On a CUDA device cuEquivariance uses its ``uniform_1d`` kernel when
``cuequivariance-ops-torch-cu12`` is installed, and its pure-torch ``naive`` method otherwise
(always on the CPU). Parity with the base path (1e-10 in float64, outputs and gradients) and
equivariance are tested on the CPU through that fallback; the GPU-kernel parity test runs only
where a GPU is present.
"""

from __future__ import annotations

import importlib.util

import torch
from e3nn import o3
from torch import nn

from ._tp_base import ChannelwiseTP, EdgeConvolution
from .irreps import from_ir_mul, irreps_blocks, to_ir_mul

__all__ = ["CueqChannelwiseTP", "CueqEdgeConvolution", "CueqPolynomial", "require_cueq"]


def require_cueq():
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


class CueqPolynomial:
    """A cuEquivariance segmented polynomial run by ``cuequivariance_torch`` on the inputs' device.

    Deliberately not an ``nn.Module``: its coefficient tables stay float64 (cast to the inputs'
    dtype at every call, so float64 runs use the exact Clebsch-Gordan values however the model
    was cast before) and stay out of ``state_dict``, so checkpoints are identical with and
    without cuEquivariance. The executor for a device is built on first use there (the CPU one
    eagerly), or by :meth:`method`, which the model calls before its (possibly compiled) tensor
    core so that a compiled forward finds it ready: cuEquivariance's ``uniform_1d`` CUDA kernel
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
            cuet = require_cueq()[1]
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
        return CueqPolynomial(self.polynomial)


class CueqEdgeConvolution(EdgeConvolution):
    """:class:`EdgeConvolution` as one cuEquivariance polynomial
    ``out[k,u] += c_p[i,j,k] · W_p · a_u · h_j[i,u] · Y[j]`` (``c_p`` the normalised 3j block;
    cuEquivariance's "ir_mul" layout is the (N, D, C) feature tensor flattened), which also
    gathers ``h_j`` by ``src`` and scatter-sums onto ``dst``."""

    def __init__(self, irreps_in, irreps_sh, targets, num_radial_features: int):
        super().__init__(irreps_in, irreps_sh, targets, num_radial_features)
        cue = require_cueq()[0]
        # W_p (one scalar per path), a (channels), h_j (ir_mul), Y (per l) → m (ir_mul)
        stp = cue.SegmentedTensorProduct.from_subscripts(",u,iu,j,ku+ijk")
        stp.add_segments(0, [()] * self.num_paths)
        stp.add_segment(1, (self.channels,))
        stp.add_segments(2, [(ir.dim, self.channels) for _, ir in self.irreps_in])
        stp.add_segments(3, [(ir.dim,) for _, ir in self.irreps_sh])
        stp.add_segments(4, [(ir.dim, self.channels) for _, ir in self.irreps_out])
        for k, (b1, b2, bo, w3j) in enumerate(self.paths):
            stp.add_path(k, 0, b1, b2, bo, c=w3j.numpy())
        self.cueq = CueqPolynomial(cue.SegmentedPolynomial.eval_last_operand(stp))

    def prepare(self, device: torch.device) -> None:
        """Build the executor for ``device`` now (before a compiled forward runs)."""
        self.cueq.method(device)

    def forward(self, x, src, dst, edge_sh, radial, envelope, slots=None):
        n = x.shape[0]  # a node-major table (``slots``) is summed by ``dst`` all the same
        path_w, a = self.weights(radial, envelope)
        out = self.cueq(
            [path_w, a.contiguous(), x.reshape(n, -1), edge_sh],
            input_indices={2: src},
            output_indices={0: dst},
            num_out=n,
        )
        return out.reshape(n, self.dim_out, self.channels)


class CueqChannelwiseTP(ChannelwiseTP):
    """:class:`ChannelwiseTP` as a cuEquivariance polynomial: the same weights (e3nn's flat
    per-sample layout, one ``mul`` segment per instruction), the same Wigner 3j blocks and
    e3nn's own path normalisation (``path_weight``). Features are converted to irrep-major
    ("ir_mul") and back around the polynomial, so inputs and output are in e3nn's layout as
    for the base class; every input block must have the same multiplicity."""

    def __init__(self, irreps_in1, irreps_in2, irreps_out, instructions):
        super().__init__(irreps_in1, irreps_in2, irreps_out, instructions)
        if len({m for m, _ in self.irreps_in1}) != 1 or len({m for m, _ in self.irreps_out}) != 1:
            raise ValueError(f"CueqChannelwiseTP: unsupported irreps {self.irreps_in1}")
        cue = require_cueq()[0]
        stp = cue.SegmentedTensorProduct.from_subscripts("u,iu,j,ku+ijk")
        for ins in self.instructions:
            stp.add_segment(0, (ins.path_shape[0],))
        stp.add_segments(1, [(ir.dim, mul) for mul, ir in self.irreps_in1])
        stp.add_segments(2, [(ir.dim,) for _, ir in self.irreps_in2])
        stp.add_segments(3, [(ir.dim, mul) for mul, ir in self.irreps_out])
        for k, ins in enumerate(self.instructions):
            ls = (self.irreps_in1[ins.i_in1].ir.l, self.irreps_in2[ins.i_in2].ir.l)
            w3j = o3.wigner_3j(*ls, self.irreps_out[ins.i_out].ir.l, dtype=torch.float64)
            stp.add_path(k, ins.i_in1, ins.i_in2, ins.i_out, c=(ins.path_weight * w3j).numpy())
        self.cueq = CueqPolynomial(cue.SegmentedPolynomial.eval_last_operand(stp))
        self.in_blocks = irreps_blocks(self.irreps_in1)
        self.out_blocks = irreps_blocks(self.irreps_out)
        self.channels = self.irreps_in1[0].mul

    def prepare(self, device: torch.device) -> None:
        """Build the executor for ``device`` now (before a compiled forward runs)."""
        self.cueq.method(device)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        n = x1.shape[0]
        x1 = to_ir_mul(x1, self.in_blocks).reshape(n, -1)
        out = self.cueq([weight, x1, x2]).reshape(n, -1, self.channels)
        return from_ir_mul(out, self.out_blocks)
