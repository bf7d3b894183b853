#!/usr/bin/env bash
# One epoch of our script vs the handout's pipeline (DataLoader + ToTensor) for the same networks,
# interleaved REPS times so that machine noise hits both alike. Run from the repository root:
#   bash bench/epoch_speed.sh gan 3            # script, repetitions, then any extra flags of the script
set -euo pipefail
script=${1:-gan}; reps=${2:-3}; shift 2 || true
tmp=$(mktemp -d)
for r in $(seq "$reps"); do
  python bench/handout_pipeline.py "$script" | tail -1
  python "$script.py" --epochs 1 --ckpt "$tmp/b.pt" --overwrite --logdir "$tmp/runs" "$@" | grep -E '^Epoch 00 \| [0-9.]+ s'
done
rm -rf "$tmp"
