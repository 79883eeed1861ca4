"""The benchmark end to end on a tiny CPU configuration (no timing assertions), and its report on
GPU-like results."""

import json

import pytest

from ginr.config import compose
from ginr.tools.bench.__main__ import main
from ginr.tools.bench.cases import PRESETS, build_cases, case_config, case_overrides, selected
from ginr.tools.bench.report import markdown, plot_memory_vs_queries, plot_ms_per_step, query_ratios
from ginr.tools.bench.runners import peak_rate
from ginr.tools.variants import default_variant, encoders, input_sizes, variants
from tests.conftest import DEFAULT_EXPERIMENT, EXPERIMENTS, MIXING, NOT_MIXING

PNG = b"\x89PNG"
DEFAULT = DEFAULT_EXPERIMENT  # a variant that decodes queries independently (test_config checks it)


def test_the_variants_are_the_experiments_and_naive_attention_where_queries_mix():
    assert default_variant() == DEFAULT
    assert list(variants()) == [*EXPERIMENTS, *(f"{e}_naive" for e in MIXING)]
    for e in MIXING:
        assert variants()[f"{e}_naive"] == (f"experiment={e}", "decoder.attn_impl=naive")


@pytest.mark.slow
def test_cpu_preset_end_to_end(tmp_path, capsys):
    naive = [f"main/{e}_naive/fp32/ckpt-off" for e in MIXING[:1]]  # naive attention, where queries mix
    only = [f"main/{DEFAULT}/bf16", *naive, f"queries/{DEFAULT}/", "batch/", "encoder/", f"render/{DEFAULT}/"]
    assert main(["--preset", "cpu", "--out", str(tmp_path), "--only", *only]) == 0
    out = capsys.readouterr().out
    assert f"main/{DEFAULT}/bf16/ckpt-on:" in out and "## Training step by decoder variant" in out
    data = json.loads((tmp_path / "results.json").read_text())
    assert {"device", "torch", "command", "date"} <= data["meta"].keys()
    cases = {c["name"]: c for c in data["cases"]}
    assert len(cases) == 2 + len(naive) + 3 + 2 + 4 + 2 and set(naive) <= set(cases)
    on_kernels = [name for name in cases if name.startswith(("encoder/cuda/", "encoder/triton/"))]
    assert len(on_kernels) == 3 and all(cases[n]["status"].startswith("skipped") for n in on_kernels)
    ran = [c for c in cases.values() if c["name"] not in on_kernels]
    assert all(c["status"] == "ok" and c["ms"] > 0 for c in ran)
    assert cases[f"main/{DEFAULT}/bf16/ckpt-off"]["flops_counted"] > 0
    assert (
        cases[f"main/{DEFAULT}/bf16/ckpt-on"]["model_flops"]
        == cases[f"main/{DEFAULT}/bf16/ckpt-off"]["flops_counted"]
    )
    text = (tmp_path / "results.md").read_text()
    for heading in ("Query scaling", "Batch size", "Encoder alone", "Renders of one input from its latents"):
        assert heading in text
    assert f"| {DEFAULT} | 32 | 16 | 64 |" in text  # the render's input and render sides, its chunk
    for name in ("memory_vs_queries.png", "ms_per_step.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG)


def _case(name, group, variant, status="ok", **fields):
    base = {"name": name, "group": group, "variant": variant, "status": status, "precision": "bf16",
            "checkpoint": False, "compile": False, "batch": 4, "queries": 1024, "backend": None, "chunk": None,
            "render_size": 1024}  # fmt: skip
    return base | fields


def test_report_of_gpu_results(tmp_path):
    gb, V = 10**9, DEFAULT  # the report of any variant's results
    results = [
        _case(f"main/{V}/bf16/ckpt-off", "main", V, ms=50.0, images_per_s=1280.0, peak_bytes=28 * gb,
              activation_bytes=27 * gb, model_flops=2 * 10**13, mfu=0.4, peak_flops_note="989.4 TFLOP/s"),
        _case(f"main/{V}/bf16/ckpt-on", "main", V, checkpoint=True, ms=70.0, peak_bytes=6 * gb, activation_bytes=5 * gb),
        _case(f"queries/{V}/1024", "queries", V, ms=5.0, peak_bytes=2 * gb, activation_bytes=1 * gb),
        _case(f"queries/{V}/16384", "queries", V, queries=16384, ms=60.0, peak_bytes=17 * gb, activation_bytes=16 * gb),
        _case(f"queries/{V}/65536", "queries", V, "OOM", queries=65536),
        _case("encoder/cuda/joint", "encoder", "encoder", backend="cuda", ms=10.0, peak_bytes=gb, activation_bytes=gb),
        _case("encoder/cuda/separate", "encoder", "encoder", backend="cuda", ms=15.0, peak_bytes=gb, activation_bytes=gb),
        _case("encoder/torch/joint", "encoder", "encoder", backend="torch", ms=40.0, peak_bytes=9 * gb, activation_bytes=8 * gb),
        _case(f"render/{V}/chunk65536", "render", V, chunk=65536, resolution=32, ms=300.0, peak_bytes=3 * gb, activation_bytes=2 * gb),
        _case(f"compile/{V}/bf16", "compile", V, compile=True, ms=40.0, peak_bytes=20 * gb),
    ]  # fmt: skip
    assert query_ratios(results) == {V: (1024, 16384, 16.0)}
    meta = {"device": "NVIDIA H100 80GB HBM3", "torch": "2.x", "cuda": "12", "scan_kernels": "ok", "date": "today",
            "command": "python -m ginr.tools.bench", "preset": "reference", "timing": {"warmup": 3, "repeats": 8}}  # fmt: skip
    text = markdown(meta, results, PRESETS["reference"])
    assert f"| {V} | 32 | 1024 | 65536 | 300.0 | 3.00 | 2.00 |" in text
    assert f"| {V} | 65536 | OOM |" in text and f"| {V} | 16384 | 60.0 | 17.00 | 16.00 | 16.0x |" in text
    assert "activations at 16384 vs 1024 queries (16x): 16.0x" in text
    assert "speed-up of the cuda backend over torch (joint): 4.00x" in text
    assert "speed-up of joint over separate direction scans (cuda): 1.50x" in text
    assert "the same, compiled: –" in text
    assert f"| {V} | 50.0 | 40.0 | 1.25x | 100 | 20.00 |" in text
    assert f"| {V} | bf16 | off | 50.0 | 1280 | 28.00 | 27.00 | 20000 | 40.0% |" in text
    plot_memory_vs_queries(results, tmp_path / "m.png")
    plot_ms_per_step(results, tmp_path / "s.png")
    assert (tmp_path / "m.png").read_bytes().startswith(PNG) and (tmp_path / "s.png").read_bytes().startswith(
        PNG
    )


def test_presets_and_selection():
    every = [*EXPERIMENTS, *(f"{e}_naive" for e in MIXING)]  # naive attention only where queries mix
    reference = build_cases(PRESETS["reference"], compile=False)
    groups = [c.group for c in reference]
    assert groups.count("main") == len(every) * 2 * 2 and groups.count("queries") == len(EXPERIMENTS) * 4
    for e in EXPERIMENTS:
        assert [c.queries for c in reference if c.name.startswith(f"queries/{e}/")] == [
            1024,
            4096,
            16384,
            65536,
        ]
    quick = build_cases(PRESETS["quick"], compile=False)
    assert {c.group for c in quick} == {"main", "queries"} and all(c.precision == "bf16" for c in quick)
    assert max(c.queries for c in quick if c.queries is not None) == 16384  # main cases: the config's queries
    compiled = [c for c in build_cases(PRESETS["reference"], compile=True) if c.compile]
    sizes = PRESETS["reference"].sizes  # run_case puts the preset's overrides first
    # the training default on a GPU: every variant, and the memory-lean mode, compiled; the rest eager
    assert [c.name for c in compiled] == [
        "encoder/cuda/joint/compiled", "encoder/cuda/separate/compiled", "encoder/triton/joint/compiled",
        *(f"compile/{v}/bf16" for v in every),
        f"compile/{DEFAULT}/bf16/cudagraphs",
        f"compile/lean/{DEFAULT}/chunk64", f"compile/lean/{DEFAULT}/chunk256", f"compile/lean/{DEFAULT}/chunk512",
        f"compile/lean/{DEFAULT}/memory-lean",
    ]  # fmt: skip
    for name in (f"compile/{DEFAULT}/bf16/cudagraphs", f"compile/lean/{DEFAULT}/memory-lean"):
        cfg = case_config((*sizes, *next(c for c in compiled if c.name == name).overrides))
        assert cfg.trainer.compile_mode == "reduce-overhead"  # CUDA graphs, not only named so
    lean = case_config((*sizes, *compiled[-1].overrides))
    assert lean.trainer.checkpoint_queries == 384 and lean.encoder.checkpoint  # configs/memory/lean.yaml
    assert all(
        case_config((*sizes, *c.overrides)).trainer.compile for c in compiled
    )  # compiled, not only named so
    assert not any(
        case_config((*sizes, *c.overrides)).trainer.compile for c in reference if c.group == "main"
    )
    lean = [c.name for c in reference if c.group == "lean"]
    assert lean == [f"lean/{v}/chunk{c}" for v in NOT_MIXING for c in (64, 256, 512)]
    assert selected(f"main/{DEFAULT}/bf16/ckpt-on", [f"{DEFAULT}/bf16"]) and selected(
        f"queries/{DEFAULT}/4096", ["queries/*/4096"]
    )
    assert not selected(f"main/{DEFAULT}/bf16/ckpt-on", ["queries/"])


def test_the_inputs_preset_times_the_trainers_own_inputs_at_every_input_size():
    preset = PRESETS["inputs"]
    sizes = input_sizes()
    assert {"emoji3d178", "emoji3d256", "emoji3d256_p2"} <= set(sizes)  # found from configs/data
    cases = build_cases(preset, compile=True)
    per_size = ("inputs/{}/eager", "inputs/{}/compiled", "render/{}/4x", "render/{}/8x")
    assert [c.name for c in cases] == [name.format(d) for d in sizes for name in per_size]
    for case in cases:
        if case.group == "render":  # one input of the data option's size, rendered 4x and 8x its side
            cfg = case_config(case_overrides(case, preset))
            factor = int(case.name.rsplit("/", 1)[-1].removesuffix("x"))
            assert case.render_size == factor * cfg.data.resolution and case.chunk is None
            continue
        cfg = case_config(case_overrides(case, preset), case.queries)
        data = compose([f"data={case.name.split('/')[1]}"])
        assert case.variant == DEFAULT and cfg.name == DEFAULT
        # the data option's own size, batch and pixels per image: what its training run decodes
        assert (cfg.data.resolution, cfg.data.batch_size) == (data.data.resolution, data.data.batch_size)
        assert cfg.trainer.queries_per_image == data.trainer.queries_per_image
        assert cfg.encoder.patch_size == data.encoder.patch_size and cfg.trainer.compile == case.compile


@pytest.mark.slow
def test_the_inputs_preset_runs_and_reports_on_cpu(tmp_path):
    shrink = ["debug=smoke", "encoder.patch_size=9", "data.batch_size=2", "trainer.queries_per_image=64"]
    args = [
        "--preset",
        "inputs",
        "--out",
        str(tmp_path),
        "--only",
        "inputs/emoji3d178/eager",
        "--set",
        *shrink,
    ]
    assert main(args) == 0
    (case,) = json.loads((tmp_path / "results.json").read_text())["cases"]
    assert case["status"] == "ok" and case["ms"] > 0 and (case["resolution"], case["queries"]) == (178, 64)
    assert case["flops_counted"] > 0
    assert "| emoji3d178 | eager | 178 | 400 + 16 | 2 | 64 |" in (tmp_path / "results.md").read_text()


def test_peak_rate():
    import torch

    assert peak_rate("bf16", torch.device("cpu"), None)[0] is None
    assert peak_rate("fp32", torch.device("cpu"), 100.0)[0] == 100e12


ENCODER_CLASSES = {
    "bimamba": "BiMambaEncoder",
    "mamba2": "Mamba2Encoder",
    "transformer": "TransformerEncoder",
}


def test_the_encoders_preset_times_every_encoder_from_512_to_16k_tokens():
    cases = [c for c in build_cases(PRESETS["encoders"], compile=True) if c.group == "lengths"]
    found = encoders()
    assert {"bimamba", "mamba2", "transformer"} <= set(found)
    lengths = (512, 1280, 4352, 16640)  # 256 px at patch 16, 8, 4, 2, + 256 latents
    assert [c.name for c in cases] == [
        f"lengths/{e}/{n}/{s}" for e in found for n in lengths for s in ("eager", "compiled")
    ]
    for case in cases:
        cfg = case_config(case_overrides(case, PRESETS["encoders"]), case.queries)
        tokens = (cfg.data.resolution // cfg.encoder.patch_size) ** 2 + cfg.encoder.num_latents
        assert tokens == int(case.name.split("/")[2])
        assert cfg.encoder._target_.endswith(ENCODER_CLASSES[case.variant])
        assert abs(cfg.data.batch_size * tokens - 32768) <= tokens / 2  # about 32k tokens a batch
        assert cfg.trainer.compile == case.compile


def test_the_encoders_preset_times_the_training_step_with_each_encoder_at_32_and_178_px():
    cases = [c for c in build_cases(PRESETS["encoders"], compile=True) if c.group == "steps"]
    assert [c.name for c in cases] == [
        f"steps/{e}/{d}/{s}"
        for e in encoders()
        for d in ("emoji3d", "emoji3d178")
        for s in ("eager", "compiled")
    ]
    default = case_config(variants()[DEFAULT])
    for case in cases:
        cfg = case_config(case_overrides(case, PRESETS["encoders"]), case.queries)
        assert cfg.encoder._target_.endswith(ENCODER_CLASSES[case.variant])
        assert cfg.data.resolution == (178 if "emoji3d178" in case.name else 32)
        assert cfg.data.batch_size == (16 if "emoji3d178" in case.name else default.data.batch_size)
        assert cfg.decoder.block == default.decoder.block and cfg.trainer.compile == case.compile


def test_the_length_and_input_tables_report_a_case_the_budget_skipped():
    ran = _case("lengths/bimamba/512/compiled", "lengths", "bimamba", batch=64, tokens=512, ms=32.768,
                tokens_per_s=10**6, peak_bytes=4 * 10**9)  # fmt: skip
    skipped = {"name": "lengths/bimamba/16640/compiled", "group": "lengths", "variant": "bimamba",
               "status": "skipped: time budget spent", "batch": None}  # fmt: skip
    meta = {"device": "cpu", "torch": "2.x", "cuda": None, "scan_kernels": "none", "date": "today", "command": "bench",
            "preset": "encoders", "timing": {"warmup": 2, "repeats": 5}}  # fmt: skip
    unrun = {"name": "inputs/emoji3d128_p2/compiled", "group": "inputs", "variant": DEFAULT,
             "status": "skipped: time budget spent", "batch": None, "queries": None}  # fmt: skip
    step = _case("steps/mamba2/emoji3d178/compiled", "steps", "mamba2", compile=True, batch=16, queries=3168,
                 resolution=178, tokens=656, config={"encoder": {"num_latents": 256}}, ms=41.25, images_per_s=387.9,
                 peak_bytes=9 * 10**9)  # fmt: skip
    text = markdown(meta, [ran, skipped, unrun, step], PRESETS["encoders"])
    assert "| mamba2 | emoji3d178 | compiled | 178 | 400 + 256 | 16 | 3168 | 41.2 | 388 | 9.00 |" in text
    assert "| bimamba | compiled | 512 | 64 | 32.8 | 1.00 |" in text
    assert "| bimamba | compiled | 16,640 | – | skipped: time budget spent |" in text
    assert "| emoji3d128_p2 | compiled | – | – | – | – | skipped: time budget spent |" in text


@pytest.mark.slow
def test_the_encoders_preset_runs_and_reports_on_cpu(tmp_path):
    small = [
        "encoder.dim=32",
        "encoder.depth=1",
        "encoder.mlp_dim=64",
        "encoder.heads=2",
        "encoder.dim_head=8",
    ]
    args = [
        "--preset",
        "encoders",
        "--out",
        str(tmp_path),
        "--only",
        "lengths/transformer/512/eager",
        "--profile",
        "--set",
    ]
    assert main([*args, *small, "data.batch_size=2"]) == 0
    (case,) = json.loads((tmp_path / "results.json").read_text())["cases"]
    assert case["status"] == "ok" and case["flops_counted"] > 0 and case["tokens"] == 512
    assert case["tokens_per_s"] == pytest.approx(2 * 512 / (case["ms"] / 1000))
    assert "| transformer | eager | 512 | 2 |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "encoder_lengths.png").read_bytes().startswith(PNG)
    profile = (tmp_path / "profile" / "lengths_transformer_512_eager.txt").read_text()
    assert profile.startswith("3 steps") and "aten::" in profile  # the encoder's own kernel table
