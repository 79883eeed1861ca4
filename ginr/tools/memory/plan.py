"""Memory planner: the peak GPU memory of one training step, predicted from the config alone.

The step is simulated at full size on fake tensors (:mod:`ginr.tools.memory.simulate`): the training loop's own
inputs, forward, loss and backward (``ginr.engine.step``), with CUDA's autocast dtypes and the CUDA kernels'
saved tensors, every allocation counted as it is made and freed. Parameters, gradients and AdamW state are
added from the parameter count; the optimizer step (foreach AdamW: one parameter-sized temporary) is a
second candidate for the peak. On a CUDA machine the measured peak of such a step is printed beside it.

What is modelled: a steady-state step (AdamW state allocated), eager, on one GPU; bf16 / fp16 autocast and
fp32; activation checkpointing of encoder and decoder blocks and the memory-lean mode
(``trainer.checkpoint_queries``), whose recomputation runs inside the simulated backward; the ``cuda``
selective-scan backend (mamba-ssm's kernel, with or without causal-conv1d's convolution kernel) and the
``torch`` one; SDPA (flash / memory-efficient kernels) and naive attention. Not modelled: ``trainer.compile``,
several GPUs (DDP's buckets), the fused mixer (``mamba_inner_fn``, which the GPU run takes with
``encoder.direction_scan=separate`` where causal-conv1d is installed; simulated as the unfused kernels), the allocator's 512-byte rounding and fragmentation.

Accuracy, against ``max_memory_allocated`` on an H100 (2026-11-22, torch 2.11,
``experiments/benchmarks/memory_check.md``): within 0.1% at every recorded eager step of the joint
direction scan (every block type without checkpointing at batch 64, and the memory-lean mode at 512
queries per chunk) except naive attention, under-predicted by 7% (the GPU holds one more float32 attention
matrix in the backward than simulated). Earlier, on unfused runs at 41 steps (every block type, bf16 and
fp32, batch 4 to 64, 1,024 to 65,536 queries): 39 within 5%.
"""

import functools
import re
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf

from ginr.config import decoding, prepare
from ginr.engine.build import amp_dtype, build_queries, build_train_step, param_groups, synthetic_batch
from ginr.ops import backend as scan_backend
from ginr.tools.memory.simulate import FakeModel, Trace

# cuBLAS workspaces (32 MiB on Hopper) come from the caching allocator, one per thread that runs matmuls:
# the forward's and the autograd device thread's.
CUDA_WORKSPACE = 2 * 32 * 2**20
UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
LABELS = {
    "parameters": "parameters",
    "gradients": "gradients",
    "adamw_state": "AdamW state (exp_avg, exp_avg_sq)",
    "inputs": "inputs (images, coordinates, targets)",
    "weight_copies": "autocast weight copies",
    "encoder": "encoder activations",
    "model": "model (outside encoder and decoder)",
    "decoder": "decoder other (its own ops and single layers)",
    "decoder.modulation": "decoder modulation attention",
    "decoder.cross_attn": "decoder cross-attention",
    "decoder.out": "decoder output (norm, projection)",
    "attention_matrices": "attention matrices (naive attention)",
    "output_loss": "output and loss",
    "cuda_workspace": "cuBLAS workspaces",
    "transient": "temporaries at the peak (backward / optimizer)",
}
FIRST = ["parameters", "gradients", "adamw_state", "inputs", "weight_copies", "encoder"]
LAST = ["attention_matrices", "decoder", "model", "output_loss", "cuda_workspace", "transient"]


def label(key: str) -> str:
    """A component's line in the table; a component no label names shows its module path."""
    if match := re.fullmatch(r"decoder\.bands\.(\d+)\.(band|modulation)", key):
        return f"decoder scale {match[1]} {match[2]} stack"
    if match := re.fullmatch(r"decoder\.bands\.(\d+)", key):
        return f"decoder scale {match[1]} other (Fourier features, skip, head)"
    if match := re.fullmatch(r"decoder\.ffs\.(\d+)", key):
        return f"decoder feedforward {match[1]}"
    return LABELS.get(key, key)


