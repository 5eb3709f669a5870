"""The torch device a model is asked to run on, checked before any work."""

import torch


def check_device(device: str | int | torch.device) -> None:
    """ValueError for a torch device that is malformed, of a kind attnforce does not run on (it runs on ``cpu`` and
    ``cuda``), or not on this machine (``cuda:7`` with one GPU, or none; an integer is torch's CUDA ordinal)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device (cpu, cuda, cuda:0, ...)") from None
    read_as = "" if str(parsed) == device else f" (torch reads it as {parsed})"
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}{read_as}: attnforce runs models on cpu or cuda devices")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"device {device!r}{read_as}: this machine has {torch.cuda.device_count()} CUDA device(s) torch can use; "
            "give device='cpu' or an existing GPU"
        )
