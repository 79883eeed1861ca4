#!/usr/bin/env bash
# Real photos to render at any size (ginr.tools.evaluate RUN --inputs DIR --sizes 1024 2048), taken from
# scikit-image's bundled data on PyPI: astronaut (NASA, public domain), rocket (SpaceX, public domain),
# coffee and chelsea (CC0 by their photographers). A GPU machine without a registry gets DIR carried.
#   bash tools/photos.sh [DIR]        (default .photos/, which git ignores)
set -euo pipefail
dir=${1:-.photos}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: scikit-image -d "$tmp"
python3 - "$tmp" "$dir" <<'PY'
import pathlib, sys, zipfile

wheel = next(pathlib.Path(sys.argv[1]).glob("scikit_image-*.whl"))
out = pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in ("astronaut.png", "rocket.jpg", "coffee.png", "chelsea.png"):
        (out / name).write_bytes(z.read(f"skimage/data/{name}"))
        print(out / name)
PY
