"""The helpers that exist once and are used everywhere: atomic writes, markdown tables, scores and the
margin over the best upscaler, and the variants the benchmark and the memory check share."""

import sys
from pathlib import Path

import pytest
import torch

from ginr.engine.metrics import UPSCALERS, margin, score
from ginr.files import write_atomic
from ginr.tools.tables import markdown_table


def test_write_atomic_writes_bytes_text_and_through_a_callable(tmp_path: Path) -> None:
    assert write_atomic(tmp_path / "new" / "a.bin", b"\x00\x01") == tmp_path / "new" / "a.bin"
    write_atomic(tmp_path / "t.json", '{"é": 1}')
    write_atomic(tmp_path / "w.pt", lambda f: torch.save({"w": torch.ones(2)}, f))
    assert (tmp_path / "new" / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "t.json").read_text(encoding="utf-8") == '{"é": 1}'
    assert torch.equal(torch.load(tmp_path / "w.pt")["w"], torch.ones(2))
    write_atomic(tmp_path / "t.json", "replaced")
    assert (tmp_path / "t.json").read_text() == "replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "t.json", "w.pt"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_write_atomic_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path, error) -> None:
    path = tmp_path / "last.ckpt"
    write_atomic(path, b"old")

    def half_then_fail(f) -> None:
        f.write(b"partial")
        raise error

    with pytest.raises(type(error)):
        write_atomic(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_markdown_table_plain_aligned_and_escaped() -> None:
    assert (
        markdown_table(["a", "b"], [["x", 1], ["y|z", ""]]) == "| a | b |\n|---|---|\n| x | 1 |\n| y\\|z |  |"
    )
    assert markdown_table(["run", "n"], [["long name", "1.5"], ["b", "10.25"]], align="lr") == (
        "| run       |     n |\n| --------- | ----: |\n| long name |   1.5 |\n| b         | 10.25 |"
    )
    assert markdown_table(["a"], [], align="r") == "|   a |\n| --: |"
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a", "b"], [], align="l")


def test_scores_and_the_margin_over_the_best_upscaler() -> None:
    torch.manual_seed(0)
    small, truth = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    alone, beside = score(truth + 0.01, truth), score(truth + 0.01, truth, small)
    assert list(alone) == ["psnr", "psnr_clamped", "ssim"] and list(beside) == [*alone, *UPSCALERS]
    assert all(v.shape == (2,) for v in beside.values())
    assert torch.allclose(alone["psnr"], torch.full((2,), 40.0))
    assert margin({"psnr": 25.0, "nearest": 20.0, "bicubic": 23.5, "lanczos": 23.0}) == 1.5
    assert (
        margin({"psnr_64": 20.0, "nearest_64": 21.0, "bicubic_64": 22.0, "lanczos_64": 20.0}, "_64") == -2.0
    )
    assert margin({"psnr": 25.0, "nearest": 20.0}) is None


def test_benchmark_and_memory_check_share_the_variants() -> None:
    from ginr.tools.bench import cases
    from ginr.tools.memory import check
    from ginr.tools.variants import default_variant, variants

    assert cases.variants is variants and cases.default_variant is default_variant
    points = check.points()
    for name, overrides in variants().items():
        assert points[name] == (*overrides, "trainer.precision=bf16")
    assert any(name.endswith("_naive") for name in variants())


def test_cpu_training_keeps_freed_memory_on_glibc() -> None:
    """On glibc the allocator takes every setting (mallopt returns 1 for each), once per process; elsewhere
    nothing is changed. (What it buys, in ms per step, is a measurement, not a test: see its docstring.)"""
    import platform

    from ginr.engine.build import keep_freed_cpu_memory

    on_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert keep_freed_cpu_memory() is on_glibc
    assert keep_freed_cpu_memory() is on_glibc  # cached: the second call changes nothing
