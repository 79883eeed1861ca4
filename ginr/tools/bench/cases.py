"""What the benchmark measures: one :class:`Case` per measurement, grouped by preset. The variants are
:func:`ginr.tools.variants.variants`: the experiments in ``configs/experiment`` (discovered, never listed
here) and their naive-attention twins."""

import fnmatch
import functools
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from ginr.config import compose, decoding, experiments, mixes_queries, prepare
from ginr.tools.variants import default_variant, encoders, input_sizes, variants


@dataclass(frozen=True)
class Case:
    """One measurement. ``group``: main | queries | batch | encoder | render | compile | inputs | lengths |
    steps."""

    name: str
    group: str
    variant: str
    overrides: tuple[str, ...]
    precision: str = "bf16"
    checkpoint: bool = False
    batch: int | None = None  # data.batch_size (None: the config's); --set data.batch_size=... wins
    queries: int | None = None  # pixels decoded per image (ginr.config.decoding; None: the config's)
    compile: bool = False
    backend: str | None = None  # encoder cases
    chunk: int | None = None  # render cases
    render_size: int | None = None  # render cases: the image side


@dataclass(frozen=True)
class Timing:
    warmup: int = 3
    repeats: int = 8
    max_case_s: float = 20.0  # fewer repeats when steps are slow, so no case runs away


CHECKPOINTING = ("decoder.checkpoint=true", "encoder.checkpoint=true")
EAGER = ("trainer.compile=false",)  # every case eager (hardware=gpu compiles) unless it is a compile/ case


def mixing(variant: str) -> bool:
    return mixes_queries(case_config(variants()[variant]))


@dataclass(frozen=True)
class Preset:
    sizes: tuple[str, ...]
    batch: int | None  # None: as the config (and --set) says
    queries: int | None  # None: as the config says; the GPU's decodes every pixel of the input
    sweep: tuple[int, ...]
    sweep_batch: int
    batches: tuple[int, ...]
    precisions: tuple[str, ...]
    groups: tuple[str, ...]
    render_size: int
    chunks: tuple[int, ...]
    timing: Timing
    budget_s: float | None  # cases left when it is spent are recorded as skipped
    lean_chunks: tuple[int, ...] = (64, 256, 512)  # trainer.checkpoint_queries of the memory-lean cases


ALL_GROUPS = ("main", "lean", "queries", "batch", "encoder", "render")
PRESETS = {
    # sweep batch 4: the 16x point (16384 queries) fits on an 80 GB GPU for every block type
    "reference": Preset(EAGER, None, None, (1024, 4096, 16384, 65536), 4, (16, 64), ("bf16", "fp32"), ALL_GROUPS,
                        1024, (65536, 16384), Timing(3, 8, 20.0), 330.0),
    "quick": Preset(EAGER, None, None, (1024, 4096, 16384), 4, (), ("bf16",), ("main", "queries"),
                    1024, (), Timing(2, 5, 10.0), 240.0),
    "cpu": Preset(("hardware=cpu",), 2, 64, (16, 64, 256), 2, (2, 4), ("bf16", "fp32"), ALL_GROUPS,
                  16, (64, 16), Timing(1, 2, 2.0), None, (16,)),
    # the default variant at every input size (data=emoji3d178, ...), each with its own batch and queries
    "inputs": Preset(EAGER, None, None, (), 1, (), ("bf16",), ("inputs",), 1024, (), Timing(2, 5, 30.0), 540.0),
    # every encoder alone (forward + backward) from 512 to 16,640 tokens a sequence, ~32k tokens a batch,
    # and the training step with each encoder at the reference and protocol inputs
    "encoders": Preset(EAGER, None, None, (), 1, (), ("bf16",), ("lengths", "steps"), 1024, (), Timing(2, 5, 20.0),
                       540.0),
}  # fmt: skip

LENGTH_PATCHES = (16, 8, 4, 2)  # patch sides at a 256 px input: 256 to 16,384 patch tokens, + the latents
TOKENS_PER_BATCH = 32768
STEP_INPUTS = ("emoji3d", "emoji3d178")  # the encoders preset's training steps: the 32 px reference, 178 px
RENDER_FACTORS = (4, 8)  # the inputs preset renders each input size at these multiples of its side


