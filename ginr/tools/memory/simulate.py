"""One training step's GPU memory, simulated on fake tensors: no GPU, no real memory, full size.

The model is built under ``FakeTensorMode``: every tensor has its real shape, dtype, strides and byte
size, and nothing is computed. The step is the training loop's own: inputs from
:func:`ginr.engine.build.synthetic_batch` and :func:`ginr.engine.build.build_queries`, then :meth:`ginr.engine.step.TrainStep.forward_backward`
(autocast forward, float32 MSE, backward). A dispatch mode records each storage when an op allocates it
and a weak reference reports when it is freed, which gives the live-bytes timeline that the CUDA caching
allocator would see (``max_memory_allocated``, without its rounding of blocks to 512 bytes).

Each allocation is attributed when it is made: in the forward to the module running it (from
``torch.utils.module_tracker.ModuleTracker``'s ``parents``, :class:`ForwardModuleTracker`), cut to a
component of the model's own module tree by :func:`component_of`; outside any module before the backward
to ``output_loss``; in the backward (``is_bw``) to the temporaries. Attention matrices are what a module
allocates in the shape of a softmax it takes. Where a CPU run would differ from a CUDA one (autocast's float32 list, the attention and
mamba kernels), :mod:`ginr.tools.memory.standins` makes it allocate as CUDA does.
"""

import weakref
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from omegaconf import DictConfig
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.module_tracker import ModuleTracker

from ginr.engine.build import build_model, build_queries, synthetic_batch
from ginr.engine.step import TrainStep
from ginr.tools.memory.standins import cuda_autocast_policy, cuda_standins

# Children of the model that are broken down into components: the decoder is the ablation axis; the
# encoder (and any other child) is one component.
DETAILED = ("decoder",)
LISTS = (nn.ModuleList, nn.ModuleDict)
SOFTMAX = (torch.ops.aten._softmax, torch.ops.aten._safe_softmax)


@dataclass
class Trace:
    """What one simulated step allocates, in bytes. ``timeline`` is the live total after each allocation."""

    peak: int
    peak_phase: str
    end_of_forward: dict[str, int]
    timeline: list[int] = field(repr=False)


def _single_layer(module: nn.Module) -> bool:
    return next(module.children(), None) is None


def _holds_list(module: nn.Module) -> bool:
    return any(isinstance(m, LISTS) for m in module.modules())


def component_of(model: nn.Module, path: str, detailed: tuple[str, ...] = DETAILED) -> str:
    """The planner's component for the module at ``path`` (``decoder.bands.0.band.blocks.1.ff1.fn``),
    read from the model's own module tree, so that any decoder gets components without naming them here.

    A child of the model is one component (``encoder``) unless it is in ``detailed``. There the path is cut
    after the child (``decoder.modulation``); when the child is a ModuleList (or ModuleDict), after the item
    (``decoder.ffs.0``); and when that item holds a ModuleList itself (it is made of stacks of blocks), after
    the item's child (``decoder.bands.0.band``). A single layer (a module without children) directly under
    the decoder or such an item belongs to its parent: ``decoder`` holds the decoder's own ops and single
    layers, ``decoder.bands.0`` the Fourier features, skip and head of that band. ``model``: the model's
    own ops, outside its children.
    """
    if not path:
        return "model"
    names = path.split(".")
    if names[0] not in detailed:
        return names[0]
    top = model.get_submodule(names[0])
    kept, module = names[:1], top
    for name in names[1:]:
        child = module.get_submodule(name)
        if isinstance(module, LISTS):  # an item: split further only when it is made of stacks
            kept.append(name)
            if not _holds_list(child):
                break
        elif _single_layer(child):  # belongs to its parent's component
            break
        else:
            kept.append(name)
            if module is not top or not isinstance(child, LISTS):  # only a list under the top is split
                break
        module = child
    return ".".join(kept)


class ForwardModuleTracker(ModuleTracker):
    """``ModuleTracker`` without its backward half, which would change the memory it is asked to attribute:
    the gradient hooks it puts on every module's inputs hold early gradients until the module's last one
    arrives (+3% peak on a small checkpointed naive-attention step), and those it adds again in the forwards
    that checkpointing recomputes inside the backward keep the recomputed graphs, activations and all, until
    it exits (5.8 -> 16.8 GB on checkpointed ``scent_ff``). The planner reads ``parents`` in the forward
    only, and ``is_bw``. (torch.distributed's ModTracker skips the second kind of hook, not the first.)"""

    def _fw_pre_hook(self, mod, input) -> None:
        if not self.is_bw:
            self.parents.add(self._get_mod_name(mod))

    def _fw_post_hook(self, mod, input, output) -> None:
        if not self.is_bw:
            self.parents.discard(self._get_mod_name(mod))


class _Alloc(NamedTuple):
    nbytes: int
    component: str | None  # None: made by the module at ``path`` in the forward, classified when asked
    path: str
    tail: tuple[int, ...]  # the last two dimensions, to recognise attention matrices