def _order(key: str, paths: list[str]) -> tuple[int, int]:
    """Fixed lines first and last; the model's components between, in the order the model defines them."""
    if key in FIRST:
        return FIRST.index(key), 0
    if key in LAST:
        return 100 + LAST.index(key), 0
    return 50, paths.index(key) if key in paths else len(paths)


@dataclass
class MemoryPlan:
    """Predicted peak of one training step: ``components`` in bytes (they sum to ``total``)."""

    components: dict[str, int]
    total: int
    batch_size: int
    queries: int
    precision: str
    scan_backend: str
    peak_phase: str
    num_params: int

    def table(self, measured: int | None = None) -> str:
        lines = [f"{'component':<54}{'GB':>9}{'share':>8}"]
        for key, value in self.components.items():
            lines.append(f"{label(key):<54}{value / 1e9:>9.3f}{100 * value / self.total:>7.1f}%")
        lines.append(f"{'predicted peak (' + self.peak_phase + ')':<54}{self.total / 1e9:>9.3f}")
        if measured is not None:
            error = 100 * (self.total - measured) / measured
            lines.append(f"{'measured peak (one training step on this GPU)':<54}{measured / 1e9:>9.3f}")
            lines.append(f"{'relative error of the prediction':<54}{error:>+8.1f}%")
        return "\n".join(lines)


def parse_budget(text: str) -> int:
    """'24GB' (10^9), '24GiB' (2^30), '500MB', '1.5TB' -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]+)\s*", str(text))
    if not match or match[2].lower() not in UNITS or float(match[1]) <= 0:
        raise ValueError(
            f"--budget {text!r} is not a memory size: expected a positive number and a unit, e.g. 24GB, 24GiB or 500MB"
        )
    return int(float(match[1]) * UNITS[match[2].lower()])


def target_backend(cfg: DictConfig) -> tuple[str, bool]:
    """(selective-scan backend, causal-conv1d kernel?) the GPU run would use. Without a GPU here, ``auto``
    assumes the GPU machine has the mamba-ssm / causal-conv1d kernels."""
    requested = cfg.encoder.get("backend", "torch")  # an encoder without a selective scan: nothing to pick
    here = torch.cuda.is_available()
    if requested == "auto" and here and scan_backend.selective_scan_cuda is None:
        requested = "triton" if scan_backend.selective_scan_triton is not None else "torch"
    if requested == "triton" and scan_backend.selective_scan_triton is None:
        raise ValueError(
            f"planning encoder.backend=triton runs its op here, which needs Triton: {scan_backend.TRITON_STATUS}"
        )
    if requested in ("torch", "triton"):  # the Triton op's fake implementation gives its tensors' sizes
        return requested, False
    return "cuda", not here or scan_backend.causal_conv1d_cuda is not None


def with_inputs(cfg: DictConfig, batch_size: int | None = None, queries: int | None = None) -> DictConfig:
    """``cfg`` (validated) with ``data.batch_size`` and the pixels decoded per image (:func:`ginr.config.
    decoding`) changed where given: the planner's and the check's way to ask for another step size."""
    values = [f"data.batch_size={batch_size}"] if batch_size else []
    values += decoding(queries, cfg.data.resolution) if queries else []
    return prepare(OmegaConf.merge(cfg, OmegaConf.from_dotlist(values)) if values else cfg)


def decoded_queries(cfg: DictConfig) -> int:
    """Pixels a training step of ``cfg`` decodes per image: the input's, and those above it."""
    return (cfg.trainer.queries_per_image or cfg.data.resolution**2) + cfg.targets.queries


@functools.lru_cache(maxsize=4)
def _fake_model(key: str) -> FakeModel:
    return FakeModel(OmegaConf.create(key))


@functools.lru_cache(maxsize=32)
def _trace(key: str, inputs: str, amp: torch.dtype | None, backend: str, conv: bool) -> Trace:
    return _fake_model(key).simulate(
        OmegaConf.create(inputs), amp=amp, scan_backend=backend, conv_kernel=conv
    )


