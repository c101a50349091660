#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh installs offline on a GPU machine whose image lacks them (Python 3.12, manylinux
# x86_64; torch, transformers, peft, timm, pluggy, click, rich, numpy... are there already): the Atari envs
# (gymnasium, ale-py with its ROMs), gguf, open_clip_torch, the dependencies of these that such an image lacks, and
# setuptools for building wmbench's editable install. Run it here, with network access to a package index:
#
#   bash benchmarks/gpu_wheels.sh [FOLDER]      # default .whl (git-ignored)
#
# It downloads without dependencies (each one needed is named below), keeps one version of each, and fails if the
# folder comes to 32 MiB or more (a GPU machine takes 64 MiB of working tree in all).
set -euo pipefail

folder="${1:-.whl}"
python="${PYTHON:-python3}"
wheels=(
  gymnasium==1.4.0 farama-notifications==0.0.6 ale-py==0.12.1  # the Atari 100k games (ALE's ROMs are in ale-py)
  gguf==0.19.0                                                  # GGUF files (wmbench models fetch)
  open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.5             # the clip backbone and tokenizer
  setuptools==84.2.1                                            # builds `pip install -e .` offline
)
mkdir -p "$folder"
"$python" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
  -d "$folder" "${wheels[@]}"
total=$(du -sk "$folder" | cut -f1)
ls -l "$folder"
echo "$folder: ${total} KiB in $(ls "$folder"/*.whl | wc -l) wheels"
if (( total >= 32 * 1024 )); then
  echo "$folder holds ${total} KiB: too much to travel with the working tree (keep it well under 64 MiB)" >&2
  exit 1
fi
