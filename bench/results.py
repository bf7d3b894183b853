"""Question 3, measured: trains every configuration over several seeds, scores each checkpoint, prints one table.

Each configuration (a script and its flags) trains once per seed into OUT/<config>_seed<S>.pt, several
side by side (--jobs), and evaluate.py scores it with the shipped classifier as soon as it finishes:
OUT/<config>_seed<S>.json holds its scores and .png its 10 samples for the figure. Those small files
mark a run as done, so an interrupted call carries on (unfinished checkpoints resume), and so does a
folder brought back from a GPU machine without its checkpoints (they are too large to bring back). The
table gives mean ± standard deviation over the seeds, seconds per epoch (median of the epoch lines), and
the runs that led to each tuned recipe. --figure draws one row of samples per configuration (first seed).

    python bench/results.py OUT                          # 30 epochs x 3 seeds, all configurations (a GPU job)
    python bench/results.py OUT --jobs 6 --figure docs/results.png
    python bench/results.py OUT --epochs 1 --seeds 0 --only gan dcgan     # a quick look on a CPU
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torchvision
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import evaluate  # noqa: E402 (from the repository root above)
import gan  # noqa: E402 (its picture helpers, for the figure)

# name -> (script, flags as typed, what it is). The handout's defaults first, then the candidates tried for each script;
# a recipe is the candidate the CPU runs chose (README, question 3).
CONFIGS = {
    "gan": ("gan", "", "gan.py, handout defaults"),
    "dcgan": ("dcgan", "", "dcgan.py, handout defaults"),
    "wgan": ("wgan", "--clip 0.01", "wgan.py, handout (clipping 0.01)"),
    "wgan_gp": ("wgan", "--gp 10", "wgan.py --gp 10 (WGAN-GP)"),
    "gan_ls": ("gan", "--label-smoothing 0.1", "gan.py candidate"),
    "gan_lr1e-4_ls": ("gan", "--lr 1e-4 --label-smoothing 0.1", "gan.py candidate"),
    "gan_h512_ls": ("gan", "--hidden-dim 512 --label-smoothing 0.1", "gan.py candidate"),
    "gan_h1024_ls": ("gan", "--hidden-dim 1024 --label-smoothing 0.1", "gan.py candidate"),
    "gan_h1024_lr4e-4": ("gan", "--hidden-dim 1024 --lr 4e-4", "gan.py candidate"),  # width without smoothing
    "gan_h1024_ls_lr4e-4": ("gan", "--hidden-dim 1024 --label-smoothing 0.1 --lr 4e-4", "gan.py candidate"),
    "gan_h1024_ls0.2_lr4e-4": ("gan", "--hidden-dim 1024 --label-smoothing 0.2 --lr 4e-4", "gan.py candidate"),
    "gan_h1024_ls_lr8e-4": ("gan", "--hidden-dim 1024 --label-smoothing 0.1 --lr 8e-4", "gan.py candidate"),
    "gan_h1024_ls_b64": ("gan", "--hidden-dim 1024 --label-smoothing 0.1 --batch-size 64", "gan.py candidate"),
    "gan_h1024_ls_lr4e-4_b64": (
        "gan",
        "--hidden-dim 1024 --label-smoothing 0.1 --lr 4e-4 --batch-size 64",
        "gan.py candidate",
    ),
    "gan_h1024_ls_lr4e-4_lrd8e-4": (  # the recipe's faster D at a laptop's width
        "gan",
        "--hidden-dim 1024 --label-smoothing 0.1 --lr 4e-4 --lr-d 8e-4",
        "gan.py candidate",
    ),
    "gan_h2048_lr4e-4": ("gan", "--hidden-dim 2048 --lr 4e-4", "gan.py candidate"),  # the recipe without smoothing
    "gan_h2048_ls_lr4e-4": ("gan", "--hidden-dim 2048 --label-smoothing 0.1 --lr 4e-4", "gan.py candidate"),
    "gan_h2048_ls_lr4e-4_b64": (
        "gan",
        "--hidden-dim 2048 --label-smoothing 0.1 --lr 4e-4 --batch-size 64",
        "gan.py candidate",
    ),
    "gan_h2048_ls_lr4e-4_lrd2e-4": (
        "gan",
        "--hidden-dim 2048 --label-smoothing 0.1 --lr 4e-4 --lr-d 2e-4",
        "gan.py candidate",
    ),
    "gan_h2048_ls_lr4e-4_lrd8e-4": (  # a faster D: 10 classes in every seed (without it, 10, 9, 10)
        "gan",
        "--hidden-dim 2048 --label-smoothing 0.1 --lr 4e-4 --lr-d 8e-4",
        "gan.py recipe",
    ),
    "dcgan_lr1e-4": ("dcgan", "--lr 1e-4", "dcgan.py candidate"),
    "dcgan_ls": ("dcgan", "--label-smoothing 0.1", "dcgan.py candidate"),
    "dcgan_lr1e-4_ls": ("dcgan", "--lr 1e-4 --label-smoothing 0.1", "dcgan.py candidate"),
    "dcgan_lr5e-5_ls": ("dcgan", "--lr 5e-5 --label-smoothing 0.1", "dcgan.py candidate"),
    "dcgan_lr1e-4_lrd5e-5_ls": ("dcgan", "--lr 1e-4 --lr-d 5e-5 --label-smoothing 0.1", "dcgan.py recipe"),
    "dcgan_lr1e-4_ls0.2": ("dcgan", "--lr 1e-4 --label-smoothing 0.2", "dcgan.py candidate"),
    "dcgan_lr5e-5_ls0.2": ("dcgan", "--lr 5e-5 --label-smoothing 0.2", "dcgan.py candidate"),
    # wgan.py, not tuned on the CPU (an epoch takes 8-15 minutes there): at the handout's rate seed 0 was still
    # improving at epoch 30, so twice the rate; and WGAN-GP with its paper's Algorithm 1 betas (0, 0.9).
    "wgan_lr1e-4": ("wgan", "--clip 0.01 --lr 1e-4", "wgan.py candidate"),
    "wgan_gp_beta1_0": ("wgan", "--gp 10 --beta1 0", "wgan.py candidate"),
}
METRICS = [("fid", "FID (clf) ↓", 2), ("precision", "precision ↑", 3), ("recall", "recall ↑", 3)]
METRICS += [("classes_covered", "classes covered ↑", 1), ("kl_uniform", "KL ↓", 3)]
OWN_FLAGS = {"--epochs", "--seeds", "--only", "--jobs", "--data-root", "--n", "--figure", "--extra"}
OWN_FLAGS |= {"--seed", "--ckpt", "--logdir", "--resume"}  # set by train() for each run


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="folder for checkpoints, logs, TensorBoard runs, scores.json and table.md")
    p.add_argument("--epochs", type=int, default=30, help="epochs per run (the handout's 30)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds per configuration")
    p.add_argument("--only", nargs="+", choices=CONFIGS, metavar="CONFIG", help="configurations to run (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="trainings side by side")
    p.add_argument("--data-root", default=str(ROOT / "data"), help="holds <Name>/raw/*.gz")
    p.add_argument(
        "--n", type=int, default=10_000, help="samples scored per checkpoint (evaluate.py --n, 256 to 60000)"
    )
    p.add_argument("--figure", help="also write a PNG: one row of samples per configuration (seed 0)")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="flags passed to every training run")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.epochs < 1:
        p.error("arguments --jobs/--epochs: must be positive")
    if not all(0 <= seed < 2**32 for seed in args.seeds):  # refused now, not by each run in turn
        p.error(f"argument --seeds: each must be in [0, 2^32), got {args.seeds}")
    if args.n < 2 * evaluate.Classifier.FEATURES:  # evaluate.py would refuse it after the training, not before
        p.error(f"argument --n: at least {2 * evaluate.Classifier.FEATURES} samples (evaluate.py's --n), got {args.n}")
    if args.n > evaluate.MAX_N:
        p.error(f"argument --n: at most {evaluate.MAX_N} samples (evaluate.py's --n), got {args.n}")
    # --extra takes everything after it: a flag of this script typed there would reach gan.py as an unknown one,
    # and one this script sets for each run would fight it.
    for flag in args.extra:
        if flag.split("=")[0] in OWN_FLAGS:
            p.error(f"argument --extra: {flag.split('=')[0]} belongs before --extra (all after it goes to every run)")
    return args


def run(args, name, seed):
    """One run, trained (or resumed) and scored, unless its scores for --epochs are already there."""
    stem = Path(args.out) / f"{name}_seed{seed}"
    stem = stem.with_name(stem.name + ".x")  # with_suffix below would eat a name's own dot (ls0.2)
    if stem.with_suffix(".json").exists() and score(args, name, seed)["epochs"] == args.epochs:
        return
    train(args, name, seed)
    cmd = [sys.executable, str(ROOT / "evaluate.py"), str(stem.with_suffix(".pt")), "--data-root", args.data_root]
    cmd += ["--n", str(args.n), "--json", str(stem.with_suffix(".tmp"))]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (status {result.returncode}):\n{result.stderr[-2000:]}")
    ckpt, G = evaluate.load_checkpoint(None, str(stem.with_suffix(".pt")))
    images = evaluate.generate(G, ckpt["generator_kwargs"]["latent_dim"], 10, seed=0)  # the same z in every row
    gan.grid_image(gan.to_uint8(images), nrow=10).save(stem.with_suffix(".png"))
    stem.with_suffix(".tmp").replace(stem.with_suffix(".json"))  # last: a run with scores is a finished run


def score(args, name, seed):
    """The run's row of evaluate.py's JSON, with the real data's row under "real"."""
    rows = json.loads((Path(args.out) / f"{name}_seed{seed}.json").read_text())["rows"]
    real = next(r for r in rows if r["name"] == "real data")
    return next(r for r in rows if r["name"] != "real data") | {"real": real}