def _simulate(cfg: DictConfig, conv_kernel: bool | None = None) -> tuple[FakeModel, Trace]:
    model_cfg = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("encoder", "decoder")}
    model_cfg["data"] = {"channels": cfg.data.channels, "resolution": cfg.data.resolution}
    model_cfg["trainer"] = {"checkpoint_queries": cfg.trainer.get("checkpoint_queries")}
    inputs = {  # what the trainer's inputs are built from (ginr.engine.build.build_queries, synthetic_batch)
        "data": {k: cfg.data[k] for k in ("batch_size", "channels", "resolution")},
        "trainer": {k: cfg.trainer[k] for k in ("queries_per_image", "query_sampling")},
        "targets": OmegaConf.to_container(cfg.targets, resolve=True),
        "seed": cfg.seed,
    }
    key = OmegaConf.to_yaml(model_cfg)
    amp = amp_dtype(cfg.trainer.precision, torch.device("cuda"))
    backend, conv = target_backend(cfg)
    conv = conv if conv_kernel is None else conv_kernel and backend == "cuda"
    return _fake_model(key), _trace(key, OmegaConf.to_yaml(inputs), amp, backend, conv)


def _lines(cfg: DictConfig, fake: FakeModel, trace: Trace) -> tuple[dict[str, int], int, int]:
    """(components without temporaries, step peak, optimizer-step peak) for one simulated step."""
    param_bytes = sum(p.numel() * p.element_size() for p in fake.params)
    groups = param_groups(fake.model, cfg.optim.optimizer.get("weight_decay", 0.0))
    largest_group = max(sum(p.numel() * p.element_size() for p in g["params"]) for g in groups)
    components = {"parameters": param_bytes, "gradients": param_bytes, "adamw_state": 2 * param_bytes}
    components |= trace.end_of_forward
    components["cuda_workspace"] = CUDA_WORKSPACE
    step_peak = 3 * param_bytes + trace.peak + CUDA_WORKSPACE  # the timeline holds the gradients
    optimizer_peak = 4 * param_bytes + largest_group + trace.end_of_forward.get("inputs", 0) + CUDA_WORKSPACE
    return components, step_peak, optimizer_peak


def plan(
    cfg: DictConfig,
    batch_size: int | None = None,
    queries: int | None = None,
    *,
    conv_kernel: bool | None = None,
) -> MemoryPlan:
    """Predict the peak of one training step of ``cfg`` (``data.batch_size`` and the configured queries
    per image unless given). ``conv_kernel``: whether the GPU has causal-conv1d's kernel (default: as
    :func:`target_backend` guesses)."""
    cfg = with_inputs(cfg, batch_size, queries)
    fake, trace = _simulate(cfg, conv_kernel)
    components, step_peak, optimizer_peak = _lines(cfg, fake, trace)
    peak, phase = max((step_peak, trace.peak_phase), (optimizer_peak, "optimizer step"))
    known = sum(components.values())
    components["transient"] = max(0, peak - known)
    paths = [name for name, _ in fake.model.named_modules()]
    components = dict(sorted(components.items(), key=lambda kv: _order(kv[0], paths)))
    amp = amp_dtype(cfg.trainer.precision, torch.device("cuda"))
    precision = {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}.get(amp, "fp32")
    return MemoryPlan(
        components=components, total=max(peak, known), batch_size=cfg.data.batch_size,
        queries=decoded_queries(cfg), precision=precision,
        scan_backend=target_backend(cfg)[0], peak_phase=f"during {phase}", num_params=sum(p.numel() for p in fake.params),
    )  # fmt: skip


