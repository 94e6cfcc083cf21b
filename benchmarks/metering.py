"""Time and peak memory of one training step.

Time: wall clock around ``method.step`` (CUDA synchronised before and after), evaluation excluded.

Peak memory, the same definition on every device: the bytes of tensor storage live at the start
of the step that belong to the run (model parameters and buffers, their gradients, every
optimiser's parameters and state, tensors held by the method, the batch), plus the peak of what
the step allocates on top, net of what it frees.
- CUDA: the allocator's counters: reset_peak_memory_stats, then
  resident + (max_memory_allocated - memory_allocated at the start of the step).
- CPU: PyTorch has no allocator counters on the CPU, so a TorchDispatchMode watches every ATen op
  and tracks the storages its outputs use (weak references, so frees are seen). The run's
  resident storages are registered at the start, so a gradient freed by ``zero_grad`` and
  re-allocated is not counted twice. It counts tensor storages, not scratch buffers that a kernel
  allocates and frees inside one op (e.g. convolution workspaces); it slows the step, so metered
  steps are not timed.
"""

from __future__ import annotations

import contextlib
import inspect
import statistics
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def _storages(obj: Any, seen: set[int], out: list[torch.UntypedStorage]) -> None:
    """Collect the storages of tensors reachable from obj (modules, optimisers, containers)."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        out.append(obj.untyped_storage())
        if obj.grad is not None:
            out.append(obj.grad.untyped_storage())
    elif isinstance(obj, nn.Module):
        for t in (*obj.parameters(), *obj.buffers()):
            _storages(t, seen, out)
    elif isinstance(obj, torch.optim.Optimizer):
        for group in obj.param_groups:
            for p in group["params"]:
                _storages(p, seen, out)
        for state in obj.state.values():
            _storages(state, seen, out)
    elif isinstance(obj, dict):
        for v in obj.values():
            _storages(v, seen, out)
    elif isinstance(obj, (list, tuple, set)):
        for v in obj:
            _storages(v, seen, out)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type) and not inspect.isroutine(obj):
        for v in vars(obj).values():
            _storages(v, seen, out)


def resident_storages(*roots: Any, exclude: Iterable[torch.Tensor] = ()
                      ) -> dict[int, torch.UntypedStorage]:
    """Unique storages (by data pointer) of every tensor reachable from ``roots``, except those of
    ``exclude`` (the data sets a method may hold a reference to: they are not step memory)."""
    found: list[torch.UntypedStorage] = []
    seen: set[int] = set()
    for root in roots:
        _storages(root, seen, found)
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    return {s.data_ptr(): s for s in found if s.nbytes() > 0 and s.data_ptr() not in skip}


class CpuTensorMemory(TorchDispatchMode):
    """Live and peak bytes of tensor storage, tracked op by op (see the module docstring)."""

    def __init__(self, resident: Iterable[torch.UntypedStorage] = ()) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = 0
        for storage in resident:
            self._track(storage)
        self.start = self.peak = self.current

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = storage.data_ptr()
        if key not in self.live and storage.nbytes() > 0 and storage.device.type == "cpu":
            self.live[key] = (StorageWeakRef(storage), storage.nbytes())
            self.current += storage.nbytes()

    def _release_freed(self) -> None:
        dead = [k for k, (ref, _) in self.live.items() if ref.expired()]
        for k in dead:
            self.current -= self.live.pop(k)[1]

    def __exit__(self, *exc) -> None:
        self._release_freed()
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._release_freed()
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t.untyped_storage())
        self.peak = max(self.peak, self.current)
        return out


@contextlib.contextmanager
def peak_memory(device: torch.device, *roots: Any, exclude: Iterable[torch.Tensor] = ()
                ) -> Iterator[dict[str, float]]:
    """Measure the peak bytes of the enclosed step; yields a dict filled with ``peak_bytes``."""
    result: dict[str, float] = {}
    resident = resident_storages(*roots, exclude=exclude)
    # No strong reference to a resident storage may outlive this point: one would keep a
    # gradient that the step frees (zero_grad(set_to_none=True)) alive and counted twice.
    if device.type == "cuda":
        owned = sum(s.nbytes() for s in resident.values() if s.device.type == "cuda")
        del resident
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield result
        torch.cuda.synchronize(device)
        extra = torch.cuda.max_memory_allocated(device) - start
        result["peak_bytes"] = float(owned + max(0, extra))
    else:
        counter = CpuTensorMemory(resident.values())
        del resident
        with counter:
            yield result
        result["peak_bytes"] = float(counter.peak)


class StepTimer:
    """Wall time of steps; ``median_ms`` over the recorded ones."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []

    @contextlib.contextmanager
    def time(self) -> Iterator[None]:
        sync = self.device.type == "cuda"
        if sync:
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        yield
        if sync:
            torch.cuda.synchronize(self.device)
        self.times.append(time.perf_counter() - t0)

    def median_ms(self) -> float:
        return statistics.median(self.times) * 1000.0 if self.times else float("nan")
