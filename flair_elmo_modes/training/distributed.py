"""The processes of a training run: one, or several started by ``torchrun`` (torch.distributed).

``torchrun --nproc_per_node N -m flair_elmo_modes train ...`` starts N processes and tells each its
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in the environment; :func:`from_environment` reads them
(a plain run is rank 0 of 1). :func:`process_group` joins them: gloo on CPUs, nccl on CUDA.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


class ProcessGroupError(RuntimeError):
    """Another process of a distributed run failed, or the connection to it was lost."""


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run.

    Attributes:
        rank: 0 .. size - 1; rank 0 writes every file.
        size: number of processes.
        local_rank: rank on this machine (picks the GPU).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, value: float) -> float:
        """``value`` summed over all processes (float64)."""
        if self.size == 1:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=_collective_device())
        dist.all_reduce(total)
        return float(total.item())

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value`` (picklable), in rank order."""
        if self.size == 1:
            return [value]
        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every process (for decisions that depend on a clock)."""
        if self.size == 1:
            return flag
        value = torch.tensor([1 if flag else 0], device=_collective_device())
        dist.broadcast(value, src=0)
        return bool(value.item())

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.size > 1:
            dist.barrier()


def from_environment() -> World:
    """The world ``torchrun`` describes in ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; else one process.

    Raises:
        ValueError: the variables are malformed or inconsistent.
    """
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    if "WORLD_SIZE" not in os.environ:
        return World()
    try:
        rank, size, local_rank = (int(os.environ.get(name, "0")) for name in names)
    except ValueError as error:
        found = ", ".join(f"{name}={os.environ.get(name)!r}" for name in names)
        raise ValueError(f"torch.distributed environment: expected integers, found {found}") from error
    if not (size >= 1 and 0 <= rank < size and local_rank >= 0):
        raise ValueError(f"torch.distributed environment: RANK={rank} must lie in [0, WORLD_SIZE={size})")
    return World(rank, size, local_rank)


def device_for(requested: str | None, world: World) -> torch.device:
    """The device a process trains on: ``requested``, or CUDA when available, else the CPU.

    In a distributed CUDA run, ``"cuda"`` means this process's GPU (its local rank).

    Raises:
        ValueError: CUDA requested where there is none, or an unknown device.
    """
    try:
        device = torch.device(requested) if requested else None
    except RuntimeError as error:
        raise ValueError(f"--device: {error}") from error
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {requested}: CUDA is not available here (torch {torch.__version__})")
        if device.index is None:
            device = torch.device("cuda", world.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


@contextmanager
def process_group(world: World, device: torch.device) -> Iterator[None]:
    """Join the processes of ``world`` (gloo on CPU, nccl on CUDA) for the duration of the block.

    Raises:
        ProcessGroupError: a collective failed because another process died or was cut off.
    """
    if world.size == 1:
        yield
        return
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size)
    try:
        yield
    except dist.DistError as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ProcessGroupError(
            f"process {world.rank} of {world.size}: another process of the run failed or could not be reached "
            f"({first}); the last checkpoint is intact: run the same command again to resume from it"
        ) from error
    finally:
        if created:
            dist.destroy_process_group()


def _collective_device() -> torch.device:
    """Where small tensors for collectives live: nccl needs them on the GPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
