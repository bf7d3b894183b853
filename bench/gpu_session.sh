#!/usr/bin/env bash
# The GPU checks in as few calls as a lent GPU allows (the checks need CUDA; see README, "Speed").
#
#   bash bench/gpu_session.sh prepare   # here: copies the official .gz files into gpu_data/ (ignored by git)
#   bash bench/gpu_session.sh tests     # on the GPU, carrying gpu_data/FashionMNIST: the GPU tests (~1-2 min), then
#                                       # bench/mutations.py --gpu (the graph path broken on purpose, ~3 min)
#   bash bench/gpu_session.sh check     # the GPU tests, then bench/speed.py and bench/flops.py (~8 min on an H200)
#   bash bench/gpu_session.sh results [CONFIG ...]
#                                       # on the GPU, carrying gpu_data/FashionMNIST: bench/results.py, 30 epochs x 3
#                                       # seeds (every configuration, or the ones named), starting from the runs that
#                                       # earlier loans finished (docs/results_gpu/, committed); what finishes comes back
#                                       # in results.tar.gz. Runs alone on an H200 train for about 7 s (gan), 33 s (dcgan),
#                                       # 111 s (wgan) and 212 s (wgan_gp) (30 x speed.py's s/epoch), plus start-up and scoring.
#                                       # RESULTS_JOBS (default 2) runs side by side; RESULTS_MPS=1 runs them under MPS,
#                                       # which lets their kernels share the GPU (see below); RESULTS_TIME, the limit.
#   bash bench/gpu_session.sh keep DIR  # here, after a results call: unpacks DIR/results.tar.gz into docs/results_gpu/;
#                                       # commit it, so that the next loan, on any machine, does not train those again
#
# A 15-minute loan holds one ~9-minute call. Question 3's table in seven loans (estimates, not measured):
#   1. bash bench/gpu_session.sh tests &&
#      RESULTS_TIME=150 bash bench/gpu_session.sh results gan gan_h2048_ls_lr4e-4 gan_h2048_lr4e-4 gan_h2048_ls_lr4e-4_b64 \
#        gan_h2048_ls_lr4e-4_lrd8e-4
#   2. bash bench/gpu_session.sh results wgan_gp      (two of its three seeds finish)
#      (second because it is the row the CPU could not give and the one that may change the verdict: three CPU seeds
#      after 5 of 30 epochs scored FID 25.16 +- 1.79, three after 15 scored 8.74 +- 0.35 (seed 2 after 20: 5.95),
#      below dcgan.py's recipe at 30 (13.22 +- 1.45), 10 classes each; docs/results_cpu.md, "wgan.py")
#   3. bash bench/gpu_session.sh results wgan
#   4. RESULTS_MPS=1 RESULTS_JOBS=6 bash bench/gpu_session.sh results dcgan dcgan_lr1e-4_lrd5e-5_ls dcgan_lr1e-4 \
#        dcgan_lr1e-4_ls dcgan_lr5e-5_ls dcgan_ls
#      (18 runs x 33 s is about 10 minutes of GPU alone: if MPS does not start, six time-sliced runs finish
#      together every ~200 s, so expect the last six left for loan 5. Under MPS, untried here, all may finish:
#      results.txt says whether MPS started, and each run's s/epoch against speed.py's 1.09 alone says how much it
#      gained. If it gained, give every later loan RESULTS_MPS=1 and RESULTS_JOBS=3 (wgan.py's runs are 3-7 times
#      longer: six at a time would all be caught by the time limit), and loans 5-7 may fold into fewer)
#   5. bash bench/gpu_session.sh results gan gan_h2048_ls_lr4e-4 gan_h2048_lr4e-4 gan_h2048_ls_lr4e-4_b64 \
#        gan_h2048_ls_lr4e-4_lrd8e-4 dcgan \
#        dcgan_lr1e-4 dcgan_ls dcgan_lr1e-4_ls dcgan_lr5e-5_ls dcgan_lr1e-4_lrd5e-5_ls wgan wgan_gp
#      (what is left: wgan_gp's last seed and dcgan's leftovers; then the whole table and figure from the kept files)
#   6. bash bench/gpu_session.sh results wgan_lr1e-4 wgan_gp_beta1_0
#      (wgan.py's two candidates: 3 x 111 s, then 3 x 212 s, about 16 minutes: expect wgan_gp_beta1_0's last seed or
#      two left for loan 7, which runs the same command; then loan 5's command again, with these two added;
#      on the CPU, wgan_gp_beta1_0's seed 0 trailed wgan_gp's after 5 epochs, FID 30.20 against 26.68)
# Each call carries ["gpu_data/FashionMNIST"]; after each, `bash bench/gpu_session.sh keep <files_at>` and commit.
# (The scores live in git, not in an ignored folder: a loan's work survives this machine being replaced.)
#
# What comes back goes to $OUT (the device tool's folder), or to gpu_out/ when OUT is unset.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_out}
python=${PYTHON:-python3}
kept=${KEPT:-docs/results_gpu} # the finished runs' scores, logs and sample rows, committed between loans
case "${1:-}" in
  prepare)
    for name in FashionMNIST MNIST; do
      mkdir -p "gpu_data/$name/raw"
      cp "${SHARED:-../shared}/data/$name/raw/"*.gz "gpu_data/$name/raw/"
    done
    du -sh gpu_data
    ;;
  tests | check)
    mkdir -p "$out"
    export PYTHONUNBUFFERED=1
    {
      nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader || true
      "$python" -c "import torch, torchvision; print('torch', torch.__version__, '| torchvision', torchvision.__version__)"
    } 2>&1 | tee "$out/machine.txt"
    workers=$("$python" -c "import xdist" 2>/dev/null && echo "-n 6" || true) # ~1 min with pytest-xdist, ~3 without
    "$python" -m pytest -q test_smoke.py -k "graph or gpu" -p no:cacheprovider -rA $workers 2>&1 |
      tee "$out/gpu_tests.txt" | tail -15 || true
    if [ "$1" = tests ]; then
      # Break the graph path on purpose, one bug at a time, and see the GPU tests fail (about 3 minutes, estimated).
      "$python" bench/mutations.py --gpu 2>&1 | tee "$out/gpu_mutations.txt" | tail -12 || true
      exit 0
    fi
    # Timings with the GPU to itself (about 5 minutes on an H200).
    "$python" bench/speed.py --data-root gpu_data --epochs 2 --out "$out/speed.md" 2>&1 | tee "$out/speed.txt" | tail -8
    "$python" bench/flops.py --device cuda --steps 20 2>&1 | tee "$out/flops.txt" | tail -9
    ;;
  results)
    mkdir -p "$out" gpu_results
    only=("${@:2}")
    # A run whose scores file is there is done (bench/results.py): start from what earlier loans kept, without
    # overwriting what a carried gpu_results already holds.
    find "$kept" -maxdepth 1 -type f -name '*_seed*' -exec cp -n {} gpu_results/ \; 2>/dev/null || true
    # Stops in time (RESULTS_TIME seconds, default 540) to send back what finished: scores, logs and sample rows,
    # not checkpoints (too large); `keep` files them in $kept here.
    # Two at a time by default: without MPS, CUDA time-slices processes, so more side by side finish no sooner, and a
    # time limit would then catch them all unfinished; the second overlaps the first's start-up and scoring.
    jobs=${RESULTS_JOBS:-2}
    if [ "${RESULTS_MPS:-0}" = 1 ]; then
      # MPS (CUDA's multi-process service) runs the kernels of several processes at once: these steps fill a few of
      # the GPU's 132 multiprocessors, so side by side they may finish sooner. Its pipes are in a folder of our own,
      # so only these runs use it; the card's settings (compute mode and the rest) are not touched, and `quit` below
      # stops it. If it does not start, or a CUDA program under it does not answer, the runs go time-sliced.
      export CUDA_MPS_PIPE_DIRECTORY=/tmp/gan_mps/pipe CUDA_MPS_LOG_DIRECTORY=/tmp/gan_mps/log
      mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
      if nvidia-cuda-mps-control -d && timeout 60 "$python" -c "import torch; torch.ones(1, device='cuda').sum().item()"
      then
        echo "MPS on: $jobs runs side by side" | tee -a "$out/results.txt"
      else
        echo "MPS did not start: $jobs runs side by side, time-sliced" | tee -a "$out/results.txt"
        timeout 10 sh -c 'echo quit | nvidia-cuda-mps-control' 2>/dev/null || true
        unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
      fi
    fi
    timeout "${RESULTS_TIME:-540}" "$python" bench/results.py gpu_results ${only[@]:+--only "${only[@]}"} --jobs "$jobs" \
      --data-root gpu_data --figure gpu_results/results.png 2>&1 | tee -a "$out/results.txt" | tail -30 || true
    if [ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ]; then
      timeout 10 sh -c 'echo quit | nvidia-cuda-mps-control' || true
    fi
    find gpu_results -maxdepth 1 -type f \( -name '*.json' -o -name '*.log' -o -name '*.png' -o -name '*.md' \) -print0 |
      tar czf "$out/results.tar.gz" --null -T -
    ;;
  keep)
    [ -f "${2:-}/results.tar.gz" ] || { echo "usage: bash bench/gpu_session.sh keep DIR (DIR holds results.tar.gz)" >&2; exit 2; }
    mkdir -p "$kept"
    tar xzf "$2/results.tar.gz" --strip-components=1 -C "$kept"
    ls "$kept" | sed -n 's/_seed[0-9]*\.json$//p' | sort | uniq -c # runs scored, per configuration
    ;;
  *)
    echo "usage: bash bench/gpu_session.sh prepare|tests|check|results [CONFIG ...]|keep DIR" >&2
    exit 2
    ;;
esac
