#!/usr/bin/env bash
# Build mamba-ssm and causal-conv1d wheels from their PyPI sdists, offline, for this machine's GPU only.
#
# Upstream setup.py files compile for a fixed list of ~9 GPU architectures and ignore
# TORCH_CUDA_ARCH_LIST; PyPI has no wheels for torch >= 2.11. This script keeps only the local GPU's
# architecture (or $ARCHS, e.g. ARCHS=80,90), which cuts the build to a few minutes.
#
#   where a registry is reachable:  pip download --no-deps --no-binary :all: -d sdists \
#                                       mamba-ssm==2.3.2.post1 causal-conv1d==1.7.0
#   on the GPU machine:             bash tools/build_kernels.sh sdists wheels
#                                   pip install --no-deps wheels/*.whl
# Needs nvcc, torch with CUDA, ninja. Logs go to OUT_DIR/*.log.
set -euo pipefail
SDISTS=$(cd "$1" && pwd)
OUT=$(mkdir -p "$2" && cd "$2" && pwd)
ARCHS=${ARCHS:-$(python3 -c 'import torch; a, b = torch.cuda.get_device_capability(); print(f"{a}{b}")')}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "building for sm_${ARCHS//,/, sm_} in $WORK"

# Keep only the '-gencode arch=...,code=sm_XX' pairs whose XX is in $ARCHS.
restrict_archs() {
  python3 - "$1" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
anchor = "    # HACK: The compiler flag -D_GLIBCXX_USE_CXX11_ABI"
if anchor not in text:
    sys.exit(f"{path}: cannot find where to restrict the architectures; upstream setup.py changed")
keep = '''    _archs = os.environ["ARCHS"].split(",")
    _pairs = [cc_flag[i:i + 2] for i in range(0, len(cc_flag) - 1) if cc_flag[i] == "-gencode"]
    _rest = [f for i, f in enumerate(cc_flag) if f != "-gencode" and (i == 0 or cc_flag[i - 1] != "-gencode")]
    cc_flag = [f for p in _pairs if p[1].rsplit("sm_", 1)[-1] in _archs for f in p] + _rest
    print("nvcc architecture flags:", cc_flag)
'''
open(path, "w").write(text.replace(anchor, keep + anchor, 1))
PY
}

export ARCHS MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE MAX_JOBS=${MAX_JOBS:-$(nproc)}
for sdist in "$SDISTS"/mamba_ssm-*.tar.gz "$SDISTS"/causal_conv1d-*.tar.gz; do
  tar xzf "$sdist" -C "$WORK"
done
pids=()
for src in "$WORK"/mamba_ssm-*/ "$WORK"/causal_conv1d-*/; do
  restrict_archs "$src/setup.py"
  name=$(basename "$src")
  (cd "$src" && python3 -m pip wheel --no-deps --no-build-isolation --no-index -w "$OUT" . >"$OUT/$name.log" 2>&1) &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ "$status" -eq 0 ] || { echo "a build failed: see $OUT/*.log"; exit 1; }
ls -la "$OUT"/*.whl
