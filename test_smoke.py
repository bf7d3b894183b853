"""Offline smoke tests: tiny datasets in the real IDX format, every script run through its command line.

    python -m pytest -q test_smoke.py

No test downloads anything: each subprocess gets a proxy on a closed loopback port, so a download
attempt fails at once instead of reaching the network.
"""

import importlib
import json
import math
import os
import signal
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}
# One thread each: the tests run two scripts side by side, and 2x2 OpenMP threads on 2 cores crawl.
ENV = {**os.environ, **OFFLINE, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
# variant -> (script, extra flags, TensorBoard tag prefix, batch size). The tiny training set has 320 images:
# 20 steps an epoch for gan; 5 for the others, whose step time is set by their ~10M parameters, not the batch.
VARIANTS = {
    "gan": ("gan", [], "GAN", 16),
    "dcgan": ("dcgan", [], "DCGAN", 64),
    "wgan": ("wgan", ["--n-critic", "2"], "WGAN", 64),
    "wgan-gp": ("wgan", ["--gp", "10", "--n-critic", "2"], "WGAN", 64),
}
SCRIPTS = ["gan", "dcgan", "wgan"]


# ===== A tiny dataset in the real IDX format =====
def write_idx(path, tensor):
    magic = 2051 if tensor.dim() == 3 else 2049  # images, labels
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in tensor.shape)
    path.write_bytes(header + tensor.numpy().tobytes())


def tiny_split(n, seed):
    """Class k is a bright bar at rows 2k+2..2k+4 on dim noise: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.rand(n, 28, 28, generator=g) * 60
    for k in range(10):
        images[labels == k, 2 * k + 2 : 2 * k + 5, 4:24] += 180
    return images.clamp(0, 255).to(torch.uint8), labels.to(torch.uint8)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for seed, name in enumerate(["FashionMNIST", "MNIST"]):
        raw = root / name / "raw"
        raw.mkdir(parents=True)
        # Uncompressed files: torchvision uses them as they are (a .gz would be md5-checked against the real one).
        for split, n in [("train", 320), ("t10k", 100)]:
            images, labels = tiny_split(n, seed * 10 + len(split))
            write_idx(raw / f"{split}-images-idx3-ubyte", images)
            write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return root


# ===== Helpers =====
def command(variant, *flags, data_root):
    script, extra, _, batch = VARIANTS[variant]
    fast = ["--batch-size", str(batch), "--log-every", "2"]
    return [sys.executable, str(ROOT / f"{script}.py"), *extra, "--data-root", str(data_root), *fast, *flags]


def run_all(commands, cwd):
    """Runs commands side by side (the import of torch dominates tiny runs) and returns their results."""
    procs = [
        subprocess.Popen(c, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    for c, (rc, out, err) in zip(commands, results, strict=True):
        assert rc == 0, f"{' '.join(c)}\n{out}\n{err}"
    return [out for _, out, _ in results]


def interrupted_run(cmd, cwd):
    """Starts a run, sends Ctrl-C after its first progress line, and returns (status, output)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "| Step " in line:
            proc.send_signal(signal.SIGINT)
            break
    rest, _ = proc.communicate(timeout=300)
    return proc.returncode, "".join(lines) + rest


def step_lines(output):
    return [line for line in output.splitlines() if "| Step " in line]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_weights(a, b):
    for net in ["G", "D"]:
        assert a[net].keys() == b[net].keys()
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs"


@pytest.fixture(scope="session", params=list(VARIANTS))
def trained(request, data_root, tmp_path_factory):
    """For one variant: a straight 2-epoch run, 1 epoch + --resume to 2, and a Ctrl-C'd run resumed to 2."""
    variant, cwd = request.param, tmp_path_factory.mktemp(request.param)
    cmd = lambda *flags: command(variant, *flags, data_root=data_root)  # noqa: E731
    with ThreadPoolExecutor() as pool:  # the Ctrl-C run overlaps the other two: three processes, two cores
        interrupted_job = pool.submit(interrupted_run, cmd("--epochs", "2", "--ckpt", "c.pt", "--log-every", "1"), cwd)
        straight, first = run_all([cmd("--epochs", "2", "--ckpt", "a.pt"), cmd("--epochs", "1", "--ckpt", "b.pt")], cwd)
        rc, interrupted = interrupted_job.result()
    assert rc == 130, interrupted
    c_stopped_at = load(cwd / "c.pt")
    run_all(
        [cmd("--epochs", "2", "--ckpt", "b.pt", "--resume"), cmd("--epochs", "2", "--ckpt", "c.pt", "--resume")], cwd
    )
    return {
        "variant": variant,
        "cwd": cwd,
        "straight": straight,
        "first": first,
        "interrupted": interrupted,
        "c_stopped_at": c_stopped_at,
        "tag": VARIANTS[variant][2],
        "steps": 320 // VARIANTS[variant][3],
    }


