"""Sharded inference: one rank of ``torchrun`` / ``accelerate launch`` answers a deterministic share.

``llm-infer`` and ``llm-consistency`` split their generate calls between ranks (batch ``i`` goes to
rank ``i % world_size``); every sampling seed depends on the batch, never on the rank, so the
gathered output is the single-process one, row for row and byte for byte.

One GPU per rank: on a CUDA machine each rank sees only GPU ``LOCAL_RANK`` (``CUDA_VISIBLE_DEVICES``
is narrowed before CUDA starts, as the model loader places weights with ``device_map="auto"``),
and the ranks talk over NCCL; on CPU over gloo. Single process (no ``WORLD_SIZE``): nothing changes.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

from brats_llm.errors import BratsLlmError

log = logging.getLogger(__name__)

#: Ranks wait for each other only at the start and the end, but a rank whose share was resumed may
#: wait at the end for hours of another rank's generation.
TIMEOUT = datetime.timedelta(hours=12)


class LaunchError(BratsLlmError, RuntimeError):
    """The ranks cannot each get one GPU (more ranks than GPUs, or CUDA started before pinning)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks (world 1, rank 0 when not launched by torchrun)."""

    world: int = 1
    rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world > 1

    def share(self, units: int) -> list[int]:
        """Indices of the ``units`` (batches) this rank answers: ``i % world == rank``."""
        return list(range(self.rank, units, self.world))

    def barrier(self) -> None:
        if self.sharded:
            import torch.distributed as dist

            dist.barrier()

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order."""
        if not self.sharded:
            return [value]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.sharded:
            return value
        import torch.distributed as dist

        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def ranks() -> Ranks:
    """Join the process group of a ``torchrun`` / ``accelerate launch`` run (once), or a single process.

    Raises:
        LaunchError: more ranks on this machine than GPUs visible, or CUDA was already started with
            several GPUs visible (the rank could not be pinned to its own GPU).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    import torch
    import torch.distributed as dist

    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        gpus = visible_gpus()
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        if gpus > 0 and local_world > gpus:  # every rank must agree on the backend: refuse, never mix
            raise LaunchError(f"{local_world} ranks on this machine but {gpus} GPU(s) visible: start one rank per "
                               f"GPU (torchrun --nproc_per_node {gpus})")
        if gpus != 0:
            _pin_gpu(local_rank)
        cuda = gpus != 0 and torch.cuda.is_available()
        if cuda:
            if torch.cuda.device_count() != 1:
                raise LaunchError(f"rank {rank}: {torch.cuda.device_count()} GPUs visible after pinning to GPU "
                                   f"{local_rank}; start sharded inference with torchrun, before CUDA is used")
            torch.cuda.set_device(0)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
        log.info("rank %d of %d (%s)", rank, world, f"GPU {local_rank}" if cuda else "CPU, gloo")
    return Ranks(world=dist.get_world_size(), rank=dist.get_rank())


def visible_gpus() -> int:
    """GPUs this process may use, counted without starting CUDA (NVML; -1 when NVML cannot tell)."""
    import torch

    if not torch.cuda._is_compiled():
        return 0
    try:
        return torch.cuda._device_count_nvml()
    except (AttributeError, RuntimeError, OSError):  # a private helper: when it is gone, let CUDA itself decide (after pinning)
        return -1


def _pin_gpu(local_rank: int) -> None:
    """Show this rank only GPU ``local_rank`` of the GPUs the launcher saw (before CUDA starts)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = [d for d in visible.split(",") if d.strip()] if visible is not None else None
    if devices is not None and len(devices) <= 1:
        return  # already one GPU (or none) per process: the launcher or scheduler pinned it
    if devices is None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(local_rank)
    elif local_rank < len(devices):
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[local_rank]
