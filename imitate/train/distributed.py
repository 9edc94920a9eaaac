"""One process per GPU under ``torchrun``: which rank this is, and the few collectives the loop needs.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything is a single process and no
process group is created. Under ``torchrun`` there always is one, also with a single process: DDP and
the loss's gathers then run at world size 1, which is how one GPU rehearses the multi-GPU path. The
backend is NCCL on CUDA and gloo on the CPU (which is how the tests run two ranks on one machine).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False  # a process group exists (launched by torchrun), even at world size 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes every file."""
        return self.rank == 0


def init_distributed(device: str) -> Ranks:
    """Join the process group when launched by ``torchrun``; on CUDA, pick this rank's GPU."""
    if "WORLD_SIZE" not in os.environ:
        return Ranks()
    env = os.environ
    ranks = Ranks(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")), distributed=True)
    if device == "cuda":
        torch.cuda.set_device(ranks.local_rank)
    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend)
    log.info("process group: rank %d of %d, backend %s", ranks.rank, ranks.world_size, backend)
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
