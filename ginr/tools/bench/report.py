"""Markdown tables and plots for ``ginr.tools.bench`` results (one dict per case, as in results.json)."""

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ginr.tools.tables import markdown_table


def _num(value, fmt: str = "{:.1f}", scale: float = 1.0) -> str:
    return "–" if value is None else fmt.format(value * scale)


def _gb(value) -> str:
    return _num(value, "{:.2f}", 1e-9)


def _gflop(value) -> str:
    return "–" if value is None else f"{value / 1e9:.0f}" if value >= 1e11 else f"{value / 1e9:.3g}"


def _cells(r: dict, columns: list[str]) -> list[str]:
    """Measured columns of one case: ms, images/s, peak, activations, GFLOP, MFU (or its status)."""
    if r["status"] != "ok":
        return [r["status"]] + ["–"] * (len(columns) - 1)
    values = {
        "ms": _num(r.get("ms")), "img/s": _num(r.get("images_per_s"), "{:.0f}"), "peak": _gb(r.get("peak_bytes")),
        "act": _gb(r.get("activation_bytes")), "gflop": _gflop(r.get("model_flops")),
        "mfu": _num(r.get("mfu"), "{:.1f}%", 100.0), "work": _gb(r.get("activation_bytes")),
    }  # fmt: skip
    return [values[c] for c in columns]


def _section(title: str, head: list[str], rows: list[list[str]], *notes: str) -> list[str]:
    """One report section: its title, any notes, its table."""
    return [f"## {title}", "", *(f"{n}\n" for n in notes), markdown_table(head, rows), ""]


def _group(results: list[dict], group: str) -> list[dict]:
    return [r for r in results if r["group"] == group]


def query_ratios(results: list[dict]) -> dict[str, tuple[int, int, float | None]]:
    """Per variant of the query sweep: (fewest queries, 16x that, activation ratio between them)."""
    out = {}
    for variant in dict.fromkeys(r["variant"] for r in _group(results, "queries")):
        rows = {r["queries"]: r for r in _group(results, "queries") if r["variant"] == variant}
        base = min(rows)
        low, high = rows[base].get("activation_bytes"), rows.get(16 * base, {}).get("activation_bytes")
        out[variant] = (base, 16 * base, high / low if low and high else None)
    return out


def ran(records: list[dict], *, batch: bool = True, queries: bool = True) -> str:
    """What a table's rows ran, from their records (not from what the preset asked): the batch, the pixels
    decoded per image and the input's resolution where the rows share one; else each row says."""

    def shared(key: str, text: str) -> str | None:
        values = {r[key] for r in records if r.get(key) is not None}
        return text.format(values.pop()) if len(values) == 1 else None

    parts = [
        batch and shared("batch", "batch {}"),
        queries and shared("queries", "{} queries per image"),
        shared("resolution", "{} px input"),
    ]
    return ", ".join(p for p in parts if p) or "as each row says"


