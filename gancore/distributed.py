"""Multi-process training on PyTorch's own engine: torch.distributed, launched by `torchrun`.

    torchrun --standalone --nproc_per_node 2 -m gancore train --dataset ring     # one machine
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 4 --rdzv_endpoint host:29500 -m gancore train ...

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `start()` reads them and joins the process group
(`nccl` on CUDA, one GPU per local rank; `gloo` on CPU). Without them (plain `python -m gancore`)
everything here is a no-op for a world of one, so single-process runs are unchanged.

What the trainer asks of the other ranks goes through the few collectives below; each one is a
call every rank makes at the same step, so no rank waits on a call another will never make.
A rank that dies closes its connections and the others' next collective fails (gloo) or times
out (`TIMEOUT`), so no rank hangs.
"""
import datetime
import hashlib
import os
import signal
import threading
from dataclasses import dataclass

import torch
import torch.distributed as dist

TIMEOUT = datetime.timedelta(seconds=int(os.environ.get("GANCORE_DIST_TIMEOUT", "600")))  # a collective's limit


@dataclass(frozen=True)
class World:
    rank: int = 0  # this process among all (0 writes the run directory)
    size: int = 1  # processes in all
    local_rank: int = 0  # this process on its machine (its GPU)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def multi(self) -> bool:
        return self.size > 1


SINGLE = World()


def env_world() -> World:
    """The world torchrun describes in the environment (a world of one without torchrun)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))


def start(device: str) -> World:
    """Join the process group for `device` ("cpu" or "cuda") when torchrun started several processes."""
    world = env_world()
    if not world.multi or dist.is_initialized():
        return world
    if device == "cuda":
        torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl", timeout=TIMEOUT, device_id=torch.device("cuda", world.local_rank))
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)
    return world


def stop(world: World, ok: bool) -> None:
    """Leave the process group. After a good run every rank first waits for the others (a barrier), so none
    tears its connections down while another still uses them (gloo aborts the process when that happens)."""
    if world.multi and dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()


# An odd 64-bit constant (2^64 / golden ratio): rank r's seed differs from rank 0's by r times it, so distinct ranks
# differ in the low 32 bits too, the only bits a CPU generator (MT19937) keeps of a seed.
RANK_STRIDE = 0x9E3779B97F4A7C15


def rank_seed(seed: int, rank: int) -> int:
    """The seed of a stream for `rank`: the run's own seed on rank 0 (so one process trains as before),
    a distinct one on every other rank, in every generator's kept bits (CPU: the low 32, CUDA: all 64)."""
    return seed if rank == 0 else (seed + rank * RANK_STRIDE) % 2**63


def broadcast(obj, world: World):
    """Rank 0's Python object, on every rank."""
    if not world.multi:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj, world: World) -> list:
    """Every rank's object, in rank order, on every rank."""
    if not world.multi:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, world: World, device) -> bool:
    """True on every rank when `flag` is true on any (a stop request, a failure)."""
    if not world.multi:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean_over_ranks(values: dict, world: World) -> dict:
    """{name: float} averaged over the ranks (one collective); a NaN anywhere stays NaN everywhere."""
    if not world.multi or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return dict(zip(values, (t / world.size).tolist()))


@torch.no_grad()
def broadcast_buffers(world: World, *modules: torch.nn.Module) -> None:
    """Rank 0's buffers (batch-norm statistics) into every rank's copy of `modules`, in one collective.

    Between these calls each rank's running statistics follow its own batches (the forward passes that
    DDP does not wrap: the G step's D, G's own forward); they never change what a rank computes in
    training mode, and are made equal before anything reads or compares them (checkpoints, fingerprints)."""
    buffers = [b for m in modules for b in m.buffers()]
    if world.multi and buffers:
        flat = torch.cat([b.detach().reshape(-1).double() for b in buffers])  # int counters survive as doubles
        dist.broadcast(flat, src=0)
        offset = 0
        for b in buffers:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()


@torch.no_grad()
def fingerprint(*modules) -> str:
    """sha1 of every parameter and buffer's bytes: equal on two ranks exactly when their copies are."""
    h = hashlib.sha1()
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def injected(world: World, what: str) -> bool:
    """A test hook: GANCORE_FAULT="<rank>:<what>" says that rank meets that fault (e.g. "1:no-run-dir": rank 1
    cannot see the run directory, as on a machine without the shared filesystem)."""
    return os.environ.get("GANCORE_FAULT") == f"{world.rank}:{what}"


def injected_fault(world: World, step: int) -> None:
    """A test hook: GANCORE_FAULT="<rank>:<step>" makes that rank raise at that step, so the tests can check
    that the other ranks stop (and the run is marked failed) instead of hanging."""
    spec = os.environ.get("GANCORE_FAULT")
    if spec and spec == f"{world.rank}:{step}":
        raise RuntimeError(f"injected fault (GANCORE_FAULT={spec})")


class StopRequested:
    """Turns SIGTERM/SIGINT into a flag the loop checks once per step (handlers only in the main thread); with
    several processes the ranks agree on it (`any_rank`) before all stop at the same step."""

    def __init__(self):
        self.signal = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
