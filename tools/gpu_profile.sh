#!/usr/bin/env bash
# Where the compiled default training step spends its GPU time, for one H100:
#   [VARIANT=scent_ff] tools/gpu_profile.sh OUT_DIR [--set KEY=VALUE...]
# OUT_DIR/profile/*.txt: the kernel table of 3 steps (torch.profiler, by total GPU time);
# OUT_DIR/inductor.tgz: the Triton code Inductor generated, to read a fused kernel's name back to its ops.
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 OUT_DIR [--set KEY=VALUE...]" >&2
  exit 2
fi
mkdir -p "$1"
out="$(cd "$1" && pwd)"
shift
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$(mktemp -d)}"
timeout 300 "${PYTHON:-python}" -m ginr.tools.bench --preset reference --compile --profile --out "$out" \
  --only "compile/${VARIANT:-scent_ff}/bf16" "$@" 2>&1 | tee "$out/profile.log"
(cd "$TORCHINDUCTOR_CACHE_DIR" && find . -name '*.py' -size +1k -print0 | tar czf "$out/inductor.tgz" --null -T -)
