#!/usr/bin/env bash
# The smoke sweep (benchmarks/smoke.toml, 10 cells) through each executor, one after another, two cells at a time
# on this machine: local (--jobs 2), slurm (the one-node cluster of .ci/slurm-up, 1 CPU per cell) and ray (a local
# instance of 2 CPUs, 1 per cell). Prints each sweep's wall time beside local's. Needs the cluster up
# (.ci/slurm-up; SLURM_CONF as it prints). Usage: benchmarks/sweep_executors.sh [VENV] [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.ci-venv}"
out="${2:-${TMPDIR:-/tmp}/wmbench-sweep-executors}"
rm -rf "$out"
export OMP_NUM_THREADS=1 SLURM_CONF="${SLURM_CONF:-/tmp/wmbench-slurm/slurm.conf}"
lscpu | grep 'Model name'
declare -A took
for executor in local slurm ray; do
    case "$executor" in
        local) options=(--jobs 2) ;;
        slurm) options=(--executor slurm -E cpus_per_cell=1) ;;
        ray) options=(--executor ray -E local_cpus=2 -E cpus_per_cell=1) ;;
    esac
    start=$(date +%s.%N)
    "$venv/bin/wmbench" sweep benchmarks/smoke.toml --out "$out/$executor" "${options[@]}" > "$out-$executor.log" 2>&1
    took[$executor]=$(echo "$(date +%s.%N) - $start" | bc)
    tail -1 "$out-$executor.log"
done
for executor in local slurm ray; do
    printf '%-6s %6.0fs  %.2fx local\n' "$executor" "${took[$executor]}" "$(echo "${took[$executor]} / ${took[local]}" | bc -l)"
done
