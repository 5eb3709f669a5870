"""Equivariant building blocks on e3nn irreps (the pieces Equiformer is made of).

Features are (N, irreps.dim) tensors in e3nn's layout: irreps blocks one after the other, each block
``mul x (2l+1)`` with the multiplicity index slow. Every linear map here is ``e3nn.o3.Linear`` (biases on the
even scalars only), every non-linearity acts on norms or is gated by scalars, so equivariance holds by
construction; the tests check it numerically.
"""

from typing import Optional

import torch
from e3nn import o3
from e3nn.nn import Gate
from torch import Tensor, nn

SCALAR = o3.Irrep("0e")


def sort_even_first(irreps: o3.Irreps) -> tuple[o3.Irreps, list[int]]:
    """Irreps sorted by l, even before odd, and the new position of each old entry."""
    order = sorted(range(len(irreps)), key=lambda k: (irreps[k].ir.l, -irreps[k].ir.p, k))
    position = [0] * len(irreps)
    for new, old in enumerate(order):
        position[old] = new
    return o3.Irreps([irreps[k] for k in order]), position


def gated(irreps: o3.Irreps) -> Gate:
    """A gate whose output is ``irreps``: SiLU on the even scalars, every other irrep multiplied by the sigmoid
    of its own extra scalar. Its input irreps (``.irreps_in``) are the scalars, the gates, then the gated."""
    irreps = o3.Irreps(irreps)
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps if ir == SCALAR]).simplify()
    others = o3.Irreps([(mul, ir) for mul, ir in irreps if ir != SCALAR]).simplify()
    gates = o3.Irreps([(mul, "0e") for mul, _ in others]).simplify()
    return Gate(scalars, [nn.functional.silu] * len(scalars), gates, [torch.sigmoid] * len(gates), others)


class SphericalHarmonics(o3.SphericalHarmonics):
    """e3nn's spherical harmonics module, made copyable: e3nn's holds a TorchScript function, which
    ``copy.deepcopy`` (and so scripting a copy of a model) cannot copy. Shapes: (E, 3) -> (E, irreps.dim)."""

    def __deepcopy__(self, memo):
        return SphericalHarmonics(self.irreps_out, self.normalize, self.normalization)


class EquivariantLayerNorm(nn.Module):
    """Layer norm over channels, per irrep type (Equiformer's, after the SE(3)-Transformer's).

    Even scalars are centred over their channels; every irrep type is divided by the root of its mean squared
    component over channels, then scaled per channel (and shifted, for even scalars) by learned affine terms.

    Shapes: (N, irreps.dim) -> (N, irreps.dim).
    """

    def __init__(self, irreps: o3.Irreps, eps: float = 1e-5):
        super().__init__()
        irreps = o3.Irreps(irreps)
        self.eps = eps
        self.fields: list[tuple[int, int, int, bool]] = []  # (start, mul, dim, is even scalar)
        start = 0
        for mul, ir in irreps:
            self.fields.append((start, mul, ir.dim, ir == SCALAR))
            start += mul * ir.dim
        self.weight = nn.Parameter(torch.ones(irreps.num_irreps))
        self.bias = nn.Parameter(torch.zeros(sum(mul for mul, ir in irreps if ir == SCALAR)))

    def forward(self, x: Tensor) -> Tensor:
        out = []
        weight_start = 0
        bias_start = 0
        for start, mul, dim, scalar in self.fields:
            field = x.narrow(1, start, mul * dim).reshape(-1, mul, dim)
            if scalar:
                field = field - field.mean(dim=1, keepdim=True)
            inverse_norm = (field.pow(2).mean(dim=(1, 2), keepdim=True) + self.eps).rsqrt()
            field = field * inverse_norm * self.weight.narrow(0, weight_start, mul).reshape(1, mul, 1)
            weight_start += mul
            if scalar:
                field = field + self.bias.narrow(0, bias_start, mul).reshape(1, mul, 1)
                bias_start += mul
            out.append(field.reshape(-1, mul * dim))
        return torch.cat(out, dim=1)


