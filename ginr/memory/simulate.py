"""One training step's GPU memory, simulated on fake tensors: no GPU, no real memory, full size.

The real model runs under ``FakeTensorMode``: every tensor has its real shape, dtype, strides and byte
size, and nothing is computed. A dispatch mode records each storage when an op allocates it and a weak
reference reports when it is freed, so inputs, forward, loss and backward give the live-bytes timeline
that the CUDA caching allocator would see (``max_memory_allocated``). Where a CPU run would differ from a
CUDA one (autocast's float32 list, the attention and mamba kernels), :mod:`ginr.memory.standins` makes it
allocate as CUDA does.
"""

import weakref
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ginr.engine.build import build_model
from ginr.engine.step import synthetic_batch
from ginr.memory.standins import CudaAutocastPolicy, cuda_standins
from ginr.models.layers import Attention


@dataclass
class Trace:
    """What one simulated step allocates, in bytes. ``timeline`` is the live total after each allocation."""

    peak: int
    peak_phase: str
    end_of_forward: dict[str, int]
    timeline: list[int] = field(repr=False)


def component_of(path: str) -> str:
    """The planner's component for a module path (``decoder.bands.0.band.blocks.1.ff1...``)."""
    parts = path.split(".")
    if parts[0] == "encoder":
        return "encoder"
    if parts[0] != "decoder" or len(parts) < 2:
        return "decoder.other"
    if parts[1] == "bands" and len(parts) >= 4 and parts[3] in ("band", "modulation"):
        return f"decoder.band{parts[2]}.{parts[3]}"
    if parts[1] in ("modulation", "cross_attn"):
        return f"decoder.{parts[1]}"
    if parts[1] == "ffs" and len(parts) >= 3:
        return f"decoder.ff{parts[2]}"
    return "decoder.other"


class _Tracker(TorchDispatchMode):
    def __init__(self, params: list[torch.Tensor], others: list[torch.Tensor]):
        super().__init__()
        self.params = {id(p.untyped_storage()) for p in params}
        self.known = self.params | {id(t.untyped_storage()) for t in others}
        self._hold = [t.untyped_storage() for t in [*params, *others]]  # keeps the ids above unique
        self.allocs: dict[int, tuple[int, str]] = {}
        self._refs: dict[int, weakref.ref] = {}
        self.live = self.peak = 0
        self.peak_phase = ""
        self.timeline: list[int] = []
        self.phase, self.modules, self.attn = "inputs", [""], [None]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._record(t, func, args)
        return out

    def _record(self, t: torch.Tensor, func, args) -> None:
        storage = t.untyped_storage()
        key = id(storage)
        if key in self.known or key in self.allocs:
            return
        if self.phase != "forward":
            component = self.phase
        elif func is torch.ops.aten._to_copy.default and id(args[0].untyped_storage()) in self.params:
            component = "weight_copies"
        elif self.attn[-1] is not None and t.dim() >= 3 and tuple(t.shape[-2:]) == self.attn[-1]:
            component = "attention_matrices"
        else:
            component = component_of(self.modules[-1])
        self.allocs[key] = (storage.nbytes(), component)
        self._refs[key] = weakref.ref(storage, lambda _, key=key: self._free(key))
        self.live += storage.nbytes()
        if self.live > self.peak:
            self.peak, self.peak_phase = self.live, self.phase
        self.timeline.append(self.live)

    def _free(self, key: int) -> None:
        nbytes, _ = self.allocs.pop(key)
        self._refs.pop(key, None)
        self.live -= nbytes

    def by_component(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for nbytes, component in self.allocs.values():
            totals[component] = totals.get(component, 0) + nbytes
        return totals

    def hook(self, model: torch.nn.Module) -> list:
        def pre(module, args, kwargs, name):
            self.modules.append(name)
            shape = None
            if isinstance(module, Attention) and module.impl == "naive":
                context = kwargs.get("context", args[1] if len(args) > 1 else None)
                shape = (args[0].shape[1], (args[0] if context is None else context).shape[1])
            self.attn.append(shape if shape is not None else self.attn[-1])

        def post(module, args, kwargs, output):
            self.modules.pop()
            self.attn.pop()

        handles = []
        for name, module in model.named_modules():
            handles.append(
                module.register_forward_pre_hook(lambda m, a, k, n=name: pre(m, a, k, n), with_kwargs=True)
            )
            handles.append(module.register_forward_hook(post, with_kwargs=True))
        return handles


class FakeModel:
    """The model of ``cfg`` built once on fake tensors, to simulate steps of any size."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.mode = FakeTensorMode(allow_non_fake_inputs=True)
        with self.mode:
            self.model = build_model(cfg)
        self.params = list(self.model.parameters())
        self.buffers = list(self.model.buffers())

    def simulate(
        self, batch: int, queries: int, *, amp: torch.dtype | None, scan_backend: str, conv_kernel: bool
    ) -> Trace:
        """One step as the loop runs it: inputs, forward under autocast, float32 MSE loss, backward."""
        data = self.cfg.data
        tracker = _Tracker(self.params, self.buffers)
        handles = tracker.hook(self.model)
        autocast = torch.autocast("cpu", dtype=amp) if amp is not None else nullcontext()
        try:
            with self.mode, tracker, cuda_standins(scan_backend, conv_kernel):
                images, coords, targets = synthetic_batch(
                    batch, data.channels, data.resolution, queries, "cpu"
                )
                tracker.phase = "forward"
                with autocast, CudaAutocastPolicy():
                    pred = self.model(images, coords)
                tracker.phase = "output_loss"
                loss = F.mse_loss(pred.float(), targets)
                end = tracker.by_component()
                tracker.phase = "backward"
                with CudaAutocastPolicy():  # checkpointed forwards re-run under autocast inside backward
                    loss.backward()
                del loss, pred
        finally:
            for handle in handles:
                handle.remove()
            for p in self.params:
                p.grad = None
        return Trace(tracker.peak, tracker.peak_phase, end, tracker.timeline)