class _Tracker(TorchDispatchMode):
    """Every storage the step allocates, with its component, while it is alive."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.params = {id(p.untyped_storage()) for p in model.parameters()}
        self.known = self.params | {id(b.untyped_storage()) for b in model.buffers()}
        self._hold = [t.untyped_storage() for t in [*model.parameters(), *model.buffers()]]  # ids stay unique
        self.modules = ForwardModuleTracker()
        self.allocs: dict[int, _Alloc] = {}
        self.softmax: set[tuple[str, tuple[int, ...]]] = set()  # (path, last two dims) of forward softmaxes
        self._components: dict[str, str] = {}
        self.live = self.peak = 0
        self.peak_phase = ""
        self.timeline: list[int] = []
        self.in_step = False
        self.end_of_forward: dict[str, int] | None = None

    def __enter__(self):
        self.modules.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.modules.__exit__(*exc)

    def start_step(self) -> None:
        """What is allocated from here on belongs to the step; before, to its inputs."""
        self.in_step = True

    def _module_path(self) -> str | None:
        """The innermost module running (its path in the model, "" for the model), or None: none is."""
        running = self.modules.parents - {"Global"}
        if not running:
            return None
        return max(running, key=lambda name: name.count(".")).partition(".")[2]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        path = self._module_path() if self.in_step and not self.modules.is_bw else None
        if path is not None and func.overloadpacket in SOFTMAX:
            self.softmax.add((path, tuple(out.shape[-2:])))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._record(t, func, args, path)
        return out

    def _record(self, t: torch.Tensor, func, args, path: str | None) -> None:
        storage = t.untyped_storage()
        key = id(storage)
        if key in self.known or key in self.allocs:
            return
        if not self.in_step:
            component, phase = "inputs", "inputs"
        elif self.modules.is_bw:
            if self.end_of_forward is None:  # the backward's first allocation: the forward has ended
                self.end_of_forward = self.by_component()
            component, phase = "backward", "backward"
        elif path is None:
            component, phase = "output_loss", "output_loss"
        elif func is torch.ops.aten._to_copy.default and id(args[0].untyped_storage()) in self.params:
            component, phase = "weight_copies", "forward"
        else:
            component, phase = None, "forward"
        tail = tuple(t.shape[-2:]) if t.dim() >= 3 else ()
        self.allocs[key] = _Alloc(storage.nbytes(), component, path or "", tail)
        weakref.finalize(storage, self._free, key)
        self.live += storage.nbytes()
        if self.live > self.peak:
            self.peak, self.peak_phase = self.live, phase
        self.timeline.append(self.live)

    def _free(self, key: int) -> None:
        self.live -= self.allocs.pop(key).nbytes

    def _component(self, alloc: _Alloc) -> str:
        if alloc.component is not None:
            return alloc.component
        if (alloc.path, alloc.tail) in self.softmax:  # shaped like a softmax of its module: (N, M) scores
            return "attention_matrices"
        if alloc.path not in self._components:
            self._components[alloc.path] = component_of(self.model, alloc.path)
        return self._components[alloc.path]

    def by_component(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for alloc in self.allocs.values():
            component = self._component(alloc)
            totals[component] = totals.get(component, 0) + alloc.nbytes
        return totals

    def trace(self) -> Trace:
        end = self.end_of_forward if self.end_of_forward is not None else self.by_component()
        return Trace(self.peak, self.peak_phase, end, self.timeline)


class FakeModel:
    """The model of ``cfg`` built once on fake tensors, to simulate steps of any size."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.mode = FakeTensorMode(allow_non_fake_inputs=True)
        with self.mode:
            self.model = build_model(cfg)
            self.optimizer = torch.optim.AdamW(self.model.parameters())  # TrainStep's; never stepped here
        self.params = list(self.model.parameters())
        self.buffers = list(self.model.buffers())

    def simulate(
        self, inputs: DictConfig, *, amp: torch.dtype | None, scan_backend: str, conv_kernel: bool
    ) -> Trace:
        """One step as the loop runs it, with the inputs ``inputs`` (a config's ``data``, ``trainer``,
        ``targets`` and ``seed``) gives the trainer: a batch in the loader's shapes, this step's query
        pixels and targets (:func:`ginr.engine.build.build_queries`), then ``TrainStep.forward_backward``."""
        step = TrainStep(self.model, self.optimizer, amp=amp, grad_clip=1.0)  # forward_backward clips nothing
        tracker = _Tracker(self.model)
        try:
            with self.mode, tracker, cuda_standins(scan_backend, conv_kernel):
                queries = build_queries(inputs, self.model, "cpu")  # its pixel grids are the GPU's too
                images, coords, targets = queries.inputs(0, synthetic_batch(inputs, "cpu"))
                tracker.start_step()
                with cuda_autocast_policy():
                    loss, pred = step.forward_backward(images, coords, targets)
                del loss, pred
        finally:
            self.optimizer.zero_grad(set_to_none=True)
        return tracker.trace()
