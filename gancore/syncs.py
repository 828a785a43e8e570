"""Host syncs: counting the reads of a tensor's value into Python that a block of code makes.

On a GPU each such read (`.item()`, `bool(t)`, `float(t)`, `int(t)`, `.tolist()`, `.cpu()`, `.numpy()`)
waits for every kernel queued before it: the CPU stops feeding the GPU. The training step is meant to
make none (values are read back at records only), and a CPU run can prove it: the same calls happen on
any device, so counting them here counts the syncs a GPU run would make.

    with count_syncs() as syncs:
        trainer.train_step(measure=False)
    assert syncs.count == 0, syncs.where

Used by the test suite's guard (tests/test_gpu_path.py) and by bench/train_speed.py.
"""
import traceback
from collections import Counter

import torch
from torch.overrides import TorchFunctionMode

# Tensor methods that hand a value to the host. `.to()` counts when it moves a tensor to the CPU.
READS = {
    torch.Tensor.item: "item",
    torch.Tensor.__bool__: "bool",
    torch.Tensor.__float__: "float",
    torch.Tensor.__int__: "int",
    torch.Tensor.__index__: "index",
    torch.Tensor.tolist: "tolist",
    torch.Tensor.cpu: "cpu",
    torch.Tensor.numpy: "numpy",
}


def _to_cpu(args, kwargs) -> bool:
    """Whether a Tensor.to(...) call names the CPU as its destination."""
    for a in list(args[1:]) + [kwargs.get("device")]:
        if isinstance(a, (str, torch.device)) and torch.device(a).type == "cpu":
            return True
    return False


class count_syncs(TorchFunctionMode):
    """A context that counts host reads of tensor values inside it (`count`), each with where it happened
    (`where`: a Counter of "file:line kind", the innermost frame outside torch)."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self.where = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = READS.get(func)
        if kind is None and func is torch.Tensor.to and _to_cpu(args, kwargs) and not _torch_called():
            kind = "to(cpu)"  # torch's own device-generic code moves to the tensors' device, the GPU on a GPU run
        if kind is not None and not _in_optimizer():
            self.count += 1
            self.where[f"{_caller()} {kind}"] += 1
        return func(*args, **kwargs)


def _torch_called() -> bool:
    """Whether the innermost caller (outside this module) is torch's own code."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if not frame.filename.endswith("syncs.py"):
            return "/torch/" in frame.filename
    return False


def _in_optimizer() -> bool:
    """Whether the read happens inside torch.optim: its step counters live on the host unless the kernel is
    fused or capturable (so a GPU run reads them without waiting), and a fused kernel reads nothing."""
    return any("/torch/optim/" in frame.filename for frame in traceback.extract_stack()[:-3])


def _caller() -> str:
    """file:line of the innermost frame that is not torch's own code (nor this module's)."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/torch/" not in frame.filename and not frame.filename.endswith("syncs.py"):
            return f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno}"
    return "?"