def largest_batch(cfg: DictConfig, budget_bytes: int) -> int:
    """The largest ``data.batch_size`` whose predicted peak fits in ``budget_bytes`` (0 if none does).

    Every term of the prediction is linear in the batch at each point of the step's timeline, so two
    simulations (batch 2 and 4) give it for every batch size."""
    cfg = prepare(cfg)
    b1, b2 = 2, 4
    fake, t1 = _simulate(with_inputs(cfg, b1))
    t2 = _simulate(with_inputs(cfg, b2))[1]
    (c1, s1, o1), (c2, _, o2) = _lines(cfg, fake, t1), _lines(cfg, fake, t2)
    timeline1, timeline2 = t1.timeline, t2.timeline
    if len(timeline1) != len(timeline2):  # not seen; then only the step peaks are extrapolated
        timeline1, timeline2 = [t1.peak], [t2.peak]
    static = s1 - t1.peak
    pairs = [(static + v1, static + v2) for v1, v2 in zip(timeline1, timeline2, strict=True)]
    pairs += [(o1, o2), (sum(c1.values()), sum(c2.values()))]
    slopes = [(v2 - v1) / (b2 - b1) for v1, v2 in pairs]
    # each candidate as bytes = base + slope * batch
    lines = [(v1 - slope * b1, slope) for (v1, _), slope in zip(pairs, slopes, strict=True)]
    if any(slope <= 0 and base > budget_bytes for base, slope in lines):
        return 0
    bounds = [(budget_bytes - base) / slope for base, slope in lines if slope > 0]
    batch = int(min(bounds, default=2**20))
    while batch > 0 and plan(cfg, batch_size=batch).total > budget_bytes:
        batch -= 1  # batch 1 can differ slightly from the extrapolation (size-1 dimensions view, not copy)
    return max(batch, 0)


def measure_peak(cfg: DictConfig, batch_size: int | None = None, queries: int | None = None) -> int:
    """``max_memory_allocated`` of one steady-state training step on the GPU (after one step that
    creates the AdamW state): the training step of ``ginr.engine.step`` on random images, with the
    trainer's own query pixels and targets."""
    cfg = with_inputs(cfg, batch_size, queries)
    device = torch.device("cuda")
    step = build_train_step(cfg, device)
    inputs = build_queries(cfg, step.model, device).inputs(0, synthetic_batch(cfg, device))
    step(*inputs)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step(*inputs)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device)


def _describe(cfg: DictConfig, result: MemoryPlan) -> str:
    decoder = cfg.decoder.get("block", {}).get("_target_", cfg.decoder._target_).rsplit(".", 1)[-1]
    ckpt = f"encoder {cfg.encoder.checkpoint}, decoder {cfg.decoder.checkpoint}"
    if cfg.trainer.get("checkpoint_queries"):
        ckpt += f", query chunks of {cfg.trainer.checkpoint_queries} (memory-lean)"
    assumed = "" if torch.cuda.is_available() else " (assumed for the GPU run: no GPU here)"
    fused = result.scan_backend == "cuda" and takes_fused_mixer(
        cfg, scan_backend.mamba_inner_cuda is not None
    )
    return (
        f"Memory plan: {cfg.name} (decoder {decoder}, attn_impl {cfg.decoder.get('attn_impl', 'sdpa')}, "
        f"checkpointing: {ckpt}), {result.num_params / 1e6:.1f}M parameters\n"
        f"batch {result.batch_size} x {result.queries} queries per image, {result.precision}, "
        f"selective scan backend {result.scan_backend}{assumed}, AdamW (foreach), eager\n"
        + ("note: this GPU runs the fused mixer (mamba_inner_fn), predicted as the unfused kernels\n" if fused else "")
        + "activations: what the forward allocates and still holds at its end (saved for backward); "
        "temporaries: the rest of the peak"
    )  # fmt: skip


def takes_fused_mixer(cfg: DictConfig, fused_kernel: bool) -> bool:
    """Whether a GPU run of ``cfg`` takes the fused mixer (not modelled): only two separate direction scans
    do, where causal-conv1d is installed (``fused_kernel``)."""
    return fused_kernel and cfg.encoder.get("direction_scan", "joint") == "separate"


def report(cfg: DictConfig, result: MemoryPlan, measured: int | None = None) -> str:
    """The command's output for one plan: the setting, then the table (with ``measured`` beside it)."""
    return f"{_describe(cfg, result)}\n{result.table(measured)}"


def oom_hint(cfg: DictConfig, budget_bytes: int) -> str:
    """One line for an out-of-memory error: the predicted peak and the largest batch predicted to fit."""
    predicted, fits = plan(cfg), largest_batch(cfg, budget_bytes)
    return (
        f"the memory planner predicts a peak of {predicted.total / 1e9:.1f} GB at data.batch_size="
        f"{predicted.batch_size}; the largest batch predicted to fit in {budget_bytes / 1e9:.1f} GB is {fits} "
        f"(details: python -m ginr.tools.memory <overrides> --budget {budget_bytes / 1e9:.0f}GB)"
    )
