"""Several processes (``torchrun``, ``accelerate launch``): the one module that touches ``torch.distributed``.

Training (the Hugging Face Trainer does its data parallelism) and ``curve --stream`` (its
statistics summed over processes) share it: how many processes the launcher started
(:func:`launch_env`, :func:`world_size`, :func:`rank`), whether the launch can have meant what the user asked
(:func:`check_launch`), joining and leaving the process group (:func:`join`, :func:`leave`,
:func:`dist_timeout`), running a step on rank 0 alone and sharing its answer (:func:`on_rank0`),
running a step everywhere and agreeing that it succeeded (:func:`collective`, :func:`agree`), and
the collectives themselves (:func:`all_reduce`, :func:`all_gather`). A failure anywhere is one
:class:`RankFailure`, raised in every process, instead of a hang.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import numpy as np

from analysis.errors import VariscopeError

T = TypeVar("T")

_RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class RankFailure(VariscopeError):
    """A process of the world failed; raised in every process that learns of it (``rank``: the first that failed).

    ``everywhere``: every process failed with the same reason, so the message reads as one process's.
    """

    def __init__(self, rank: int, reason: str, *, everywhere: bool = False):
        super().__init__(reason if everywhere else f"rank {rank} failed: {reason}")
        self.rank = rank


class ProcessError(VariscopeError):
    """One process's own failure (``process R of W: …``): printed by that process, whatever its rank.

    Every other error is the same in every process (the same input, or agreed on) and is printed by rank 0 alone.
    """


def _env_int(names: tuple[str, ...], default: int) -> int:
    for n in names:
        v = os.environ.get(n)
        if v not in (None, ""):
            try:
                return int(v)
            except ValueError:
                raise VariscopeError(f"{n}={v!r} is not a process number") from None
    return default


def launch_env() -> tuple[int, int]:
    """(rank, world_size) announced by the launcher (torchrun, accelerate, MPI); (0, 1) for one process."""
    return _env_int(_RANK_VARS, 0), _env_int(_SIZE_VARS, 1)


def world_size() -> int:
    """Processes training together: the process group's size once joined, else what the launcher announced."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return launch_env()[1]