class RadialMLP(nn.Module):
    """Per-edge tensor-product weights from the radial basis: ``[Linear, LayerNorm, SiLU] x k, Linear + offset``.

    Shapes: (E, neurons[0]) -> (E, neurons[-1]).
    """

    def __init__(self, neurons: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(neurons[:-2], neurons[1:-1], strict=True):
            layers += [nn.Linear(fan_in, fan_out), nn.LayerNorm(fan_out), nn.SiLU()]
        layers.append(nn.Linear(neurons[-2], neurons[-1], bias=False))
        self.net = nn.Sequential(*layers)
        bound = neurons[-2] ** -0.5
        self.offset = nn.Parameter(torch.empty(neurons[-1]).uniform_(-bound, bound))
        for layer in layers:
            if isinstance(layer, nn.Linear) and layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def forward(self, rbf: Tensor) -> Tensor:
        return self.net(rbf) + self.offset


class DepthwiseTensorProduct(nn.Module):
    """Channel-wise tensor product of edge features with the spherical harmonics of the edge ('uvu').

    Every path ``l_in x l_sh -> l_out`` is kept whose output is in ``irreps_filter`` or is an even scalar; each
    channel of each path has its own weight, either per edge (from a :class:`RadialMLP` of the radial basis,
    ``radial_neurons`` given) or shared by all edges (``radial_neurons=None``).

    Shapes: x (E, irreps_in.dim), sh (E, irreps_sh.dim), rbf (E, radial_neurons[0]) -> (E, irreps_out.dim).
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_filter: o3.Irreps,
        radial_neurons: Optional[list[int]],
    ):
        super().__init__()
        irreps_in, irreps_sh, irreps_filter = o3.Irreps(irreps_in), o3.Irreps(irreps_sh), o3.Irreps(irreps_filter)
        keep = {ir for _, ir in irreps_filter} | {SCALAR}
        outputs, instructions = [], []
        for i, (mul, ir_in) in enumerate(irreps_in):
            for j, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in keep:
                        instructions.append((i, j, len(outputs), "uvu", True))
                        outputs.append((mul, ir_out))
        irreps_out, position = sort_even_first(o3.Irreps(outputs))
        instructions = [(i, j, position[k], mode, train) for i, j, k, mode, train in instructions]
        shared = radial_neurons is None
        self.tensor_product = o3.TensorProduct(
            irreps_in,
            irreps_sh,
            irreps_out,
            instructions,
            internal_weights=shared,
            shared_weights=shared,
            path_normalization="none",
        )
        self.radial = None if shared else RadialMLP(list(radial_neurons) + [self.tensor_product.weight_numel])
        self.irreps_out = irreps_out.simplify()

    def forward(self, x: Tensor, sh: Tensor, rbf: Tensor) -> Tensor:
        if self.radial is None:
            return self.tensor_product(x, sh)
        return self.tensor_product(x, sh, self.radial(rbf))


class HeadIndex(nn.Module):
    """Which attention head each channel component of ``num_heads x irreps_head`` features belongs to.

    The features' irreps are ``irreps_head`` with every multiplicity times ``num_heads``; within each irrep
    block, head ``k`` owns multiplicities ``[k m, (k+1) m)``. ``channel_head`` (C,) maps each component to its
    head, ``head_matrix`` (C, H) sums components into heads.
    """

    def __init__(self, irreps_head: o3.Irreps, num_heads: int):
        super().__init__()
        heads = []
        for mul, ir in o3.Irreps(irreps_head):
            heads.append(torch.arange(num_heads).repeat_interleave(mul * ir.dim))
        channel_head = torch.cat(heads)
        self.irreps = o3.Irreps([(mul * num_heads, ir) for mul, ir in o3.Irreps(irreps_head)])
        self.register_buffer("channel_head", channel_head, persistent=False)
        self.register_buffer(
            "head_matrix",
            nn.functional.one_hot(channel_head, num_heads).to(torch.get_default_dtype()),
            persistent=False,
        )
