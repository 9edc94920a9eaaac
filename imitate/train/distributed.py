"""One process per GPU under ``torchrun``: which rank this is, and the few collectives the loop needs.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment, or 1) everything is a single process and
no process group is created. Under ``torchrun`` the backend is NCCL on CUDA and gloo on the CPU (which
is how the tests run two ranks on one machine).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes every file."""
        return self.rank == 0


def init_distributed(device: str) -> Ranks:
    """Join the ``torchrun`` process group if there is one; on CUDA, pick this rank's GPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Ranks()
    ranks = Ranks(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if device == "cuda":
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return ranks


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any (a no-op in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def weights_digest(model: nn.Module) -> str:
    """sha256 of the parameters and buffers, for checking that ranks stay identical."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