def length_overrides(patch: int, num_latents: int = 256) -> tuple[int, tuple[str, ...]]:
    """(tokens a sequence, overrides) of the encoder-length case with ``patch``-pixel patches of a 256 px
    input: the batch keeps about :data:`TOKENS_PER_BATCH` tokens, so long sequences come in small batches."""
    tokens = (256 // patch) ** 2 + num_latents
    batch = max(1, round(TOKENS_PER_BATCH / tokens))
    return tokens, (
        "data.resolution=256", f"encoder.patch_size={patch}", "encoder.patch_padding=0",
        f"encoder.num_latents={num_latents}", f"data.batch_size={batch}",
    )  # fmt: skip


def build_cases(preset: Preset, *, compile: bool) -> list[Case]:
    """Every case of ``preset``, in the order they run: bf16 first, fp32 last (the slowest)."""
    every, default = variants(), default_variant()
    sdpa = [v for v in every if v in experiments()]  # naive attention only in the main table
    per_query = [v for v in sdpa if not mixing(v)]  # decoders that can decode queries in chunks
    main = lambda v, p, ck: Case(
        f"main/{v}/{p}/ckpt-{'on' if ck else 'off'}", "main", v, every[v] + (CHECKPOINTING if ck else ()),
        precision=p, checkpoint=ck, batch=preset.batch, queries=preset.queries,
    )  # fmt: skip
    cases = [main(v, "bf16", ck) for ck in (False, True) for v in every] if "main" in preset.groups else []
    if "queries" in preset.groups:
        cases += [
            Case(f"queries/{v}/{q}", "queries", v, every[v], batch=preset.sweep_batch, queries=q)
            for v in sdpa for q in preset.sweep
        ]  # fmt: skip
    if "batch" in preset.groups:
        cases += [
            Case(f"batch/{default}/{b}", "batch", default, every[default], batch=b, queries=preset.queries)
            for b in preset.batches
        ]
    if "encoder" in preset.groups:
        settings = [("cuda", "joint", False), ("cuda", "separate", False), ("triton", "joint", False)]
        settings += [("torch", "joint", False)]
        settings += (
            [("cuda", "joint", True), ("cuda", "separate", True), ("triton", "joint", True)]
            if compile
            else []
        )
        cases += [  # the scan backends, both direction scans on the kernels, and (--compile) compiled
            Case(f"encoder/{b}/{d}{'/compiled' if c else ''}", "encoder", "encoder",
                 (f"encoder.backend={b}", f"encoder.direction_scan={d}", *(("trainer.compile=true",) if c else ())),
                 batch=preset.batch, backend=b, compile=c)
            for b, d, c in settings
        ]  # fmt: skip
    if "inputs" in preset.groups:  # the trainer's own inputs at each size (its batch, queries and targets),
        for d in input_sizes():  # and renders of one input at RENDER_FACTORS times its side
            size = (*every[default], f"data={d}")
            cases += [
                Case(f"inputs/{d}/{'compiled' if c else 'eager'}", "inputs", default,
                     (*size, *(("trainer.compile=true",) if c else ())), compile=c)
                for c in ((False, True) if compile else (False,))
            ]  # fmt: skip
            side = case_config(size).data.resolution
            cases += [
                Case(f"render/{d}/{f}x", "render", default, size, batch=1, render_size=f * side)
                for f in RENDER_FACTORS
            ]
    if "lengths" in preset.groups:  # each encoder alone over sequence lengths (its config's size)
        for name in encoders():
            for patch in LENGTH_PATCHES:
                tokens, overrides = length_overrides(patch)
                cases += [
                    Case(f"lengths/{name}/{tokens}/{'compiled' if c else 'eager'}", "lengths", name,
                         (f"encoder={name}", *overrides, *(("trainer.compile=true",) if c else ())), compile=c)
                    for c in ((False, True) if compile else (False,))
                ]  # fmt: skip
    if "steps" in preset.groups:  # the trainer's step (default decoder, each input's own batch and pixels)
        for name in encoders():  # with each encoder: what a run with it costs a step
            for d in STEP_INPUTS:
                cases += [
                    Case(f"steps/{name}/{d}/{'compiled' if c else 'eager'}", "steps", name,
                         (*every[default], f"data={d}", f"encoder={name}", *(("trainer.compile=true",) if c else ())),
                         compile=c)
                    for c in ((False, True) if compile else (False,))
                ]  # fmt: skip
    if "render" in preset.groups:  # a decoder that mixes queries decodes a whole image at once: not rendered
        cases += [
            Case(f"render/{v}/chunk{c}", "render", v, every[v], batch=1, chunk=c, render_size=preset.render_size)
            for v in per_query for c in preset.chunks
        ]  # fmt: skip
    if "main" in preset.groups:
        cases += [
            main(v, p, ck) for p in preset.precisions if p != "bf16" for ck in (False, True) for v in every
        ]
    if "lean" in preset.groups:  # memory-lean mode: checkpointed query chunks + encoder checkpointing
        cases += [
            Case(f"lean/{v}/chunk{c}", "lean", v, every[v] + (f"trainer.checkpoint_queries={c}", CHECKPOINTING[1]),
                 checkpoint=True, batch=preset.batch, queries=preset.queries)
            for v in per_query for c in preset.lean_chunks
        ]  # fmt: skip
    if compile and "main" in preset.groups:  # the GPU training default: every variant compiled, and lean
        compiled = ("trainer.compile=true",)
        cases += [
            Case(f"compile/{v}/bf16", "compile", v, every[v] + compiled, batch=preset.batch,
                 queries=preset.queries, compile=True)
            for v in every
        ] + [
            Case(f"compile/{default}/bf16/cudagraphs", "compile", default,
                 every[default] + (*compiled, "trainer.compile_mode=reduce-overhead"), batch=preset.batch,
                 queries=preset.queries, compile=True)
        ] + [
            Case(f"compile/lean/{default}/chunk{c}", "compile", default,
                 every[default] + (f"trainer.checkpoint_queries={c}", CHECKPOINTING[1], *compiled),
                 checkpoint=True, batch=preset.batch, queries=preset.queries, compile=True)
            for c in preset.lean_chunks
        ] + [  # the memory-lean mode as a run selects it: configs/memory/lean.yaml (CUDA graphs included)
            Case(f"compile/lean/{default}/memory-lean", "compile", default, every[default] + ("memory=lean", *compiled),
                 checkpoint=True, batch=preset.batch, queries=preset.queries, compile=True)
        ]  # fmt: skip
    return cases


def selected(name: str, only: list[str] | None) -> bool:
    return not only or any(
        fnmatch.fnmatch(name, p) if any(c in p for c in "*?[") else p in name for p in only
    )


@functools.lru_cache(maxsize=16)
def _composed(groups: tuple[str, ...]) -> DictConfig:
    return compose(list(groups))


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def case_overrides(case: Case, preset: Preset) -> tuple[str, ...]:
    """The config overrides of ``case`` in ``preset``, before its queries and the command line's ``--set``."""
    batch = (f"data.batch_size={case.batch}",) if case.batch is not None else ()
    return (*preset.sizes, *case.overrides, f"trainer.precision={case.precision}", *batch)


def case_config(
    overrides: tuple[str, ...], queries: int | None = None, given: tuple[str, ...] = ()
) -> DictConfig:
    """The prepared config of a case: config-group choices composed by Hydra once (a group in ``given``
    replaces the case's), the case's values merged on top, then ``queries`` decoded per image
    (:func:`ginr.config.decoding`), then the values in ``given`` (the command line's ``--set``), which win."""
    groups = {_key(o): o for o in (*overrides, *given) if "." not in _key(o)}
    values = [o for o in overrides if "." in _key(o)]
    cfg = OmegaConf.merge(_composed(tuple(groups.values())), OmegaConf.from_dotlist(values))
    if queries is not None:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(decoding(queries, cfg.data.resolution)))
    return prepare(OmegaConf.merge(cfg, OmegaConf.from_dotlist([o for o in given if "." in _key(o)])))
