"""Runs that differ only in their seed, as one variant: mean and 95% confidence interval per metric,
and differences between variants with their intervals (paired by seed where both ran the same seeds).

Intervals are Student t intervals over seeds: ``mean +- t(0.975, n - 1) * sd / sqrt(n)``; a difference
of two variants is paired (the per-seed differences, same data order and initial state of the shared
parts) when both ran the same seeds, else Welch's interval. With one seed there is no interval.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ginr.tools.compare.runs import RunSummary, differing_keys, setting, val_metric
from ginr.tools.tables import markdown_table

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; beyond, the normal's 1.96 is
# within 2% of them.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)  # fmt: skip

# Decimals shown per metric where two would mislead (step counts, budgets); PSNR and the rest: 2.
DIGITS = {"steps": 0, "step minutes": 2, "train PFLOP": 1, "ms/step": 1, "params (M)": 1}

# metric name -> how to read it from a run; the headline metrics of a study
METRICS: dict[str, Callable[[RunSummary], float | None]] = {
    "best val PSNR": lambda r: r.best_psnr,
    "test PSNR": lambda r: r.test_psnr,
    "test x2": lambda r: r.psnr_x2,
    "x2 vs best upscaler": lambda r: r.margin_x2,
    "test x4": lambda r: r.psnr_x4,
    "x4 vs best upscaler": lambda r: r.margin_x4,
    "steps": lambda r: r.step,
    "step minutes": lambda r: r.step_minutes,
    "train PFLOP": lambda r: r.train_pflop,
    "ms/step": lambda r: r.ms_per_step,
    "peak mem (GB)": lambda r: r.peak_mem_gb,
    "params (M)": lambda r: r.params_m,
}


def scales(runs: Sequence[RunSummary]) -> list[str]:
    """The test scales beyond 1x that any of ``runs`` scored: ``x2``, ``x4``, then the others (``256px``
    from a 178 px input) by size."""
    found = {scale for r in runs for scale in r.test_at}
    size = lambda scale: int(scale.removesuffix("px")) if scale.endswith("px") else 0
    return sorted(found, key=lambda scale: (size(scale), int(scale[1:]) if scale[0] == "x" else 0))


def metrics_for(runs: Sequence[RunSummary]) -> list[str]:
    """:data:`METRICS`, plus the PSNR and the margin over the best classical upscaler at every test scale
    of ``runs`` beyond 2x and 4x, after 4x's."""
    extra = [m for s in scales(runs) if s not in ("x2", "x4") for m in (f"test {s}", f"{s} vs best upscaler")]
    at = list(METRICS).index("x4 vs best upscaler") + 1
    return [*list(METRICS)[:at], *extra, *list(METRICS)[at:]]


def read_metric(metric: str) -> Callable[[RunSummary], float | None]:
    """How to read ``metric`` (a name of :func:`metrics_for`) from a run."""
    if metric in METRICS:
        return METRICS[metric]
    if match := re.fullmatch(r"test (\S+)", metric):
        return lambda r: r.test_at.get(match[1])
    if match := re.fullmatch(r"(\S+) vs best upscaler", metric):
        return lambda r: r.margin_at.get(match[1])
    raise KeyError(
        f"metric={metric!r} is not known: one of {', '.join(METRICS)}, 'test SCALE' or 'SCALE vs best upscaler'"
    )


def t_quantile(df: float) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (rounded down, >= 1)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    whole = int(df)
    return _T975[whole - 1] if whole <= len(_T975) else 1.96


@dataclass(frozen=True)
class Estimate:
    mean: float
    half_width: float | None  # of the 95% interval; None with one value
    n: int

    def __str__(self) -> str:
        return self.format(2)

    def format(self, digits: int) -> str:
        mean = f"{self.mean:.{digits}f}"
        return mean if self.half_width is None else f"{mean} ± {self.half_width:.{digits}f}"


def estimate(values: Sequence[float]) -> Estimate:
    """Mean of ``values`` and the half-width of its 95% t interval."""
    if not values:
        raise ValueError("an estimate needs at least one value")
    n = len(values)
    if n == 1:
        return Estimate(values[0], None, 1)
    return Estimate(statistics.fmean(values), t_quantile(n - 1) * statistics.stdev(values) / math.sqrt(n), n)