def rank() -> int:
    """This process's number: the process group's rank once joined, else what the launcher announced."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return launch_env()[0]


def check_launch() -> None:
    """Refuse ``accelerate launch --cpu --num_processes N`` (N > 1), which starts a single process.

    accelerate 1.x starts several CPU processes only through MPI (``--mpirun_hostfile``);
    without it ``--cpu`` runs the script once, with ``MASTER_ADDR`` set (only done for N > 1)
    and no world size. Training then would silently run on one process.
    """
    env = os.environ
    if env.get("ACCELERATE_USE_CPU", "").lower() == "true" and env.get("MASTER_ADDR") and launch_env()[1] == 1:
        raise VariscopeError(
            "accelerate launch --cpu started a single process (it starts several CPU processes only through MPI); "
            "use 'accelerate launch --multi_gpu --num_processes N --main_process_port 0 -m analysis train "
            "--device cpu ...' or 'torchrun --standalone --nproc_per_node N -m analysis train ...'"
        )


def dist_timeout() -> int:
    """Seconds a process waits for the others in one collective: ``VARISCOPE_DIST_TIMEOUT``, default 3 hours.

    Longer than torch's 30 minutes: the others wait while rank 0 alone prepares the run
    (a first conversion of a GGUF model, the curve of ``train --strategy variability``).
    A process that dies is noticed at once all the same: torchrun ends the others, and a
    failure is reported through :func:`agree`.
    """
    v = os.environ.get("VARISCOPE_DIST_TIMEOUT", "")
    try:
        seconds = int(v) if v else 3 * 3600
    except ValueError:
        raise VariscopeError(f"VARISCOPE_DIST_TIMEOUT={v!r} is not a number of seconds") from None
    if seconds < 1:
        raise VariscopeError(f"VARISCOPE_DIST_TIMEOUT must be a positive number of seconds, got {seconds}")
    return seconds


def join(device: str = "auto", timeout_s: float | None = None) -> tuple[int, int]:
    """(rank, world_size); with several processes, joins the process group (gloo on CPU, nccl on CUDA).

    Each process on GPU ``LOCAL_RANK`` with CUDA. One process: (0, 1), nothing started.
    ``timeout_s`` (default :func:`dist_timeout`): a collective that waits longer fails instead of hanging.
    An MPI launch (``PMI_*``/``OMPI_*`` variables, e.g. ``accelerate launch --mpirun_hostfile``)
    is given torchrun's variables first, as accelerate does (untested: no MPI here).
    """
    rank, world = launch_env()
    if world <= 1:
        return 0, 1
    if not os.environ.get("WORLD_SIZE"):
        local = _env_int(("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK"), 0)
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29500")
    import torch
    import torch.distributed as dist

    from analysis.models.load import resolve_device

    cuda = resolve_device(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        seconds = dist_timeout() if timeout_s is None else timeout_s
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=seconds))
    return dist.get_rank(), dist.get_world_size()


def leave(*, wait: bool = True) -> None:
    """Leave the process group, if this process joined one.

    ``wait``: first a barrier, so that no process tears gloo down while another
    still uses it (without it a process sometimes aborts at exit, "terminate
    called without an active exception"). Pass False after an error, when the
    others may never arrive.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def on_rank0(fn: Callable[[], T], rank: int, world: int) -> T:
    """``fn()`` run by rank 0 alone; every process gets its value (one ``broadcast_object_list``).

    Rank 0's error is raised on rank 0; the others raise :class:`RankFailure`
    (rank 0 prints the message, once), so nobody waits for an answer that never comes.
    """
    if world == 1:
        return fn()
    import torch.distributed as dist

    box: list[object] = [None]
    error: BaseException | None = None
    if rank == 0:
        try:
            box[0] = ("ok", fn())
        except Exception as e:  # shared first, raised below
            error, box[0] = e, ("error", str(e))
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    answer: tuple = box[0]  # type: ignore[assignment]
    if answer[0] == "error":
        raise RankFailure(0, answer[1])
    return answer[1]


def collective(fn: Callable[[], T], world_size: int) -> T:
    """``fn()``, then (with several processes) agree that every process succeeded before any all_reduce.

    An exception in one process is not raised at once (the others would wait for it forever in
    the next collective): every process joins one ``all_gather_object`` of ok/failed flags, and
    if any failed all of them raise the same :class:`RankFailure`.
    """
    if world_size <= 1:
        return fn()
    out, error = None, None
    try:
        out = fn()
    except Exception as e:
        error = e
    agree(error)
    return out  # type: ignore[return-value]


def agree(error: BaseException | None) -> None:
    """Exchange this process's ok/failed flag (and reason) with all the others; raise if any failed."""
    reason = None
    if error is not None:
        reason = error.message if isinstance(error, VariscopeError) else f"{type(error).__name__}: {error}"
        reason = (str(reason).splitlines() or [""])[0][:300]
    parts = all_gather(reason)
    failed = [(r, str(why)) for r, why in enumerate(parts) if why is not None]
    if failed:
        r, why = failed[0]
        raise RankFailure(r, why, everywhere=len(failed) == len(parts) and all(w == why for _, w in failed))


def all_gather(obj: object) -> list[object]:
    """Every process's ``obj``, in rank order, on every process (one ``all_gather_object``)."""
    import torch.distributed as dist

    parts: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, obj)
    return parts


def all_reduce(v: np.ndarray, op: str = "sum") -> np.ndarray:
    """Sum (or min) a float64 vector over every process: shape (m,) in, (m,) out on every process."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise VariscopeError("several processes need torch.distributed's process group: run under torchrun")
    buf = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64))
    if dist.get_backend() == "nccl":
        buf = buf.cuda()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MIN)
    return buf.cpu().numpy()


def lost_peer(e: BaseException) -> bool:
    """True when ``e`` only says that another process went away (that process reports its own error)."""
    import torch.distributed as dist

    text = str(e)
    if "timed out" in text.lower() or "timeout" in text.lower():
        return False  # every process may see this one: it is said
    if isinstance(e, RankFailure | getattr(dist, "DistBackendError", RankFailure)):
        return True
    return isinstance(e, RuntimeError) and any(
        s in text for s in ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
    )
