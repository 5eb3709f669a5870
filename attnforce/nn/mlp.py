"""Multi-layer perceptron with SiLU activations."""

from torch import Tensor, nn


class MLP(nn.Module):
    """``Linear -> SiLU -> ... -> Linear``, optionally with a SiLU after the last layer.

    Args:
        sizes: feature sizes, input first, e.g. ``[128, 64, 64]``.
        activate_last: apply SiLU to the output too.
    """

    def __init__(self, sizes: list[int], activate_last: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2 or activate_last:
                layers.append(nn.SiLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