def train(args, name, seed):
    """One run, resumed if an earlier call was interrupted; returns its log."""
    script, flags, _ = CONFIGS[name]
    out = Path(args.out)
    ckpt, log = out / f"{name}_seed{seed}.pt", out / f"{name}_seed{seed}.log"
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if (state["epoch"], state["step"]) == (args.epochs, 0):
            return log  # finished: not trained again
        flags = ["--resume"]  # the run keeps its own flags
    else:
        flags = [*flags.split(), "--seed", str(seed)]
    cmd = [sys.executable, str(ROOT / f"{script}.py"), *flags, "--epochs", str(args.epochs), "--ckpt", str(ckpt)]
    cmd += ["--data-root", args.data_root, "--logdir", str(out / "runs"), *args.extra]
    with open(log, "a" if flags == ["--resume"] else "w") as f:  # a fresh start drops a lost run's lines
        result = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (status {result.returncode}); see {log}")
    return log


def seconds_per_epoch(logs):
    text = "".join(log.read_text() for log in logs if log.exists())
    times = [float(m) for m in re.findall(r"^Epoch \d+ \| ([0-9.]+) s \|", text, re.M)]
    return statistics.median(times) if times else float("nan")


def mean_sd(values, digits):
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(args, names, rows, logs):
    header = ["configuration", "flags", "seeds", "s/epoch"] + [title for _, title, _ in METRICS]
    lines = ["| " + " | ".join(header) + " |", "| --- | --- | ---: | ---: |" + " ---: |" * len(METRICS)]
    for row in [next(iter(rows.values()))["real"]]:
        lines.append(
            f"| real data ({row['dataset']}) | | | | " + " | ".join(cell(row[key], d) for key, _, d in METRICS) + " |"
        )
    for name in names:
        scored = [rows[name, s] for s in args.seeds]
        script, flags, what = CONFIGS[name]
        cells = [mean_sd([float(r[key]) for r in scored], d) for key, _, d in METRICS]
        covered = [key for key, _, _ in METRICS].index("classes_covered")
        cells[covered] += f" ({', '.join(str(r['classes_covered']) for r in scored)})"  # each seed's, in full
        spe = seconds_per_epoch([logs[name, s] for s in args.seeds])
        typed = f"`{flags}`" if flags else ""
        lines.append(f"| {what} | {typed} | {len(scored)} | {spe:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def missing_classes(args, names, rows):
    """Per configuration, the classes under the coverage threshold (half a fair share) in each seed, with shares."""
    lines = []
    for name in names:
        for s in args.seeds:
            row = rows[name, s]
            classes = getattr(torchvision.datasets, evaluate.DATASETS[row["dataset"]]).classes
            low = [f"{classes[c]} {share:.1%}" for c, share in enumerate(row["class_shares"]) if share < 0.05]
            lines.append(f"- {name}, seed {s}: {', '.join(low) if low else 'none'} under 5%")
    return "\n".join(lines)


def cell(value, digits):
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"  # classes covered: a count


def figure(args, names, path):
    """One row of 10 samples (the same z) per configuration, first seed, labelled: the table as pictures."""
    tiles, labels = [], []
    for name in names:
        tiles.append(Image.open(Path(args.out) / f"{name}_seed{args.seeds[0]}.png"))
        labels.append(
            CONFIGS[name][2] + (f" {CONFIGS[name][1]}" if CONFIGS[name][2].endswith(("candidate", "recipe")) else "")
        )
    title = f"{evaluate.DATASETS[dataset_of(args)]}, {args.epochs} epochs, seed {args.seeds[0]}, the same 10 z per row"
    gan.labelled(path, tiles, labels, title=title, across=False)


def dataset_of(args):
    """The dataset every run trains on: --extra's --dataset, else the scripts' default."""
    return args.extra[args.extra.index("--dataset") + 1] if "--dataset" in args.extra[:-1] else "fashion-mnist"


def extract_data(args):
    """Both splits unpacked once, here: runs and scorers started side by side would unpack the same .gz together."""
    dataset = dataset_of(args)
    if dataset not in evaluate.DATASETS:
        refuse(f"argument --extra: --dataset {dataset!r} is not one of {', '.join(evaluate.DATASETS)}")
    for train in (True, False):
        try:
            getattr(torchvision.datasets, evaluate.DATASETS[dataset])(args.data_root, train=train, download=True)
        except Exception as e:  # noqa: BLE001 (the scripts' own one-line answer, before any run starts)
            refuse(gan.data_problem(args.data_root, evaluate.DATASETS[dataset], e))


def refuse(message):
    """Bad input: one line and exit status 2, as the scripts answer it."""
    print(f"results.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv=None):
    args = parse_args(argv)
    if args.figure is not None and not evaluate.writable_file(args.figure):  # now, not after every run's training
        refuse(f"argument --figure: cannot write {args.figure!r} (its folder must exist, and it must not be a folder)")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:  # a file in the way, a read-only parent: one line, not a traceback
        refuse(f"argument out: cannot create the folder {args.out!r} ({e.strerror})")
    extract_data(args)
    names = args.only or list(CONFIGS)
    jobs = [(name, seed) for name in names for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda job: run(args, *job), jobs))
    rows = {job: score(args, *job) for job in jobs}
    logs = {job: Path(args.out) / f"{job[0]}_seed{job[1]}.log" for job in jobs}
    runs = [{k: v for k, v in row.items() if k != "real"} for row in rows.values()]
    (Path(args.out) / "scores.json").write_text(json.dumps({"rows": [rows[jobs[0]]["real"], *runs]}, indent=2) + "\n")
    result = table(args, names, rows, logs) + "\n\nClasses under the threshold:\n" + missing_classes(args, names, rows)
    (Path(args.out) / "table.md").write_text(result + "\n")
    print(result)
    if args.figure:
        figure(args, names, args.figure)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
