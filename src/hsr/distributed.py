"""Several processes on one job (``torchrun`` / ``accelerate launch``): the only module that knows torch.distributed.

A launcher starts N copies of ``hsr`` with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (plus a
rendezvous address) in the environment. :func:`session` turns that into a :class:`Dist`: the
process group is set up (gloo on CPU, nccl for CUDA devices), each rank gets its own device
(``cuda:LOCAL_RANK`` on GPUs) and the group is always torn down again. Without a launcher,
:func:`session` yields a single-process :class:`Dist` whose collectives are no-ops, so callers
have one code path whatever the number of processes.

Work is split by :meth:`Dist.shard` deterministically (every rank computes the same split from
the same inputs, with no communication), and results come back with
:meth:`Dist.all_gather_object` / :meth:`Dist.broadcast_object`. Only rank 0 (``is_main``) writes
outputs or shows progress bars.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, TypeVar

from .errors import HsrError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a rank waits at a collective for the others (model judges and plots run on rank 0 alone).
DEFAULT_TIMEOUT_S = 4 * 3600
#: Subcommands that split their work across processes; the others refuse to run under a launcher.
DISTRIBUTED_COMMANDS: tuple[str, ...] = ("heads", "evaluate", "eval")


class DistributedError(HsrError, RuntimeError):
    """A multi-process launch that cannot work as configured; the message says what to change."""


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the launcher's environment; ``(0, 1, 0)`` without one."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise DistributedError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({exc}); launch with torchrun.") from None
    if world < 1 or not 0 <= rank < world:
        raise DistributedError(f"RANK={rank} does not fit WORLD_SIZE={world}; launch with torchrun or accelerate launch.")
    return rank, world, local


def env_rank_label() -> str:
    """`` (rank R of W)`` for messages printed by one of several processes; empty for one process."""
    try:
        rank, world, _ = env_world()
    except DistributedError:
        return ""
    return f" (rank {rank} of {world})" if world > 1 else ""


def launched() -> bool:
    """True when a launcher started this process as one of several."""
    return env_world()[1] > 1


def check_command(command: str | None) -> None:
    """Refuse subcommands that would run whole (and write the same outputs) in every process."""
    if launched() and command not in DISTRIBUTED_COMMANDS:
        raise DistributedError(
            f"`hsr {command}` does not split its work across processes, and {env_world()[1]} were launched; "
            "run it as one process (python -m hsr ...), or launch `hsr heads` / `hsr evaluate` with torchrun."
        )


def rank_device(requested: str, local_rank: int, world: int) -> str:
    """This rank's device: ``cuda:LOCAL_RANK`` when CUDA was asked for by several processes, else as asked."""
    if world == 1 or not str(requested).startswith("cuda"):
        return str(requested)
    import torch

    visible = torch.cuda.device_count()
    if local_rank >= visible:
        raise DistributedError(
            f"Process with LOCAL_RANK={local_rank} needs its own GPU but only {visible} are visible on this machine; "
            f"launch at most {visible} processes per node (torchrun --nproc-per-node {max(visible, 1)})."
        )
    if str(requested) not in ("cuda", f"cuda:{local_rank}"):
        log.info("--device %s: with %d processes each one uses its own GPU, here cuda:%d.", requested, world, local_rank)
    return f"cuda:{local_rank}"


def balance(costs: Sequence[float], parts: int) -> list[list[int]]:
    """Split item indices into ``parts`` bins of similar total cost (longest first, to the lightest bin).

    Deterministic: ties go to the lower index, so every rank computes the same split. Each bin
    is returned in ascending index order.
    """
    bins: list[list[int]] = [[] for _ in range(parts)]
    loads = [0.0] * parts
    for i in sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i)):
        b = min(range(parts), key=lambda r: (loads[r], r))
        bins[b].append(i)
        loads[b] += float(costs[i])
    return [sorted(b) for b in bins]


@dataclass(frozen=True)
class Dist:
    """This process's place in the job. ``world_size == 1``: no process group, collectives are no-ops."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, items: Sequence[T], cost: Callable[[T], float] | None = None) -> list[T]:
        """This rank's share of ``items`` (order kept), balanced by ``cost`` (default: 1 each)."""
        costs = [cost(x) if cost else 1.0 for x in items]
        return [items[i] for i in balance(costs, self.world_size)[self.rank]]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as td

            td.barrier()

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``obj`` as rank ``src`` has it, on every rank (picklable objects)."""
        if not self.active:
            return obj
        import torch.distributed as td

        box = [obj if self.rank == src else None]
        td.broadcast_object_list(box, src=src)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.active:
            return [obj]
        import torch.distributed as td

        out: list[Any] = [None] * self.world_size
        td.all_gather_object(out, obj)
        return out

    def check_same(self, value: Any, what: str) -> None:
        """Fail on every rank when ranks disagree about ``value`` (e.g. they loaded different data)."""
        values = self.all_gather_object(value)
        odd = [r for r, v in enumerate(values) if v != values[0]]
        if odd:
            raise DistributedError(
                f"Process rank {odd[0]} has different {what} than rank 0; every process must be started with the "
                "same options and see the same model and data files."
            )


SINGLE = Dist()


def _timeout() -> datetime.timedelta:
    raw = os.environ.get("HSR_DIST_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        return datetime.timedelta(seconds=float(raw))
    except ValueError:
        raise DistributedError(f"HSR_DIST_TIMEOUT must be a number of seconds, got {raw!r}.") from None


def _init_group(device: str) -> bool:
    """Join the launcher's process group; False when the caller (e.g. accelerate) already made one."""
    import torch
    import torch.distributed as td

    if td.is_initialized():
        return False
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise DistributedError(
            f"WORLD_SIZE > 1 but {' and '.join(missing)} not set: start several processes with "
            "torchrun --nproc-per-node N -m hsr ... (or accelerate launch), not by hand."
        )
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(torch.device(device))
    backend = "nccl" if cuda and td.is_nccl_available() else "gloo"
    td.init_process_group(backend=backend, timeout=_timeout())
    return True


@contextlib.contextmanager
def session(device: str = "cpu") -> Iterator[Dist]:
    """The job this process belongs to, with its device; the process group is destroyed on exit."""
    rank, world, local = env_world()
    if world == 1:
        yield Dist(device=str(device))
        return
    dist = Dist(rank=rank, world_size=world, local_rank=local, device=rank_device(device, local, world))
    owned = _init_group(dist.device)
    try:
        yield dist
        if owned:  # leave together: no rank closes its connections while another still uses them
            import torch.distributed as td

            td.barrier()
    finally:
        if owned:
            import torch.distributed as td

            td.destroy_process_group()