# ===== Training runs =====
def test_progress_lines_follow_the_handout(trained):
    lines, steps = step_lines(trained["straight"]), trained["steps"]
    assert lines[0].startswith(f"Epoch 00 | Step 0002 / {steps:04d} | Loss_D ") and "| Loss_G " in lines[0]
    assert any(line.startswith(f"Epoch 01 | Step {steps:04d} / {steps:04d}") for line in lines)
    assert " img/s " in trained["straight"]


def test_checkpoint_loads_with_weights_only_and_rebuilds_the_generator(trained):
    ckpt = load(trained["cwd"] / "a.pt")
    assert ckpt["script"] == VARIANTS[trained["variant"]][0] and ckpt["epoch"] == 2 and ckpt["step"] == 0
    assert ckpt["args"]["dataset"] == "fashion-mnist" and ckpt["args"]["epochs"] == 2
    module = importlib.import_module(ckpt["script"])
    G = module.Generator(**ckpt["generator_kwargs"])
    G.load_state_dict(ckpt["G"])
    G.eval()
    with torch.no_grad():
        images = G(ckpt["fixed_noise"][:4]).view(-1, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1


def test_tensorboard_holds_the_handout_tags_images_graph_and_hparams(trained):
    run_dir = Path(load(trained["cwd"] / "a.pt")["run_dir"])
    acc = EventAccumulator(str(trained["cwd"] / run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags, tag = acc.Tags(), trained["tag"]
    for name in [f"{tag}/Loss/Discriminator", f"{tag}/Loss/Generator"]:
        assert [e.step for e in acc.Scalars(name)] == [0, 1]
    assert len(acc.Scalars(f"{tag}/Step/Loss_D")) == 2 * trained["steps"]
    assert [e.step for e in acc.Images("Generated Images")] == [0, 1, 2]
    assert tags["graph"] is True
    assert any(t.startswith("hyperparameters") for t in tags["tensors"])


def test_milestone_and_comparison_pngs(trained):
    run_dir = trained["cwd"] / load(trained["cwd"] / "a.pt")["run_dir"]
    names = ["samples_000pct_epoch000", "samples_025pct_epoch001", "samples_050pct_epoch001"]
    names += ["samples_075pct_epoch002", "samples_100pct_epoch002"]
    for name in names:
        assert Image.open(run_dir / f"{name}.png").size == (8 * 30 + 2, 8 * 30 + 2)  # 8x8 grid, 2 px padding
    assert Image.open(run_dir / "real_vs_generated.png").size == (8 * 30 + 2, 2 * 30 + 2)


def test_same_seed_gives_the_same_losses(trained):
    first_epoch = [line for line in step_lines(trained["straight"]) if line.startswith("Epoch 00")]
    assert first_epoch and first_epoch == step_lines(trained["first"])


def test_resume_equals_an_uninterrupted_run(trained):
    a, b = load(trained["cwd"] / "a.pt"), load(trained["cwd"] / "b.pt")
    assert b["epoch"] == 2
    assert_same_weights(a, b)


def test_ctrl_c_saves_and_resume_equals_an_uninterrupted_run(trained):
    stopped = trained["c_stopped_at"]
    assert "Interrupted: saved c.pt" in trained["interrupted"] and "Traceback" not in trained["interrupted"]
    assert (stopped["epoch"], stopped["step"]) < (2, 0)
    assert_same_weights(load(trained["cwd"] / "a.pt"), load(trained["cwd"] / "c.pt"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(trained, data_root):
    cwd = trained["cwd"]
    (cwd / "n.pt").write_bytes((cwd / "a.pt").read_bytes())
    cmd = command(
        trained["variant"], "--epochs", "1", "--ckpt", "n.pt", "--overwrite", "--lr", "1e30", data_root=data_root
    )
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NaN or infinite" in result.stderr and "Traceback" not in result.stderr
    assert_same_weights(load(cwd / "a.pt"), load(cwd / "n.pt"))


# ===== Bad input: one line, exit status 2, no traceback =====
BAD_FLAGS = [
    (["--epochs", "0"], "--epochs: must be positive"),
    (["--batch-size", "-1"], "--batch-size: must be positive"),
    (["--lr", "0"], "--lr: must be positive"),
    (["--lr", "abc"], "--lr: expected a float"),
    (["--latent-dim", "0"], "--latent-dim: must be positive"),
    (["--dataset", "cifar10"], "invalid choice: 'cifar10'"),
]


def main_exit(script, argv, capsys):
    module = importlib.import_module(script)
    with pytest.raises(SystemExit) as exc:
        module.main(argv)
    return exc.value.code, capsys.readouterr().err


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("flags, message", BAD_FLAGS)
def test_bad_flags_exit_2(variant, flags, message, capsys):
    code, err = main_exit(VARIANTS[variant][0], VARIANTS[variant][1] + flags, capsys)
    assert code == 2 and message in err


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bad_checkpoints_exit_2(variant, tmp_path, capsys):
    script, extra, *_ = VARIANTS[variant]
    other = "dcgan" if script == "gan" else "gan"
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    torch.save({"script": other, "args": {}}, tmp_path / "other.pt")
    (tmp_path / "exists.pt").write_bytes(b"")
    cases = [
        (["--resume", "--ckpt", str(tmp_path / "missing.pt")], "no checkpoint at"),
        (["--resume", "--ckpt", str(tmp_path / "corrupt.pt")], "is not a readable checkpoint"),
        (["--resume", "--ckpt", str(tmp_path / "other.pt")], f"was written by {other}, not {script}.py"),
        (["--ckpt", str(tmp_path / "exists.pt")], "exists: pass --resume"),
    ]
    for flags, message in cases:
        code, err = main_exit(script, extra + flags, capsys)
        assert code == 2 and message in err, (flags, err)


def test_resume_of_a_finished_run_exits_2(trained, capsys, monkeypatch):
    monkeypatch.chdir(trained["cwd"])
    script, extra, *_ = VARIANTS[trained["variant"]]
    code, err = main_exit(script, extra + ["--resume", "--ckpt", "a.pt", "--epochs", "2"], capsys)
    assert code == 2 and "already has 2 epochs" in err


@pytest.mark.parametrize("script", SCRIPTS)
def test_missing_data_without_network_exits_2(script, tmp_path):
    cmd = command(script, "--epochs", "1", data_root=tmp_path / "empty")
    result = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "FashionMNIST is not in" in result.stderr and "Copy the four official .gz files" in result.stderr
    assert not (tmp_path / "runs").exists()  # a failed start leaves no empty run folder


# ===== WGAN specifics =====
def test_wgan_clips_the_critic_and_logs_the_wasserstein_estimate(trained):
    if trained["variant"] not in ("wgan", "wgan-gp"):
        pytest.skip("WGAN only")
    ckpt = load(trained["cwd"] / "a.pt")
    acc = EventAccumulator(str(trained["cwd"] / ckpt["run_dir"]), size_guidance={"scalars": 0})
    acc.Reload()
    assert len(acc.Scalars("WGAN/Wasserstein")) == 2
    penalty = [e.value for e in acc.Scalars("WGAN/GradientPenalty")]
    if trained["variant"] == "wgan":
        assert ckpt["args"]["clip"] == 0.01 and ckpt["args"]["gp"] is None and ckpt["args"]["lr"] == 5e-5
        assert max(t.abs().max().item() for t in ckpt["D"].values()) <= 0.01
        assert penalty == [0.0, 0.0]
        assert "momentum_buffer" not in str(ckpt["optim_D"]) and "square_avg" in str(ckpt["optim_D"])  # RMSprop
    else:
        assert ckpt["args"]["gp"] == 10 and ckpt["args"]["clip"] is None and ckpt["args"]["lr"] == 1e-4
        assert tuple(ckpt["optim_D"]["param_groups"][0]["betas"]) == (0.5, 0.9)
        assert all(value > 0 for value in penalty)
        assert max(t.abs().max().item() for t in ckpt["D"].values()) > 0.01  # not clipped


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--gp", "10", "--clip", "0.01"], "--clip: not with --gp"),
        (["--beta1", "0.5"], "only for --gp"),
        (["--gp", "0"], "--gp: must be positive"),
        (["--n-critic", "0"], "--n-critic: must be positive"),
        (["--clip", "-1"], "--clip: must be positive"),
        (["--gp", "10", "--beta2", "1.5"], "must be in [0, 1)"),
    ],
)
def test_wgan_rejects_flags_that_do_nothing_in_its_mode(flags, message, capsys):
    code, err = main_exit("wgan", flags, capsys)
    assert code == 2 and message in err


# ===== perturb.py =====
def png_size(rows, cols, scale=2):
    import perturb

    return (
        perturb.LEFT + cols * (28 * scale + perturb.GAP) + perturb.GAP,
        perturb.TOP + rows * (28 * scale + perturb.GAP) + perturb.GAP,
    )


def test_perturb_every_mode_and_size(trained, tmp_path):
    import perturb

    ckpt = str(trained["cwd"] / "a.pt")
    (tmp_path / "z.txt").write_text("# three vectors\n" + "\n".join(" ".join(["0.5"] * 100) for _ in range(3)) + "\n")
    torch.save(torch.randn(2, 100), tmp_path / "z.pt")
    cases = [
        ([], 15, 8),
        (["--mode", "set", "--dims", "0", "99", "--values", "-1", "1"], 4, 8),
        (["--sweep", "4", "--range", "-3", "3", "--steps", "9"], 8, 9),
        (["--interpolate", "--steps", "6"], 4, 6),
        (["--interpolate", "--slerp", "--steps", "5", "--n-samples", "5"], 2, 5),
        (["--samples-only", "--scale", "1"], 1, 8),
        (["--samples-only", "--vectors", str(tmp_path / "z.txt")], 1, 3),
        (["--vectors", str(tmp_path / "z.pt")], 15, 2),
        (["--sweep", "7", "--vectors", str(tmp_path / "z.txt"), "--mode", "set"], 3, 9),
    ]
    for k, (flags, rows, cols) in enumerate(cases):
        out = tmp_path / f"{k}.png"
        perturb.main(["--ckpt", ckpt, "--out", str(out), *flags])
        scale = 1 if "--scale" in flags else 2
        assert Image.open(out).size == png_size(rows, cols, scale), flags


def test_perturb_command_line_default_name_and_determinism(trained, tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes((trained["cwd"] / "a.pt").read_bytes())
    cmd = [sys.executable, str(ROOT / "perturb.py"), "--ckpt", str(ckpt), "--logdir", str(tmp_path / "tb")]
    first = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    png = (tmp_path / "perturb_model.png").read_bytes()
    assert Image.open(tmp_path / "perturb_model.png").size == png_size(15, 8)
    import perturb

    perturb.main(["--ckpt", str(ckpt)])
    assert (tmp_path / "perturb_model.png").read_bytes() == png
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    assert acc.Tags()["images"] == ["perturb/model"]


def test_perturb_non_default_architecture(data_root, tmp_path):
    import perturb

    cmd = command(
        "gan", "--epochs", "1", "--hidden-dim", "32", "--latent-dim", "8", "--ckpt", "small.pt", data_root=data_root
    )
    run_all([cmd], tmp_path)
    perturb.main(["--ckpt", str(tmp_path / "small.pt"), "--dims", "0", "7"])
    assert Image.open(tmp_path / "perturb_small.png").size == png_size(6, 8)


def test_perturb_bad_input_exits_2(trained, tmp_path, capsys):
    import perturb

    ckpt = str(trained["cwd"] / "a.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x00garbage")
    torch.save({"script": "vae", "generator_kwargs": {"latent_dim": 2}, "G": {}}, tmp_path / "vae.pt")
    (tmp_path / "narrow.txt").write_text("1 2 3\n")
    cases = [
        (["--ckpt", str(tmp_path / "missing.pt")], "no file at"),
        (["--ckpt", str(tmp_path / "tensor.pt")], "is not a checkpoint of gan.py"),
        (["--ckpt", str(tmp_path / "garbage.pt")], "is not a checkpoint of ours"),
        (["--ckpt", str(tmp_path / "vae.pt")], "unknown script 'vae'"),
        (["--ckpt", ckpt, "--dims", "100"], "dimension 100 is outside [0, 100)"),
        (["--ckpt", ckpt, "--sweep", "-1"], "dimension -1 is outside"),
        (["--ckpt", ckpt, "--values"], "expected at least one argument"),
        (["--ckpt", ckpt, "--vectors", str(tmp_path / "narrow.txt")], "needs 100 numbers a line"),
        (["--ckpt", ckpt, "--vectors", str(tmp_path / "none.txt")], "cannot read"),
        (["--ckpt", ckpt, "--interpolate", "--n-samples", "1"], "needs at least 2 base vectors"),
    ]
    for flags, message in cases:
        with pytest.raises(SystemExit) as exc:
            perturb.main(flags)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err, (flags, err)


# ===== evaluate.py =====
def evaluate(argv, capsys):
    import evaluate

    evaluate.main(argv)
    captured = capsys.readouterr()
    return [line for line in captured.out.splitlines() if line.startswith("| ")], captured.err


def test_evaluate_scores_every_script(trained, data_root, capsys):
    ckpt = str(trained["cwd"] / "a.pt")
    lines, _ = evaluate([ckpt, "--data-root", str(data_root), "--n", "256", "--classifier-steps", "20"], capsys)
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [r[0] for r in body] == ["real data", ckpt] and all(float(r[4]) >= 0 for r in body)


def test_evaluate_table_json_determinism_and_cache(trained, data_root, tmp_path, capsys):
    if trained["variant"] != "gan":
        pytest.skip("the table, cache and JSON do not depend on the script: checked once")
    ckpt = str(trained["cwd"] / "a.pt")
    mnist = load(ckpt)
    mnist["args"]["dataset"] = "mnist"  # the same generator, scored against MNIST: one call, two datasets
    torch.save(mnist, tmp_path / "as_mnist.pt")
    argv = [
        ckpt,
        str(tmp_path / "as_mnist.pt"),
        "--data-root",
        str(data_root),
        "--n",
        "256",
        "--classifier-steps",
        "20",
    ]
    lines, err = evaluate([*argv, "--json", str(tmp_path / "scores.json")], capsys)
    assert "test accuracy" in err
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["checkpoint", "dataset", "epochs", "flags", "FID (clf)", "precision", "recall"] + [
        "classes covered",
        "KL",
        "confidence",
    ]
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [(r[0], r[1]) for r in body] == [
        ("real data", "fashion-mnist"),
        (ckpt, "fashion-mnist"),
        ("real data", "mnist"),
        (str(tmp_path / "as_mnist.pt"), "mnist"),
    ]
    assert body[1][2] == "2" and body[1][7].endswith("/10")
    data = json.loads((tmp_path / "scores.json").read_text())
    assert set(data["classifier_test_accuracy"]) == {"fashion-mnist", "mnist"}
    for row in data["rows"]:
        assert 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1 and row["fid"] >= 0 and row["n"] == 256
        assert 0 <= row["kl_uniform"] <= math.log(10) + 1e-9 and 0 <= row["classes_covered"] <= 10
    # Cached classifier: the same numbers. A corrupt cache is retrained (deterministically), not trusted.
    again, err = evaluate(argv, capsys)
    assert again == lines and "(cached)" in err
    cache = data_root / "FashionMNIST" / "evaluate_classifier.pt"
    cache.write_bytes(cache.read_bytes()[:-10] + b"corrupted!")
    third, err = evaluate(argv, capsys)
    assert "not trusted" in err and third == lines
    stale, err = evaluate([*argv[:-1], "21"], capsys)  # other training steps: the cached model is stale
    assert "not trusted" in err


def test_evaluate_export_writes_pngs(trained, data_root, tmp_path, capsys):
    if trained["variant"] != "gan":
        pytest.skip("checked once")
    ckpt = str(trained["cwd"] / "a.pt")
    argv = [ckpt, "--data-root", str(data_root), "--n", "256", "--classifier-steps", "20", "--export", str(tmp_path)]
    evaluate(argv, capsys)
    files = sorted((tmp_path / "a").glob("*.png"))
    assert len(files) == 256 and Image.open(files[0]).size[0] >= 28


def test_evaluate_bad_input_exits_2(trained, data_root, tmp_path, capsys):
    if trained["variant"] != "gan":
        pytest.skip("checked once")
    import evaluate as ev

    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    ckpt = str(trained["cwd"] / "a.pt")
    cases = [
        ([str(tmp_path / "missing.pt")], "no checkpoint at"),
        ([str(tmp_path / "foreign.pt")], "is not a checkpoint of gan.py"),
        ([ckpt, "--n", "10"], "too few for a 128-d covariance"),
        ([ckpt, "--data-root", str(tmp_path / "empty")], "is not in"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exc:
            ev.main([*argv, "--classifier-steps", "20"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err, (argv, err)
