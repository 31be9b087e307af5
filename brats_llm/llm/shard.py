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

from brats_llm.errors import BratsLlmError
from brats_llm.ranks import Ranks, launched

log = logging.getLogger(__name__)

#: Ranks wait for each other only at the start and the end, but a rank whose share was resumed may
#: wait at the end for hours of another rank's generation.
TIMEOUT = datetime.timedelta(hours=12)


class LaunchError(BratsLlmError, RuntimeError):
    """The ranks cannot each get one GPU (more ranks than GPUs, or CUDA started before pinning)."""


def ranks() -> Ranks:
    """Join the process group of a ``torchrun`` / ``accelerate launch`` run (once), or a single process.

    Raises:
        LaunchError: more ranks on this machine than GPUs visible, or CUDA was already started with
            several GPUs visible (the rank could not be pinned to its own GPU).
    """
    launch = launched()
    if not launch.sharded:
        return launch
    import torch
    import torch.distributed as dist

    world, rank, local_rank, local_world = launch.world, launch.rank, launch.local_rank, launch.local_world
    if not dist.is_initialized():
        gpus = visible_gpus()
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
    return Ranks(world=dist.get_world_size(), rank=dist.get_rank(), local_rank=local_rank, local_world=local_world)


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