def difference(a: Sequence[tuple[int, float]], b: Sequence[tuple[int, float]]) -> tuple[Estimate, str]:
    """Mean of A minus mean of B, from (seed, value) pairs: paired where both ran the same seeds once
    each, else Welch's interval. Returns the estimate and which interval it is."""
    seeds_a, seeds_b = sorted(s for s, _ in a), sorted(s for s, _ in b)
    if seeds_a == seeds_b and len(set(seeds_a)) == len(seeds_a) > 1:
        by_seed = dict(b)
        return estimate([v - by_seed[s] for s, v in sorted(a)]), "paired"
    xa, xb = [v for _, v in a], [v for _, v in b]
    diff = statistics.fmean(xa) - statistics.fmean(xb)
    if len(xa) < 2 or len(xb) < 2:
        return Estimate(diff, None, min(len(xa), len(xb))), "-"
    va, vb = statistics.variance(xa) / len(xa), statistics.variance(xb) / len(xb)
    if va + vb == 0:
        return Estimate(diff, 0.0, min(len(xa), len(xb))), "Welch"
    df = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
    return Estimate(diff, t_quantile(df) * math.sqrt(va + vb), min(len(xa), len(xb))), "Welch"


@dataclass
class Variant:
    name: str
    runs: list[tuple[int, RunSummary]]  # (seed, run); a seed run twice counts twice

    def values(self, metric: str) -> list[tuple[int, float]]:
        read = read_metric(metric)
        return [(seed, v) for seed, r in self.runs if (v := read(r)) is not None]


def variants(runs: Sequence[RunSummary]) -> list[Variant]:
    """Runs grouped by every setting that differs between them except ``seed``; a variant's name is its
    experiment and those settings. Runs without a config are left out (their seed is unknown)."""
    configured = [r for r in runs if r.config]
    differ = differing_keys(configured, ignore=("seed",))
    groups: dict[str, Variant] = {}
    for r in configured:
        settings = " ".join(setting(r, k) for k in differ)
        name = f"{r.config.get('name', r.path.name)} {settings}".strip()
        groups.setdefault(name, Variant(name, [])).runs.append((int(r.config.get("seed", 0)), r))
    return sorted(groups.values(), key=lambda v: -(_mean(v, "best val PSNR") or -math.inf))


def _mean(variant: Variant, metric: str) -> float | None:
    values = [v for _, v in variant.values(metric)]
    return statistics.fmean(values) if values else None


def table(group: Sequence[Variant], metrics: Sequence[str] | None = None) -> str:
    """Markdown: one row per variant, mean ± 95% half-width per metric (default: :func:`metrics_for` the
    variants' runs), and the seeds behind it."""
    metrics = metrics_for([r for v in group for _, r in v.runs]) if metrics is None else metrics
    rows = [[v.name, len(v.runs), *(_cell(v, m) for m in metrics)] for v in group]
    return markdown_table(["variant", "seeds", *metrics], rows) + "\n"


def _cell(variant: Variant, metric: str) -> str:
    """Mean ± half-width; "(n=K)" where fewer of the variant's runs than all report the metric."""
    values = [x for _, x in variant.values(metric)]
    if not values:
        return "-"
    text = estimate(values).format(DIGITS.get(metric, 2))
    return text if len(values) == len(variant.runs) else f"{text} (n={len(values)})"


def pairwise(group: Sequence[Variant], metric: str) -> str:
    """Markdown: every pair of variants, A minus B on ``metric`` with its 95% interval."""
    rows = []
    for i, a in enumerate(group):
        for b in group[i + 1 :]:
            va, vb = a.values(metric), b.values(metric)
            if not va or not vb:
                continue
            est, kind = difference(va, vb)
            low_high = (
                "-" if est.half_width is None
                else f"[{est.mean - est.half_width:+.2f}, {est.mean + est.half_width:+.2f}]"
            )  # fmt: skip
            rows.append([a.name, b.name, f"{est.mean:+.2f}", low_high, kind])
    return markdown_table(["A", "B", f"A - B, {metric}", "95% interval", "interval"], rows) + "\n"


LEVELS = (28.0, 30.0, 32.0)  # val PSNR levels (dB) whose time to reach a study reports, unless told others


def minutes_to(run: RunSummary, level: float) -> float | None:
    """Minutes from the run's first logged event to its first val evaluation at or above ``level`` dB
    (wall-clock: evaluation and compilation in, start-up before the first event out); None if it never
    got there."""
    return next((seconds / 60 for _, seconds, psnr in run.curve if psnr >= level), None)


def time_to_psnr(group: Sequence[Variant], levels: Sequence[float] = LEVELS) -> str:
    """Markdown: per variant, the minutes to reach each val PSNR level, mean ± 95% half-width over the
    seeds that reached it, and "(k of n)" where not all did (their mean is then of the faster seeds)."""
    rows = []
    for v in group:
        cells = []
        for level in levels:
            reached = [m for _, r in v.runs if (m := minutes_to(r, level)) is not None]
            if not reached:
                cells.append(f"not reached (0 of {len(v.runs)})")
                continue
            text = estimate(reached).format(1)
            cells.append(text if len(reached) == len(v.runs) else f"{text} ({len(reached)} of {len(v.runs)})")
        rows.append([v.name, len(v.runs), *cells])
    head = ["variant", "seeds", *(f"minutes to {level:g} dB" for level in levels)]
    return markdown_table(head, rows) + "\n"


