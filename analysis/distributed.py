"""Training on several processes (``torchrun``, ``accelerate launch``): who is who, what rank 0 decides.

The Hugging Face Trainer does the data parallelism (DDP through accelerate);
this module only answers the questions around it: how many processes the
launcher started (:func:`launch_env`, :func:`world_size`), whether the launch
can have meant what the user asked (:func:`check_launch`), joining and leaving
the process group (:func:`join`, :func:`leave`, as ``curve --stream`` does),
and running a step on rank 0 alone and sharing its answer (:func:`on_rank0`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from analysis.errors import VariscopeError

T = TypeVar("T")

_RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class PeerFailed(VariscopeError):
    """Another process failed and says why itself: this one exits without a message of its own."""


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


def timeout():
    """How long a process waits for the others in one collective (:func:`analysis.stream.curve.dist_timeout`).

    Longer than torch's 30 minutes: the others wait while rank 0 alone prepares the run
    (e.g. computes the curve of ``--strategy variability``). A process that dies is
    noticed at once all the same: torchrun ends the others.
    """
    from datetime import timedelta

    from analysis.stream.curve import dist_timeout

    return timedelta(seconds=dist_timeout())


def join(device: str = "auto") -> tuple[int, int]:
    """(rank, world_size); with several processes, joins the process group (gloo on CPU, nccl on CUDA).

    As ``curve --stream`` does (each process on GPU ``LOCAL_RANK``), with :func:`timeout`.
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
    from analysis.stream.curve import init_distributed

    return init_distributed(device, timeout().total_seconds())  # the same join as curve --stream


def leave(*, wait: bool = True) -> None:
    """Leave the process group if joined (``wait``: a barrier first; pass False after an error)."""
    from analysis.stream.curve import close_distributed

    close_distributed(wait=wait)


def on_rank0(fn: Callable[[], T], rank: int, world: int) -> T:
    """``fn()`` run by rank 0 alone; every process gets its value (one ``broadcast_object_list``).

    Rank 0's error is raised on rank 0; the others raise :class:`PeerFailed`
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
        raise PeerFailed(f"process 0 failed: {answer[1]}")
    return answer[1]


def lost_peer(e: BaseException) -> bool:
    """True when ``e`` only says that another process went away (that process reports its own error)."""
    import torch.distributed as dist

    text = str(e)
    if "timed out" in text.lower() or "timeout" in text.lower():
        return False  # every process may see this one: it is said
    if isinstance(e, PeerFailed | getattr(dist, "DistBackendError", PeerFailed)):
        return True
    return isinstance(e, RuntimeError) and any(
        s in text for s in ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
    )