def markdown(meta: dict, results: list[dict], preset) -> str:
    notes = {}
    for r in results:
        if r.get("peak_flops_note"):
            notes.setdefault(r["precision"], r["peak_flops_note"])
    timing = meta["timing"]
    lines = [
        "# ginr benchmarks", "",
        f"- device: {meta['device']}; torch {meta['torch']} (CUDA {meta['cuda']}); selective scan: {meta['scan_kernels']}"
        f"; Mamba-2's scan: {meta.get('ssd_kernel', 'not recorded')}",
        f"- {meta['date']}, `{meta['command']}` (preset {meta['preset']}, {meta.get('wall_s', '?')} s)",
        f"- timing: {timing['warmup']} warm-up call(s), then the median of up to {timing['repeats']} timed calls "
        "(CUDA events; fewer when a call is slow); inputs are fresh random tensors rotated among 3 sets",
        "- training step = autocast forward + float32 MSE + backward + grad clipping + AdamW + zero_grad, "
        "the training step of `ginr.engine.step` that training runs",
        "- peak = `torch.cuda.max_memory_allocated` over the timed steps; activations = peak minus the memory "
        "allocated before a step (parameters, AdamW state, inputs)",
        "- MFU = model FLOPs per step (FlopCounterMode over one step, forward + backward: matmuls, convolutions "
        "and attention; not elementwise ops or the CUDA selective scan; a checkpointed row uses the FLOPs of "
        "its row without checkpointing, i.e. without the recomputation) / time / peak rate. Peak rates: "
        + ("; ".join(f"{p}: {n}" for p, n in notes.items()) or "none (CPU)"),
        "",
    ]  # fmt: skip
    main = _group(results, "main")
    if main:
        lines += [
            f"## Training step by decoder variant ({ran(main)})",
            "",
        ]
        cols = ["ms", "img/s", "peak", "act", "gflop", "mfu"]
        head = [
            "variant",
            "precision",
            "ckpt",
            "ms/step",
            "images/s",
            "peak GB",
            "activations GB",
            "GFLOP/step",
            "MFU",
        ]
        variants = list(dict.fromkeys(r["variant"] for r in main))  # in the order they ran
        order = sorted(
            main, key=lambda r: (r["precision"] != "bf16", r["checkpoint"], variants.index(r["variant"]))
        )
        rows = [
            [r["variant"], r["precision"], "on" if r["checkpoint"] else "off", *_cells(r, cols)]
            for r in order
        ]
        lines += [markdown_table(head, rows), ""]
    sweep = _group(results, "queries")
    if sweep:
        lines += [
            f"## Query scaling (bf16, {ran(sweep, queries=False)}; the input's pixels, then pixels of the same "
            "images above its resolution, as targets=multiscale trains)",
            "",
        ]
        rows = []
        for r in sweep:
            first = min((s for s in sweep if s["variant"] == r["variant"]), key=lambda s: s["queries"])
            low, act = first.get("activation_bytes"), r.get("activation_bytes")
            ratio = _num(act / low if low and act else None, "{:.1f}x")
            rows.append([r["variant"], str(r["queries"]), *_cells(r, ["ms", "peak", "act"]), ratio])
        head = [
            "variant",
            "queries/image",
            "ms/step",
            "peak GB",
            "activations GB",
            "activations vs fewest queries",
        ]
        lines += [markdown_table(head, rows), ""]
        for variant, (base, high, ratio) in query_ratios(results).items():
            lines.append(
                f"- {variant}: activations at {high} vs {base} queries (16x): {_num(ratio, '{:.1f}x')}"
            )
        lines.append("")
    batch = _group(results, "batch")
    if batch:
        lines += [f"## Batch size ({batch[0]['variant']}, bf16, {ran(batch, batch=False)})", ""]
        rows = [[str(r["batch"]), *_cells(r, ["ms", "img/s", "peak", "act"])] for r in batch]
        lines += [markdown_table(["batch", "ms/step", "images/s", "peak GB", "activations GB"], rows), ""]
    encoder = _group(results, "encoder")
    if encoder:
        lines += [
            f"## Encoder alone: scan backend / direction scan (bf16, {ran(encoder, queries=False)}, forward + backward)",
            "",
        ]
        rows = [
            [r["name"].removeprefix("encoder/"), *_cells(r, ["ms", "img/s", "peak", "act"])] for r in encoder
        ]
        lines.append(
            markdown_table(["backend / direction scan", "ms", "images/s", "peak GB", "activations GB"], rows)
        )
        ms = {r["name"].removeprefix("encoder/"): r.get("ms") for r in encoder if r["status"] == "ok"}
        ratios = {
            "speed-up of the cuda backend over torch (joint)": ("torch/joint", "cuda/joint"),
            "speed-up of the cuda backend (mamba-ssm) over triton (joint)": ("triton/joint", "cuda/joint"),
            "speed-up of the cuda backend over triton (joint), compiled": (
                "triton/joint/compiled",
                "cuda/joint/compiled",
            ),
            "speed-up of joint over separate direction scans (cuda)": ("cuda/separate", "cuda/joint"),
            "the same, compiled": ("cuda/separate/compiled", "cuda/joint/compiled"),
        }
        lines.append("")
        for label, (slow, fast) in ratios.items():
            ratio = ms[slow] / ms[fast] if ms.get(slow) and ms.get(fast) else None
            lines.append(f"- {label}: {_num(ratio, '{:.2f}x')}")
        lines.append("")
    render = _group(results, "render")
    if render:
        rows = [
            [r["variant"], str(r["resolution"]), str(r["render_size"]), str(r["chunk"]), *_cells(r, ["ms", "peak", "work"])]
            for r in render
        ]  # fmt: skip
        head = ["variant", "input px", "render px", "chunk (queries)", "ms", "peak GB", "workspace GB"]
        note = "Decoders whose blocks mix queries are not rendered: render decodes all their queries at once (O(N^2))."
        lines += _section("Renders of one input from its latents (bf16, no grad)", head, rows, note)
    lean = _group(results, "lean")
    if lean:
        lines += ["## Memory-lean mode (bf16; trainer.checkpoint_queries=chunk, encoder.checkpoint=true)", ""]
        rows = [
            [r["variant"], r["name"].rsplit("chunk", 1)[-1], *_cells(r, ["ms", "img/s", "peak", "mfu"])]
            for r in lean
        ]
        lines += [
            markdown_table(["variant", "queries per chunk", "ms/step", "images/s", "peak GB", "MFU"], rows),
            "",
        ]
    compiled = _group(results, "compile")
    if compiled:
        lines += ["## torch.compile (bf16; the training default on a GPU)", ""]
        rows = []
        for r in compiled:
            case = r["name"].removeprefix("compile/").replace("/bf16", "")
            twin = case if case.startswith("lean/") else f"main/{r['variant']}/bf16/ckpt-off"
            eager = next((e for e in [*main, *lean] if e["name"] == twin), None)
            e_ms, c_ms = (eager or {}).get("ms"), r.get("ms")
            rows.append(
                [
                    case,
                    _num(e_ms),
                    _num(c_ms) if r["status"] == "ok" else r["status"],
                    _num(e_ms / c_ms if e_ms and c_ms else None, "{:.2f}x"),
                    _num(r["batch"] / (c_ms / 1000) if c_ms else None, "{:.0f}"),
                    _gb(r.get("peak_bytes")),
                    _gb(r.get("reserved_bytes")),
                    _num(100 * r["mfu"] if r.get("mfu") else None, "{:.1f}%"),
                ]
            )
        head = ["case", "eager ms/step", "compiled ms/step", "speed-up", "images/s", "compiled peak GB",
                "reserved GB (CUDA graphs' pools)", "MFU"]  # fmt: skip
        lines += [markdown_table(head, rows), ""]
    inputs = _group(results, "inputs")
    if inputs:
        rows = [
            [*r["name"].split("/")[1:], str(r.get("resolution") or "–"), _tokens(r), str(r.get("batch") or "–"),
             str(r.get("queries") or "–"),
             *_cells(r, ["ms", "img/s", "peak", "mfu"])]
            for r in inputs
        ]  # fmt: skip
        head = ["data", "step", "input px", "encoder tokens", "batch", "pixels per image", "ms/step", "images/s",
                "peak GB", "MFU"]  # fmt: skip
        title = "Input sizes (bf16, the default variant; each data option's own batch and pixels per image)"
        lines += _section(title, head, rows)
    steps = _group(results, "steps")
    if steps:
        rows = [
            [r["variant"], *r["name"].split("/")[2:], str(r.get("resolution") or "–"), _tokens(r),
             str(r.get("batch") or "–"), str(r.get("queries") or "–"), *_cells(r, ["ms", "img/s", "peak", "mfu"])]
            for r in steps
        ]  # fmt: skip
        head = ["encoder", "data", "step", "input px", "encoder tokens", "batch", "pixels per image", "ms/step",
                "images/s", "peak GB", "MFU"]  # fmt: skip
        title = (
            "The training step with each encoder (bf16, the default decoder, each input's own batch, pixels)"
        )
        lines += _section(title, head, rows)
    lengths = _group(results, "lengths")
    if lengths:
        rows = [
            [r["variant"], r["name"].rsplit("/", 1)[-1], f"{int(r['name'].split('/')[2]):,}", str(r.get("batch") or "–"),
             *_cells(r, ["ms"]), _num(_ms_per_k(r), "{:.2f}"), _num(r.get("tokens_per_s"), "{:,.0f}"),
             *_cells(r, ["peak", "mfu"])]
            for r in lengths
        ]  # fmt: skip
        head = ["encoder", "step", "tokens a sequence", "batch", "ms", "ms per 1k tokens", "tokens/s", "peak GB",
                "MFU"]  # fmt: skip
        title = "Encoders alone by sequence length (forward + backward, bf16, about 32k tokens a batch)"
        lines += _section(title, head, rows)
    return "\n".join(lines)