def to_csv(group: Sequence[Variant], path: Path) -> None:
    metrics = metrics_for([r for v in group for _, r in v.runs])
    rows = ["variant,seeds," + ",".join(f"{m} mean,{m} ci95" for m in metrics)]
    for v in group:
        cells = []
        for m in metrics:
            vals = [x for _, x in v.values(m)]
            est = estimate(vals) if vals else None
            cells += ["" if est is None else f"{est.mean:.4f}",
                      "" if est is None or est.half_width is None else f"{est.half_width:.4f}"]  # fmt: skip
        rows.append(f'"{v.name}",{len(v.runs)},' + ",".join(cells))
    path.write_text("\n".join(rows) + "\n")


def plot_bands(group: Sequence[Variant], path: Path, x: str = "step") -> None:
    """Val PSNR against steps (or wall-clock seconds): the mean over seeds per variant, with its 95%
    band where every seed was evaluated at that step."""
    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for v in group:
        curves = [r.curve for _, r in v.runs if r.curve]
        if not curves:
            continue
        steps = sorted(set.intersection(*({p[0] for p in c} for c in curves)))
        at = [{p[0]: p for p in c} for c in curves]
        xs = [statistics.fmean(c[s][0 if x == "step" else 1] for c in at) for s in steps]
        estimates = [estimate([c[s][2] for c in at]) for s in steps]
        means = [e.mean for e in estimates]
        (line,) = ax.plot(xs, means, marker=".", label=f"{v.name} ({len(curves)} seeds)")
        if len(curves) > 1:
            half = [e.half_width for e in estimates]
            ax.fill_between(xs, [m - h for m, h in zip(means, half, strict=True)],
                            [m + h for m, h in zip(means, half, strict=True)], color=line.get_color(), alpha=0.2)  # fmt: skip
    ax.set_xlabel("step" if x == "step" else "wall-clock time (s), mean over seeds")
    ax.set_ylabel(
        f"{val_metric([r for v in group for _, r in v.runs])} (dB), mean and 95% interval over seeds"
    )
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def _panels(runs: Sequence[RunSummary]) -> list[tuple[str, str, Callable[[RunSummary], float | None] | None]]:
    """(title, the model's metric, how to read the best classical upscaler's PSNR on the same images):
    1x, then every test scale the runs scored."""

    def best_upscaler(scale: str) -> Callable[[RunSummary], float | None]:
        return lambda r: (
            None
            if scale not in r.test_at or scale not in r.margin_at
            else r.test_at[scale] - r.margin_at[scale]
        )

    title = lambda scale: f"test {scale[1:]}x" if scale.startswith("x") else f"test {scale}"
    return [
        ("test 1x", "test PSNR", None),
        *((title(s), f"test {s}", best_upscaler(s)) for s in scales(runs)),
    ]


def plot_means(group: Sequence[Variant], path: Path) -> None:
    """Test PSNR per variant at 1x and every test scale: the mean over seeds with its 95% interval, and
    beside each scale the best classical upscaler of the same inputs (dashed)."""
    panels = _panels([r for v in group for _, r in v.runs])
    fig = Figure(figsize=(3.7 * len(panels), 0.5 * len(group) + 2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    names = [v.name for v in group]
    for ax, (title, metric, baseline) in zip(axes, panels, strict=True):
        for y, v in enumerate(group):
            values = [x for _, x in v.values(metric)]
            if not values:
                continue
            est = estimate(values)
            ax.errorbar(est.mean, y, xerr=est.half_width or 0.0, fmt="o", capsize=3, color="C0")
            ax.annotate(f"n={est.n}", (est.mean, y), textcoords="offset points", xytext=(0, 6), fontsize=7,
                        ha="center")  # fmt: skip
        best = [b for v in group for _, r in v.runs if baseline and (b := baseline(r)) is not None]
        if best:
            ax.axvline(statistics.fmean(best), color="gray", linestyle="--", label="best classical upscaler")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.supxlabel("PSNR (dB): mean and 95% interval over seeds", fontsize=10)
    axes[0].set_yticks(range(len(names)), names, fontsize=8)
    axes[0].invert_yaxis()
    fig.savefig(path, dpi=120, bbox_inches="tight")
