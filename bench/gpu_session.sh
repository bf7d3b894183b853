#!/usr/bin/env bash
# The GPU checks in as few calls as a lent GPU allows (the checks need CUDA; see README, "Speed").
#
#   bash bench/gpu_session.sh prepare   # here: copies the official .gz files into gpu_data/ (ignored by git)
#   bash bench/gpu_session.sh check     # on the GPU, carrying gpu_data: GPU tests, bench/flops.py, bench/speed.py (~8 min)
#   bash bench/gpu_session.sh session   # on the GPU, one call of under 10 minutes for a 15-minute loan: speed.py alone,
#                                       # then the GPU tests and the cheapest results side by side, each stage with a
#                                       # deadline (BUDGET seconds in all, default 560) so that what finished comes back
#   bash bench/gpu_session.sh results [CONFIG ...]
#                                       # on the GPU: bench/results.py, 30 epochs x 3 seeds (every configuration, or
#                                       # the ones named); run it again after a time limit and it carries on
#                                       # (gpu_results/ stays on a warm machine)
#
# What comes back goes to $OUT (the device tool's folder), or to gpu_out/ when OUT is unset.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_out}
python=${PYTHON:-python3}
case "${1:-}" in
  prepare)
    for name in FashionMNIST MNIST; do
      mkdir -p "gpu_data/$name/raw"
      cp "${SHARED:-../shared}/data/$name/raw/"*.gz "gpu_data/$name/raw/"
    done
    du -sh gpu_data
    ;;
  check)
    mkdir -p "$out"
    {
      nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader || true
      "$python" -c "import torch, torchvision; print('torch', torch.__version__, '| torchvision', torchvision.__version__)"
    } | tee "$out/machine.txt"
    "$python" -m pytest -q test_smoke.py -k "graph or gpu" -p no:cacheprovider -rs 2>&1 | tee "$out/gpu_tests.txt" | tail -15
    "$python" bench/flops.py --device cuda --steps 20 2>&1 | tee "$out/flops.txt" | tail -9
    "$python" bench/speed.py --data-root gpu_data --out "$out/speed.md" 2>&1 | tee "$out/speed.txt" | tail -8
    ;;
  session)
    # At most 6 files come back: check.txt, speed.txt, gpu_tests.txt, results_a.txt, results_b.txt, results.tar.gz.
    mkdir -p "$out"
    start=$SECONDS budget=${BUDGET:-560}
    left() { local s=$((budget - (SECONDS - start) - $1)); echo $((s > 1 ? s : 1)); }
    export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
    {
      nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader || true
      "$python" -c "import torch, torchvision; print('torch', torch.__version__, '| torchvision', torchvision.__version__)"
    } 2>&1 | tee "$out/check.txt"
    # Timings first, each with the GPU to itself.
    timeout "$(left 270)" "$python" bench/speed.py --data-root gpu_data --epochs 2 2>&1 | tee "$out/speed.txt" ||
      echo "speed.py stopped (status $?)" | tee -a "$out/speed.txt"
    timeout 40 "$python" bench/flops.py --device cuda --steps 20 2>&1 | tee -a "$out/check.txt" || true
    # Then correctness and results side by side (their timings are not the speed table's).
    workers=$("$python" -c "import xdist" 2>/dev/null && echo "-n 6" || true)
    timeout "$(left 20)" "$python" -m pytest -q test_smoke.py -k "graph or gpu" -p no:cacheprovider -rs $workers \
      >"$out/gpu_tests.txt" 2>&1 &
    timeout "$(left 20)" "$python" bench/results.py gpu_results_a --only gan dcgan dcgan_lr1e-4 --jobs 9 \
      --data-root gpu_data --figure gpu_results_a/results.png >"$out/results_a.txt" 2>&1 &
    timeout "$(left 20)" "$python" bench/results.py gpu_results_b --only wgan --jobs 3 \
      --data-root gpu_data --figure gpu_results_b/results.png >"$out/results_b.txt" 2>&1 || echo "results b: status $?"
    wait
    tail -n 4 "$out/gpu_tests.txt" "$out/results_a.txt" "$out/results_b.txt"
    find gpu_results_a gpu_results_b -maxdepth 1 -type f ! -name '*.pt' -print0 2>/dev/null |
      tar czf "$out/results.tar.gz" --null -T - || true
    ;;
  results)
    mkdir -p "$out"
    only=("${@:2}")
    "$python" bench/results.py gpu_results ${only[@]:+--only "${only[@]}"} --jobs 6 --data-root gpu_data --figure "$out/results.png" 2>&1 |
      tee -a "$out/results.txt" | tail -30
    cp gpu_results/table.md gpu_results/scores.json "$out/" 2>/dev/null || true
    ;;
  *)
    echo "usage: bash bench/gpu_session.sh prepare|check|session|results [CONFIG ...]" >&2
    exit 2
    ;;
esac
