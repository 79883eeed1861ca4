"""The package as a user installs it: a wheel (not the checkout) in a fresh virtual environment, whose
console script trains a step with the configs shipped inside the wheel."""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        pixels = (torch.rand(32, 32, 3) * 255).byte().numpy()
        Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_trains_a_step(tmp_path):
    wheels, venv, data = tmp_path / "wheels", tmp_path / "venv", tmp_path / "data"
    run = lambda *cmd, **kw: subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, check=True, **kw
    )
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ there
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "outputs", "*.egg-info", "__pycache__")
    )
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, source)
    (wheel,) = wheels.glob("ginr-*.whl")
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    # torch & co. from this environment, after the venv's own packages; its .pth files (the editable
    # checkout) are not processed, so only the wheel provides ginr
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel)
    _images(data / "train", 8)
    _images(data / "val", 2)
    _images(data / "test", 2)
    where = run(python, "-c", "import ginr.config as c; print(c.CONFIG_DIR)", cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(site) and (Path(where) / "train.yaml").is_file()
    launcher = "from hydra_plugins.ginr_launcher.gpus import GPULauncher; import inspect; print(inspect.getfile(GPULauncher))"
    assert Path(run(python, "-c", launcher, cwd=tmp_path).stdout.strip()).is_relative_to(
        site
    )  # the sweep launcher too
    proc = subprocess.run(
        [venv / "bin" / "ginr-train", "debug=smoke", "data=image_folder", f"data.dataset.root={data}",
         "data.eval_resolutions=[]", "data.num_workers=0", "trainer.max_steps=1", "trainer.eval_every=1",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
