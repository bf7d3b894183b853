"""Seconds per epoch, three ways side by side: the handout's pipeline, our eager loop, our CUDA-graph path.

For every row (gan.py, dcgan.py, wgan.py with clipping, wgan.py --gp) it runs, one after the other on the same
machine: bench/handout_pipeline.py (torchvision DataLoader + ToTensor, .item() on every loss, the same networks),
`<script>.py --no-cuda-graph` and `<script>.py` (on a GPU, the graph path). Each trains --epochs epochs on
FashionMNIST at batch 128; the table gives the median of the epochs after the first, which pays for cuDNN's
autotuning and the graph's capture once. Give it the machine to itself: nothing else on the GPU or the CPU.

    python bench/speed.py                                # all rows, 3 epochs each (a GPU job: ~6 min on an H100)
    python bench/speed.py --only gan wgan-gp --epochs 2  # some rows (gan, dcgan, wgan, wgan-gp)
    python bench/speed.py --device cpu --only gan --epochs 2   # a CPU has no graph column
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
# row -> (label, script, flags, whether the handout has it: it has no gradient penalty)
ROWS = {
    "gan": ("gan.py", "gan", [], True),
    "dcgan": ("dcgan.py", "dcgan", [], True),
    "wgan": ("wgan.py --clip 0.01", "wgan", ["--clip", "0.01"], True),
    "wgan-gp": ("wgan.py --gp 10", "wgan", ["--gp", "10"], False),
}


def run(cmd, pattern):
    """Runs a command; returns the seconds of each epoch it reports (pattern captures them)."""
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(
            f"{' '.join(cmd)} failed (status {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return [float(s) for s in re.findall(pattern, result.stdout, re.M)]


def later_epochs(times):
    """The median of the epochs after the first (the first pays for autotuning and capture), else the only one."""
    return statistics.median(times[1:] or times)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", choices=ROWS, help="rows to time (default: all)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is not counted)")
    p.add_argument("--data-root", default="./data", help="holds FashionMNIST/raw/*.gz")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    p.add_argument("--out", help="also write the table (markdown) to this file")
    args = p.parse_args()
    graphs = torch.device(args.device).type == "cuda"
    where = torch.cuda.get_device_name(args.device) if graphs else "CPU"
    lines = [
        f"`python bench/speed.py {' '.join(sys.argv[1:])}` on {where}, torch {torch.__version__}, "
        f"FashionMNIST, batch 128, seed 0; s/epoch = median of epochs 2..{args.epochs}",
        "",
        "| script | handout pipeline | ours, `--no-cuda-graph` | ours, CUDA graph | ours vs handout | graph vs eager |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for key, (name, script, flags, in_handout) in ROWS.items():
            if args.only and key not in args.only:
                continue
            handout = eager = graph = None
            if in_handout:
                cmd = [sys.executable, "bench/handout_pipeline.py", script, "--device", args.device]
                cmd += ["--data-root", args.data_root, "--epochs", str(args.epochs)]
                handout = later_epochs(run(cmd, r"^handout pipeline .* \| ([0-9.]+) s$"))
            ours = [sys.executable, f"{script}.py", *flags, "--epochs", str(args.epochs), "--device", args.device]
            ours += ["--data-root", args.data_root, "--ckpt", f"{tmp}/b.pt", "--overwrite", "--logdir", f"{tmp}/runs"]
            epoch_line = r"^Epoch \d+ \| ([0-9.]+) s \|"
            eager = later_epochs(run([*ours, "--no-cuda-graph"], epoch_line))
            if graphs:
                graph = later_epochs(run(ours, epoch_line))
            cell = lambda s: "—" if s is None else f"{s:.2f}"  # noqa: E731
            ratio = lambda a, b: "—" if a is None or b is None else f"{a / b:.1f}x"  # noqa: E731
            fastest = eager if graph is None else graph
            row = f"| {name} | {cell(handout)} | {cell(eager)} | {cell(graph)} | {ratio(handout, fastest)} | "
            lines.append(row + f"{ratio(eager, graph)} |")
            print(lines[-1], flush=True)
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
