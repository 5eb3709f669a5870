"""Data-parallel training across processes: PyTorch DistributedDataParallel under ``torchrun``.

``torchrun --nproc_per_node P -m attnforce.cli train CONFIG`` starts P processes; each computes the loss on its
share of every global batch (``batch_size`` structures, split by rank), DDP averages the gradients, and every
process takes the same optimiser step. Logging, metrics and checkpoints come from rank 0 only. The backend is gloo
(CPU processes); the energy trainer runs on the CPU.

With equal shares of structures of equal size (one molecule, ``batch_size`` divisible by P), the averaged gradient
is the gradient of the global batch's loss, so P processes follow the 1-process loss curve up to floating-point
summation order.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place: ``rank`` of ``world_size`` (1 without torchrun)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start() -> ProcessGroup:
    """Join the process group that torchrun describes in the environment (``WORLD_SIZE`` > 1), or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return ProcessGroup()
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return ProcessGroup(dist.get_rank(), dist.get_world_size())


def stop(group: ProcessGroup) -> None:
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(value: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """The mean of a (detached) scalar over the processes; the value itself when alone."""
    if not group.distributed:
        return value
    total = value.detach().clone().double()
    dist.all_reduce(total)
    return total / group.world_size


def from_main(value: float, group: ProcessGroup) -> float:
    """Rank 0's ``value`` on every process (for quantities that decisions depend on: budgets spent, validation
    losses), so that the processes never diverge."""
    if not group.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def barrier(group: ProcessGroup) -> None:
    if group.distributed:
        dist.barrier()
