#!/usr/bin/env bash
# A change's speed, read in one GPU call (timings drift about 5% between calls): times the tree as it is
# (after), the tree with PATCH undone (before), then after again, with the same ginr.tools.bench arguments.
# Make PATCH on a machine with the history, e.g. `git diff 42cbd42 HEAD -- ginr > change.patch`. Usage:
#   bash tools/bench_ab.sh OUT_DIR PATCH [ginr.tools.bench arguments...]
set -euo pipefail
out=$1
patch_file=$(realpath "$2")
shift 2
mkdir -p "$out"
out=$(realpath "$out")
before=$(mktemp -d)
tar --exclude=.git --exclude=.data --exclude=.whl -cf - . | tar -xf - -C "$before"
(cd "$before" && patch -s -R -p1 <"$patch_file")
for run in after before after2; do
  tree=$PWD
  [ "$run" = before ] && tree=$before
  echo "== $run"
  (cd "$tree" && python3 -m ginr.tools.bench "$@" --out "$out/$run") | grep "^\["  # the working directory comes first on the path
done
rm -rf "$before"
