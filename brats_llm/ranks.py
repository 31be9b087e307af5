"""Ranks of a ``torchrun`` / ``accelerate launch`` run: the launcher's environment, read in this one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks (world 1, rank 0 when not launched by torchrun).

    Attributes:
        world, rank: ranks in the run and this one's number (``WORLD_SIZE``, ``RANK``).
        local_rank, local_world: the same on this machine (``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``).
    """

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes outputs and prints summaries."""
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


def launched() -> Ranks:
    """The ranks the launcher set in the environment (no process group is joined; world 1 when unset).

    Raises:
        ValueError: a variable is not an integer, or the rank is outside the world (a broken launch).
    """
    world = _integer("WORLD_SIZE", 1)
    ranks = Ranks(world=world, rank=_integer("RANK", 0), local_rank=_integer("LOCAL_RANK", 0),
                  local_world=_integer("LOCAL_WORLD_SIZE", world))
    if world < 1 or not 0 <= ranks.rank < world or not 0 <= ranks.local_rank < ranks.local_world:
        raise ValueError(f"inconsistent launcher environment: {ranks} (WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE)")
    return ranks


def is_main() -> bool:
    """Whether this process is rank 0 (or not launched at all): the one that prints summaries."""
    return launched().main


def _integer(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None
