#!/usr/bin/env bash
# The GPU run of benchmarks/gpu.py in one command (see that script's docstring for what it measures):
#
#   benchmarks/run_gpu.sh OUTDIR [more options of benchmarks/gpu.py, e.g. --budget-s 400]
#
# writes OUTDIR/gpu.json (the figures, rewritten after every section) and OUTDIR/gpu.log (the output),
# and stops by itself within the budget (default 450 s, plus start-up). It runs this checkout's rs2sam2
# (the folder above this script goes first on PYTHONPATH) with $PYTHON (default python3).
#
# A machine whose Python has torch but not this project's pure-Python dependencies (sam2, hydra-core,
# omegaconf, antlr4-python3-runtime, iopath; so the project's device machine), and cannot download them:
# on a machine that has them, first run
#
#   benchmarks/run_gpu.sh --prepare        # copies them into .gpu_site/ (git-ignored; $GPU_SITE elsewhere)
#
# and take .gpu_site/ along (the device tool: carry [".gpu_site"]); the run puts it on PYTHONPATH (after
# this checkout). The device tool's command is then
#
#   benchmarks/run_gpu.sh "$OUT"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
site="${GPU_SITE:-$root/.gpu_site}"
python="${PYTHON:-python3}"

if [[ "${1:-}" == "--prepare" ]]; then
  "$python" - "$site" <<'EOF'
import importlib.util, shutil, sys
from pathlib import Path

site = Path(sys.argv[1])
site.mkdir(parents=True, exist_ok=True)
for name in ("sam2", "hydra", "omegaconf", "antlr4", "iopath"):
    folder = Path(importlib.util.find_spec(name).submodule_search_locations[0])
    shutil.rmtree(site / name, ignore_errors=True)
    shutil.copytree(folder, site / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    print(f"{name}: {folder} -> {site / name}")
EOF
  exit 0
fi

out="${1:?usage: benchmarks/run_gpu.sh OUTDIR [options of benchmarks/gpu.py] | --prepare}"
shift
mkdir -p "$out"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
if [[ -d "$site" ]]; then
  export PYTHONPATH="$PYTHONPATH:$site"
fi
export PYTHONUNBUFFERED=1
"$python" "$root/benchmarks/gpu.py" "$out" --device cuda "$@" 2>&1 | tee "$out/gpu.log"