def _ms_per_k(r: dict) -> float | None:
    """Milliseconds per 1,000 tokens of a length case: the per-token cost the scaling curve plots."""
    if r["status"] != "ok" or not r.get("ms"):
        return None
    return r["ms"] / (r["batch"] * r["tokens"]) * 1000


def _tokens(r: dict) -> str:
    """Patch tokens + latents of a case's encoder sequence (the runner's count)."""
    if r.get("tokens") is None:
        return "–"
    latents = r["config"]["encoder"]["num_latents"]
    return f"{r['tokens'] - latents:,} + {latents}"


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_memory_vs_queries(results: list[dict], path: Path) -> None:
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    sweep = _group(results, "queries")
    for variant in dict.fromkeys(r["variant"] for r in sweep):
        rows = [r for r in sweep if r["variant"] == variant]
        ok = [
            (r["queries"], r["peak_bytes"] / 1e9) for r in rows if r["status"] == "ok" and r.get("peak_bytes")
        ]
        line = ax.plot([x for x, _ in ok], [y for _, y in ok], marker="o", label=variant)[0] if ok else None
        oom = [r["queries"] for r in rows if r["status"] == "OOM"]
        if oom:
            top = max((y for _, y in ok), default=1.0)
            ax.plot(oom, [top] * len(oom), "x", color=line.get_color() if line else None, markersize=9)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("queries per image")
    ax.set_ylabel("peak memory (GB)")
    ax.set_title("Peak training-step memory vs queries (x: out of memory)", fontsize=10)
    if not any(r.get("peak_bytes") for r in sweep):
        ax.text(0.5, 0.5, "memory is measured on CUDA only", ha="center", transform=ax.transAxes)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    _save(fig, path)


