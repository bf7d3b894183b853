#!/usr/bin/env bash
# Reproduces the README's results table: trains each script at its defaults and at the tuned
# recipes tried, then scores every checkpoint with evaluate.py and prints the markdown table.
#   bash bench/results.sh OUT_DIR [CONV_EPOCHS]     # from the repository root, with the venv active
# gan.py always runs its 30 epochs. dcgan.py and wgan.py run CONV_EPOCHS (default 30: use a GPU;
# the README's CPU table used 3 for dcgan.py and 1 for wgan.py, see there).
set -euo pipefail
out=${1:?usage: bash bench/results.sh OUT_DIR [CONV_EPOCHS]}; conv=${2:-30}
repo=$(pwd); mkdir -p "$out"; cd "$out"
[ -e data ] || ln -s "$repo/data" data
train() { name=$1; shift; [ -f "$name.pt" ] || python "$repo/$1" --ckpt "$name.pt" --logdir runs "${@:2}" > "$name.log"; }
train gan gan.py
train gan_ls gan.py --label-smoothing 0.1
train gan_h512_ls gan.py --hidden-dim 512 --label-smoothing 0.1
train gan_lr1e-4_ls gan.py --lr 1e-4 --label-smoothing 0.1
train gan_h1024_ls gan.py --hidden-dim 1024 --label-smoothing 0.1
train dcgan dcgan.py --epochs "$conv"
train dcgan_ls dcgan.py --epochs "$conv" --label-smoothing 0.1
train wgan_gp wgan.py --gp 10 --epochs "$conv"
train wgan wgan.py --epochs "$conv"
for f in *.log; do echo "$f: $(grep -E '^Epoch [0-9]+ \| [0-9.]+ s' "$f" | awk '{s+=$4; n++} END {printf "%.1f s/epoch over %d epochs", s/n, n}')"; done
python "$repo/evaluate.py" gan.pt gan_ls.pt gan_h512_ls.pt gan_lr1e-4_ls.pt gan_h1024_ls.pt dcgan.pt dcgan_ls.pt wgan_gp.pt wgan.pt --json scores.json
