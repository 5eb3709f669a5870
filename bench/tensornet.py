"""TorchMD-Net's TensorNet behind attnforce's training loop, for the side-by-side benchmarks.

:class:`TensorNetPotential` has the interface of :class:`attnforce.models.Potential`: positions (N, 3) Å,
atomic numbers, the structure index of each atom -> energies (B,) eV (float64) and forces (N, 3) eV/Å by autograd.
It also shares its energy model: ``E = scale * sum_i e_i + sum_i shift[Z_i]``, with the scale and per-element
shifts fitted on the training set exactly as for our models. Only the network differs. TensorNet finds its own
neighbours (torchmd-net's ``OptimizedDistance``) within the same 5 Å cutoff.
"""

import torch
from torch import Tensor, nn

#: torchmd-net's TensorNet settings for these benchmarks; ``embedding_dimension`` sets the size.
#: No ``check_errors``: torchmd-net 3.1 ignores it, and reads its presence in a checkpoint as the old [N, F, 3, 3]
#: layout, permuting the weights it loads (see :func:`save_torchmdnet_checkpoint`).
TENSORNET_ARGS = dict(
    model="tensornet",
    embedding_dimension=72,
    num_layers=2,
    num_rbf=32,
    rbf_type="expnorm",
    trainable_rbf=False,
    activation="silu",
    cutoff_lower=0.0,
    cutoff_upper=5.0,
    max_z=128,
    max_num_neighbors=64,
    equivariance_invariance_group="O(3)",
    static_shapes=False,
    derivative=False,
    output_model="Scalar",
    reduce_op="add",
    precision=32,
    prior_model=None,
    atom_filter=-1,
    standardize=False,
    aggr="add",
    box_vecs=None,
    charge=False,
    spin=False,
    vector_cutoff=False,
)


class TensorNetPotential(nn.Module):
    """TensorNet with attnforce's energy scale and per-element shifts.

    Args:
        embedding_dimension: TensorNet's width (72: 253,657 parameters, near the small Equiformer; 80: 310,321,
            near the small SAKE).
        energy_scale: eV per unit of network output.
        element_shifts: (119,) eV per atom of each element.
    """

    def __init__(self, embedding_dimension: int, energy_scale: float, element_shifts: Tensor):
        super().__init__()
        from torchmdnet.models.model import create_model

        self.args = dict(TENSORNET_ARGS, embedding_dimension=embedding_dimension)
        self.network = create_model(self.args)
        self.cutoff = float(self.args["cutoff_upper"])
        self.register_buffer("energy_scale", torch.tensor(float(energy_scale)))
        self.register_buffer("element_shifts", element_shifts.clone().to(torch.float64))

    def energy(self, positions: Tensor, atomic_numbers: Tensor, batch: Tensor, num_structures: int) -> Tensor:
        """Energies (B,) eV, float64."""
        learned, _ = self.network(atomic_numbers, positions, batch)  # (B, 1): the sum over atoms of e_i
        reference = torch.zeros(num_structures, dtype=torch.float64, device=positions.device)
        reference = reference.index_add(0, batch, self.element_shifts.index_select(0, atomic_numbers))
        return learned.squeeze(-1).to(torch.float64) * float(self.energy_scale) + reference

    def forward(
        self, positions: Tensor, atomic_numbers: Tensor, batch: Tensor, num_structures: int, create_graph: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Energies (B,) eV (float64) and forces (N, 3) eV/Å, as :meth:`attnforce.models.Potential.forward`."""
        if not positions.requires_grad:
            positions = positions.detach().requires_grad_(True)
        energy = self.energy(positions, atomic_numbers, batch, num_structures)
        (gradient,) = torch.autograd.grad([energy.sum()], [positions], create_graph=create_graph)
        return energy, -gradient


def save_torchmdnet_checkpoint(potential: TensorNetPotential, path) -> None:
    """``potential`` as a torchmd-net checkpoint (``hyper_parameters`` + ``state_dict``), the file that
    ``torchmdnet.models.model.load_model`` and openmm-ml's ``MLPotential('torchmdnet', modelPath=...)`` read.

    torchmd-net multiplies the summed atomic outputs by its ``std`` buffer and adds an ``Atomref`` prior, so our
    scale and per-element shifts map onto those; its own autograd gives the forces (``derivative=True``).
    """
    from torchmdnet.models.model import create_model

    args = dict(potential.args, derivative=True, prior_model={"Atomref": {"max_z": len(potential.element_shifts)}})
    template = create_model(args)
    state = template.state_dict()
    for key, value in potential.network.state_dict().items():
        state[key] = value
    state["std"] = potential.energy_scale.detach().clone().reshape(state["std"].shape).to(state["std"].dtype)
    atomref = [key for key in state if key.startswith("prior_model.") and key.endswith("atomref.weight")]
    if len(atomref) != 1:
        raise RuntimeError(f"expected one Atomref prior in torchmd-net's model, found {atomref}")
    state[atomref[0]] = potential.element_shifts.to(state[atomref[0]].dtype).reshape(state[atomref[0]].shape)
    template.load_state_dict(state)
    torch.save({"hyper_parameters": args, "state_dict": {f"model.{k}": v for k, v in state.items()}}, str(path))