def plot_ms_per_step(results: list[dict], path: Path) -> None:
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    main = [r for r in _group(results, "main") if r["precision"] == "bf16" and r["status"] == "ok"]
    variants = list(dict.fromkeys(r["variant"] for r in main))
    for shift, ckpt in ((-0.2, False), (0.2, True)):
        ms = {r["variant"]: r["ms"] for r in main if r["checkpoint"] == ckpt}
        xs = [i + shift for i, v in enumerate(variants) if v in ms]
        ax.bar(
            xs,
            [ms[v] for v in variants if v in ms],
            width=0.4,
            label=f"checkpointing {'on' if ckpt else 'off'}",
        )
    ax.set_xticks(range(len(variants)), variants, rotation=20)
    ax.set_ylabel("ms per training step")
    ax.set_title("Training step time, bf16", fontsize=10)
    if main:
        ax.legend()
    _save(fig, path)


def plot_encoder_lengths(results: list[dict], path: Path) -> None:
    """ms per 1,000 tokens against tokens a sequence, one line per encoder (compiled where measured)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    lengths = [r for r in _group(results, "lengths") if _ms_per_k(r) is not None]
    for name in dict.fromkeys(r["variant"] for r in lengths):
        for step in ("compiled", "eager"):
            rows = [r for r in lengths if r["variant"] == name and r["name"].endswith(step)]
            if rows:
                points = sorted((r["tokens"], _ms_per_k(r)) for r in rows)
                ax.plot(*zip(*points, strict=True), marker="o", label=f"{name} ({step})")
                break
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens a sequence (patches + latents)")
    ax.set_ylabel("ms per 1,000 tokens (forward + backward)")
    ax.set_title("Encoder cost per token by sequence length", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    _save(fig, path)
