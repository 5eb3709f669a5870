"""Data-parallel training across processes: PyTorch DistributedDataParallel under ``torchrun``.

``attnforce train CONFIG --nproc-per-node P`` (:func:`launch`, this machine) or ``torchrun --nproc_per_node P -m
attnforce.cli train CONFIG`` (any number of nodes) starts P processes; each computes the loss on its
share of every global batch (``batch_size`` samples, split by rank), DDP averages the gradients, and every process
takes the same optimiser step. Logging, metrics and checkpoints come from rank 0 only. The backend follows the
device: NCCL for GPUs (one per process, chosen by ``LOCAL_RANK``), gloo for CPU processes. Across nodes, give
torchrun its usual ``--nnodes``/``--rdzv-endpoint`` arguments; nothing here changes.

With equal shares of structures of equal size (one molecule, ``batch_size`` divisible by P), the averaged gradient
is the gradient of the global batch's loss, so P processes follow the 1-process loss curve up to floating-point
summation order.
"""

import logging
import os
import signal
import sys
import uuid
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place: ``rank`` of ``world_size`` (1 without torchrun), and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(request: str, local_rank: int = 0) -> torch.device:
    """The device that ``training.device`` names: ``auto`` (a GPU when one is visible, else the CPU), ``cpu``,
    ``cuda`` (the GPU of this process's local rank) or ``cuda:K``; ValueError for a GPU that is not there."""
    if request == "auto":
        request = "cuda" if torch.cuda.is_available() else "cpu"
    if request == "cpu":
        return torch.device("cpu")
    if request == "cuda" or request.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"training.device is {request!r} but torch sees no GPU (use cpu or auto)")
        device = torch.device("cuda", local_rank) if request == "cuda" else torch.device(request)
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"training.device {device} does not exist: {torch.cuda.device_count()} GPU(s) visible")
        return device
    raise ValueError(f"training.device must be auto, cpu, cuda or cuda:K, got {request!r}")


def start(device_request: str = "cpu") -> ProcessGroup:
    """Join the process group that torchrun describes in the environment (``WORLD_SIZE`` > 1), or run alone, on
    the device that ``device_request`` names (see :func:`resolve_device`)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and device_request.startswith("cuda:"):
        raise ValueError(
            f"training.device {device_request!r} would put every process on one GPU; under torchrun use cuda or auto "
            "(each process takes the GPU of its LOCAL_RANK)"
        )
    device = resolve_device(device_request, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size <= 1:
        return ProcessGroup(device=device)
    if not dist.is_initialized():
        logging.getLogger(__name__).info(
            "process %s of %d: waiting for the others at %s:%s",
            os.environ.get("RANK", "?"),
            world_size,
            os.environ.get("MASTER_ADDR", "?"),
            os.environ.get("MASTER_PORT", "?"),
        )
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), device)


def check_shares(batch_size: int, processes: int) -> None:
    """ValueError unless every global batch of ``batch_size`` samples splits into equal shares of the processes."""
    if batch_size % processes:
        raise ValueError(f"training.batch_size ({batch_size}) must be divisible by the {processes} processes")


def stop(group: ProcessGroup) -> None:
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(value: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """The mean of a (detached) scalar over the processes; the value itself when alone."""
    if not group.distributed:
        return value
    total = value.detach().clone().double().to(group.device)
    dist.all_reduce(total)
    return total / group.world_size


def from_main(value: float, group: ProcessGroup) -> float:
    """Rank 0's ``value`` on every process (for quantities that decisions depend on: budgets spent, validation
    losses), so that the processes never diverge."""
    if not group.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=group.device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def barrier(group: ProcessGroup) -> None:
    if group.distributed:
        dist.barrier()


def launch(processes: int, arguments: list[str]) -> None:
    """Run ``python -m attnforce.cli ARGUMENTS`` as ``processes`` processes on this machine, as ``torchrun
    --standalone --nproc_per_node P`` does, through the same elastic agent. Each process reports its own error in
    one line; a failure here is then one RuntimeError naming the process and how it ended (not torchrun's
    traceback). A stop signal to this process (SIGTERM, SIGINT, SIGHUP, SIGQUIT: the agent's handlers) stops every
    process, which remove their unfinished outputs, and is raised as ``SignalException`` with its ``sigval``."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "--nproc-per-node under torchrun would start processes from every process: use one or the other"
        )
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone
        max_restarts=0,
        monitor_interval=0.1,
    )
    elastic = logging.getLogger("torch.distributed.elastic")
    level = elastic.level
    elastic.setLevel(logging.CRITICAL)  # its log of a failure repeats what the process said, with a traceback link
    try:
        elastic_launch(config, sys.executable)("-m", "attnforce.cli", *arguments)
    except ChildFailedError as failed:
        rank, failure = failed.get_first_failure()
        if failure.exitcode < 0:
            ending = f"was killed by {signal.Signals(-failure.exitcode).name}"
        else:
            ending = f"failed with exit code {failure.exitcode} (its error is above)"
        others = len(failed.failures) - 1
        raise RuntimeError(
            f"training process {rank} of {processes} {ending}"
            + (f"; {others} other process(es) failed too" if others else "")
        ) from None
    finally:
        elastic.setLevel(level)
