"""Offline smoke tests: tiny datasets in the real IDX format, every script run through its command line.

    python -m pytest -q test_smoke.py

No test downloads anything: each subprocess gets a proxy on a closed loopback port, so a download
attempt fails at once instead of reaching the network.
"""

import argparse
import contextlib
import errno
import gzip
import hashlib
import importlib
import io
import json
import math
import os
import re
import runpy
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}
# One thread each: the tests run two scripts side by side, and 2x2 OpenMP threads on 2 cores crawl.
ENV = {**os.environ, **OFFLINE, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
# variant -> (script, extra flags, TensorBoard tag prefix, batch size, training images). gan gets 20 steps an
# epoch; the convolutional ones 2 small ones, as their time goes to the convolutions of every image.
VARIANTS = {
    "gan": ("gan", [], "GAN", 16, 320),
    "dcgan": ("dcgan", [], "DCGAN", 16, 32),
    "wgan": ("wgan", ["--n-critic", "2"], "WGAN", 16, 32),
    "wgan-gp": ("wgan", ["--gp", "10", "--n-critic", "2"], "WGAN", 16, 32),
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


def tiny_data_root(root, n_train):
    for seed, name in enumerate(["FashionMNIST", "MNIST"]):
        raw = root / name / "raw"
        raw.mkdir(parents=True)
        # Uncompressed files: torchvision uses them as they are (a .gz would be md5-checked against the real one).
        for split, n in [("train", n_train), ("t10k", 100)]:
            images, labels = tiny_split(n, seed * 10 + len(split))
            write_idx(raw / f"{split}-images-idx3-ubyte", images)
            write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    return tiny_data_root(tmp_path_factory.mktemp("data"), 320)


@pytest.fixture(scope="session")
def small_data_root(tmp_path_factory):
    return tiny_data_root(tmp_path_factory.mktemp("small_data"), 32)


# ===== Helpers =====
def command(variant, *flags, data_root):
    script, extra, _, batch, _ = VARIANTS[variant]
    fast = ["--batch-size", str(batch), "--log-every", "2"]
    return [sys.executable, str(ROOT / f"{script}.py"), *extra, "--data-root", str(data_root), *fast, *flags]


def interrupted_run(cmd, cwd, after=1):
    """Starts a run, sends Ctrl-C after its `after`-th progress line, and returns (status, output)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if len(step_lines("".join(lines))) == after:
            proc.send_signal(signal.SIGINT)
            break
    rest, _ = proc.communicate(timeout=300)
    next_second()
    return proc.returncode, "".join(lines) + rest


def next_second():
    """Waits for the clock's next second, before a resume that writes into the same run folder.

    TensorBoard reads a folder's event files in name order, and a name is the second it was opened in, then the pid,
    then a count of the process's writers: a resume that opened its file within the same second would be read first,
    its steps first, if its pid is lower (an in-process resume of a subprocess's run) or its count has one digit more
    (writer 10 after writer 9 of this process). A real resume starts seconds later."""
    time.sleep(1 - time.time() % 1)


def step_lines(output):
    return [line for line in output.splitlines() if "| Step " in line]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def run_main(script, argv):
    """Runs a script's main() in this process (no torch import to pay), which must leave the signal handlers as it
    found them however it ends: a notebook that calls main() needs its Ctrl-C back."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        importlib.import_module(script).main(argv)
    finally:
        left = {signum: signal.getsignal(signum) for signum in handlers}
        for signum, handler in handlers.items():  # the next test's, whatever happened
            signal.signal(signum, handler)
        assert left == handlers, f"{script}.main() left its signal handlers installed"


def run_quietly(script, argv):
    """run_main on one thread, as the subprocesses run (OMP_NUM_THREADS=1): the same arithmetic, bit for bit."""
    threads, out = torch.get_num_threads(), io.StringIO()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out):
            run_main(script, argv)
    finally:
        torch.set_num_threads(threads)
    return out.getvalue()


def events(run_dir):
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def tensorboard_writers():
    """TensorBoard's writer threads still running: a daemon each, whose unwritten events die with the process."""
    return {thread for thread in threading.enumerate() if type(thread).__name__ == "_AsyncWriterThread"}


def pixels(png):
    """A PNG, as a path or as bytes, as a uint8 tensor (channels, height, width)."""
    return torchvision.transforms.functional.pil_to_tensor(
        Image.open(io.BytesIO(png) if isinstance(png, bytes) else png)
    )


def shows(figure, tile):
    """Whether the PNG figure holds the PIL image tile, pixel for pixel, somewhere."""
    figure, tile = (torchvision.transforms.functional.pil_to_tensor(f)[0] for f in (Image.open(figure), tile))
    (h, w), r = tile.shape, max(range(tile.size(0)), key=lambda i: len(set(tile[i].tolist())))  # its busiest line
    line = tile[r].numpy().tobytes()
    for y in range(r, figure.size(0) - h + r + 1):  # where that line could lie, then the whole tile
        row, x = figure[y].numpy().tobytes(), -1
        while (x := row.find(line, x + 1)) >= 0:
            if torch.equal(figure[y - r : y - r + h, x : x + w], tile):
                return True
    return False


def run_dir_of(trained, name):
    return Path(load(trained["cwd"] / name)["run_dir"])


def assert_same_weights(a, b):
    for net in ["G", "D"]:
        assert a[net].keys() == b[net].keys()
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs"


@pytest.fixture(scope="session", params=list(VARIANTS))
def trained(request, data_root, small_data_root, tmp_path_factory):
    """For one variant: a straight 2-epoch run, 1 epoch + --resume to 2, and a Ctrl-C'd run resumed to 2."""
    variant, cwd = request.param, tmp_path_factory.mktemp(request.param)
    data_root = data_root if VARIANTS[variant][4] == 320 else small_data_root
    cmd = lambda *flags: command(variant, *flags, data_root=data_root)  # noqa: E731

    def run(name, *flags):  # in this process: a subprocess spends ~6 s importing torch and torchvision
        argv = [*cmd(*flags)[2:], "--ckpt", str(cwd / name), "--logdir", str(cwd / "runs")]
        return run_quietly(VARIANTS[variant][0], argv)

    with ThreadPoolExecutor(1) as pool:  # the Ctrl-C run needs a real process to signal; it runs beside the others
        interrupted_job = pool.submit(interrupted_run, cmd("--epochs", "2", "--ckpt", "c.pt", "--log-every", "1"), cwd)
        straight, first = run("a.pt", "--epochs", "2"), run("b.pt", "--epochs", "1")
        next_second()
        run("b.pt", "--epochs", "2", "--resume")
        rc, interrupted = interrupted_job.result()
    assert rc == 130, interrupted
    c_stopped_at = load(cwd / "c.pt")
    run("c.pt", "--epochs", "2", "--resume")
    return {
        "variant": variant,
        "cwd": cwd,
        "straight": straight,
        "first": first,
        "interrupted": interrupted,
        "c_stopped_at": c_stopped_at,
        "tag": VARIANTS[variant][2],
        "steps": VARIANTS[variant][4] // VARIANTS[variant][3],
        "data_root": data_root,
    }


# ===== The algorithm, pinned: each objective moves the intended way =====
def small_nets(script, seed=0):
    """The script's own networks (gan.py's at a small width), seeded, with the script's optimisers."""
    module = importlib.import_module(script)
    torch.manual_seed(seed)
    if script == "gan":
        G, D = module.Generator(16, 32, 784), module.Discriminator(784, 32)
    else:
        G, D = module.Generator(16), module.Discriminator()
    if script == "wgan":
        with torch.no_grad():  # start from a critic that clipping already allows
            for p in D.parameters():
                p.clamp_(-0.01, 0.01)
    return module, G, D


def real_batch(n=32, seed=0):
    images, _ = tiny_split(n, seed)
    import gan

    return gan.to_unit(images.unsqueeze(1))


def d_step(script, module, G, D, real, real_label=1.0, optim_D=None):
    optim_D = optim_D or torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    if script == "wgan":
        return module.train_discriminator(real, D, G, optim_D, 16, 0.01, None)
    return module.train_discriminator(real, D, G, torch.nn.BCELoss(), optim_D, 16, real_label)


def g_step(script, module, G, D, optim_G):
    if script == "wgan":
        return module.train_generator(D, G, optim_G, 32, 16, "cpu")
    return module.train_generator(D, G, torch.nn.BCELoss(), optim_G, 32, 16, "cpu")


def scores_of(D, G, real, z, flat):
    with torch.no_grad():
        fake = G(z)
        return D(real.flatten(1) if flat else real).mean().item(), D(fake.flatten(1) if flat else fake).mean().item()


# The handout's networks, layer by layer (its D pads the 5x5 convolutions by 2: 28 -> 14 -> 7, so Linear(64*7*7, 1024)).
CONV_G = ["Linear(100, 1024)", "BatchNorm1d(1024)", "ReLU", "Linear(1024, 6272)", "BatchNorm1d(6272)", "ReLU"]
CONV_G += ["ConvTranspose2d(128, 64, 4, 2, 1)", "BatchNorm2d(64)", "ReLU", "ConvTranspose2d(64, 1, 4, 2, 1)", "Tanh"]
CONV_D = ["Conv2d(1, 32, 5, 1, 2)", "LeakyReLU(0.1)", "MaxPool2d(2, 2)", "Conv2d(32, 64, 5, 1, 2)", "LeakyReLU(0.1)"]
CONV_D += ["MaxPool2d(2, 2)", "Linear(3136, 1024)", "LeakyReLU(0.1)", "Linear(1024, 1)", "Sigmoid"]
HANDOUT_NETWORKS = {
    "gan": (
        ["Linear(100, 256)", "ReLU", "Linear(256, 256)", "ReLU", "Linear(256, 784)", "Tanh"],
        ["Linear(784, 256)", "LeakyReLU(0.1)", "Linear(256, 256)", "LeakyReLU(0.1)", "Linear(256, 1)", "Sigmoid"],
    ),
    "dcgan": (CONV_G, CONV_D),
    "wgan": (CONV_G, CONV_D[:-1]),  # the critic: no Sigmoid
}


def layers(net):
    """Each layer as the handout writes it: its type and the numbers that define it."""
    out = []
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            out.append(f"Linear({m.in_features}, {m.out_features})")
        elif isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            sizes = (m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0])
            out.append(f"{type(m).__name__}{sizes}")
        elif isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            out.append(f"{type(m).__name__}({m.num_features})")
        elif isinstance(m, torch.nn.LeakyReLU):
            out.append(f"LeakyReLU({m.negative_slope})")
        elif isinstance(m, torch.nn.MaxPool2d):
            out.append(f"MaxPool2d({m.kernel_size}, {m.stride})")
        elif not list(m.children()):
            out.append(type(m).__name__)
    return out


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_networks_are_the_handouts(script):
    module = importlib.import_module(script)
    _, args, _ = module.parse_args([])
    if script == "gan":
        G, D = module.Generator(args.latent_dim, args.hidden_dim, 784), module.Discriminator(784, args.hidden_dim)
    else:
        G, D = module.Generator(args.latent_dim), module.Discriminator()
    assert (layers(G), layers(D)) == HANDOUT_NETWORKS[script]
    images = G.eval()(torch.randn(4, args.latent_dim))  # and forward() chains them: the shapes fit end to end
    assert images.shape == ((4, 784) if script == "gan" else (4, 1, 28, 28))
    assert D(images).shape == (4, 1)


# The lab text's hyper-parameters (with --gp, those of the WGAN-GP paper's MNIST code), as each script's defaults.
ADAM = {"lr": 2e-4, "lr_d": None, "beta1": 0.5, "beta2": 0.999}
HANDOUT_DEFAULTS = [
    (
        "gan",
        [],
        {"epochs": 30, "batch_size": 128, "latent_dim": 100, "hidden_dim": 256, "label_smoothing": 0.0, **ADAM},
    ),
    ("dcgan", [], {"epochs": 30, "batch_size": 128, "latent_dim": 100, "label_smoothing": 0.0, **ADAM}),
    ("wgan", [], {"epochs": 30, "batch_size": 128, "latent_dim": 100, "lr": 5e-5, "n_critic": 5, "clip": 0.01}),
    ("wgan", ["--gp", "10"], {"lr": 1e-4, "beta1": 0.5, "beta2": 0.9, "n_critic": 5, "clip": None, "gp": 10.0}),
]


@pytest.mark.parametrize("script, flags, expected", HANDOUT_DEFAULTS, ids=["gan", "dcgan", "wgan", "wgan-gp"])
def test_the_defaults_are_the_handouts_hyper_parameters(script, flags, expected):
    _, args, _ = importlib.import_module(script).parse_args(flags)
    assert args.dataset == "fashion-mnist" and {key: vars(args)[key] for key in expected} == expected


@pytest.mark.parametrize("script", [*SCRIPTS, "perturb", "evaluate"])
def test_help_names_each_flag_in_kebab_case_and_states_its_default(script, monkeypatch):
    """--help is what a student reads first: no flag's default shown as "None", none left unsaid."""
    parsers = []
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", lambda p, *a, **k: sys.exit(parsers.append(p)))
    with pytest.raises(SystemExit):
        importlib.import_module(script).parse_args([])
    p = parsers[0]
    assert "None" not in p.format_help() and "(default: False)" not in p.format_help()
    for action in p._actions:
        if not action.option_strings or action.default == argparse.SUPPRESS:  # a positional, or -h
            continue
        help_text = p._get_formatter()._format_action(action)
        assert all(re.fullmatch(r"--[a-z0-9]+(-[a-z0-9]+)*", flag) for flag in action.option_strings), help_text
        if action.default is not None and action.default is not False:  # None, False: unset, off (its text says)
            assert re.search(r"\bdefault: \S", help_text), help_text


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_d_step_raises_d_on_real_and_lowers_it_on_fake(script):
    module, G, D = small_nets(script)
    real, z, flat = real_batch(), torch.randn(32, 16, generator=torch.Generator().manual_seed(1)), script == "gan"
    G.eval()  # the same fakes before and after: batch norm in eval mode
    real_before, fake_before = scores_of(D, G, real, z, flat)
    for _ in range(3):
        d_step(script, module, G, D, real)
    real_after, fake_after = scores_of(D, G, real, z, flat)
    if script == "wgan":  # a critic is defined up to a constant: only the gap between real and fake is its objective
        assert real_after - fake_after > real_before - fake_before
    else:
        assert real_after > real_before and fake_after < fake_before, (real_before, real_after, fake_before, fake_after)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_g_step_raises_d_of_g_of_z(script):
    module, G, D = small_nets(script)
    z, flat = torch.randn(32, 16, generator=torch.Generator().manual_seed(1)), script == "gan"
    optim_G = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))

    def d_of_g():
        G.eval()
        with torch.no_grad():
            fake = G(z)
            score = D(fake.flatten(1) if flat else fake).mean().item()
        G.train()
        return score

    before = d_of_g()
    for _ in range(3):
        g_step(script, module, G, D, optim_G)
    assert d_of_g() > before
    assert all(p.grad is None for p in D.parameters())  # the G step leaves D alone


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_step_starts_from_zero_gradients(script):
    """Two steps on the same batch and noise at lr 0 leave the same gradients, not the sum of both."""
    module, G, D = small_nets(script)
    real = real_batch()
    steps = [
        (D, lambda opt: d_step(script, module, G, D, real, optim_D=opt)),
        (G, lambda opt: g_step(script, module, G, D, opt)),
    ]
    for net, step in steps:
        optimiser, grads = torch.optim.SGD(net.parameters(), lr=0.0), []
        for _ in range(2):
            torch.manual_seed(1)  # the same noise
            step(optimiser)
            grads.append([p.grad.clone() for p in net.parameters()])
        assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True)), net.__class__.__name__


@pytest.mark.parametrize("script", ["gan", "dcgan"])
@pytest.mark.parametrize("real_label", [1.0, 0.9])
def test_the_d_loss_is_bce_with_real_label_and_fake_label_0_and_the_g_loss_with_label_1(script, real_label):
    """Label smoothing is one-sided and D's alone: G's target stays 1 (the non-saturating loss, -log D(G(z)))."""
    module, G, D = small_nets(script)
    real, flat = real_batch(), script == "gan"
    state = torch.get_rng_state()
    z_d, z_g = torch.randn(32, 16), torch.randn(32, 16)  # the noise the D step, then the G step, will draw
    torch.set_rng_state(state)
    with torch.no_grad():
        G.train()
        out_real, out_fake, out_g = D(real.flatten(1) if flat else real), D(G(z_d)), D(G(z_g))
        bce = torch.nn.functional.binary_cross_entropy
        expected_d = bce(out_real, torch.full_like(out_real, real_label)) + bce(out_fake, torch.zeros_like(out_fake))
        expected_g = -out_g.log().mean()
    optim_D, optim_G = torch.optim.SGD(D.parameters(), lr=0.0), torch.optim.SGD(G.parameters(), lr=0.0)
    loss_D, loss_G, _, _ = module.train_step(real, D, G, torch.nn.BCELoss(), optim_D, optim_G, 16, real_label)
    assert loss_D.item() == pytest.approx(expected_d.item(), rel=1e-5)
    assert loss_G.item() == pytest.approx(expected_g.item(), rel=1e-5)


@pytest.mark.parametrize("script", ["gan", "dcgan"])
def test_label_smoothing_reaches_the_d_step(script, data_root, small_data_root, tmp_path):
    _, _, _, batch, n_images = VARIANTS[script]
    data_root = data_root if n_images == 320 else small_data_root
    argv = ["--data-root", str(data_root), "--batch-size", str(batch), "--epochs", "1"]
    argv += ["--hidden-dim", "32"] if script == "gan" else []
    for name, smoothing in [("plain.pt", "0"), ("smooth.pt", "0.1")]:
        flags = ["--label-smoothing", smoothing, "--ckpt", str(tmp_path / name), "--logdir", str(tmp_path / "runs")]
        run_quietly(script, [*argv, *flags])
    plain, smooth = load(tmp_path / "plain.pt"), load(tmp_path / "smooth.pt")
    assert smooth["args"]["label_smoothing"] == 0.1
    first = next(iter(plain["D"]))  # D's first layer: moved by every D step's loss
    assert not torch.equal(plain["D"][first], smooth["D"][first])


@pytest.mark.parametrize("variant", ["gan", "dcgan", "wgan-gp"])
def test_adam_betas_reach_both_optimisers(variant, data_root, small_data_root, tmp_path):
    script, extra, _, batch, n_images = VARIANTS[variant]
    data_root = data_root if n_images == 320 else small_data_root
    argv = [*extra, "--data-root", str(data_root), "--batch-size", str(batch), "--epochs", "1"]
    argv += ["--beta1", "0.0", "--beta2", "0.95", "--ckpt", str(tmp_path / "b.pt"), "--logdir", str(tmp_path / "runs")]
    run_quietly(script, argv)
    saved = load(tmp_path / "b.pt")
    assert [tuple(saved[key]["param_groups"][0]["betas"]) for key in ("optim_G", "optim_D")] == [(0.0, 0.95)] * 2


def test_wgan_clip_and_penalty_weight_reach_the_critic_step():
    import wgan

    G = wgan.Generator(16).eval()
    real = real_batch(16)
    for clip in [0.01, 0.05]:  # the critic's initial weights reach about 0.2: each bound is met, none passed
        torch.manual_seed(0)
        D = wgan.Discriminator()
        wgan.train_discriminator(real, D, G, torch.optim.RMSprop(D.parameters(), lr=5e-5), 16, clip, None)
        assert max(p.abs().max().item() for p in D.parameters()) == pytest.approx(clip)
    losses = []
    for gp in [5.0, 10.0]:  # a 2-Lipschitz linear critic: the penalty is exactly 1, so loss_D moves by the change in gp
        torch.manual_seed(0)  # the same fakes and interpolates for both
        D = LinearCritic(2.0)
        loss_D, wasserstein, penalty = wgan.train_discriminator(
            real, D, G, torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9)), 16, None, gp
        )
        assert penalty.item() == pytest.approx(1, rel=1e-5) and loss_D.item() == pytest.approx(-wasserstein.item() + gp)
        losses.append(loss_D.item())
    assert losses[1] - losses[0] == pytest.approx(5.0, rel=1e-5)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lr_d_moves_d_alone(variant, data_root, small_data_root, tmp_path):
    """--lr-d 1e-9 must freeze D (as --lr 1e-9 does) and leave G training at --lr: D's own rate, not G's."""
    script, extra, _, batch, n_images = VARIANTS[variant]
    data_root = data_root if n_images == 320 else small_data_root
    argv = [*extra, "--data-root", str(data_root), "--batch-size", str(batch), "--epochs", "1"]
    nets = {}
    for name, flags in [("slow_d", ["--lr-d", "1e-9"]), ("slow_both", ["--lr", "1e-9"])]:
        ckpt = tmp_path / f"{name}.pt"
        run_quietly(script, [*argv, *flags, "--ckpt", str(ckpt), "--logdir", str(tmp_path / "runs")])
        nets[name] = load(ckpt)

    def largest_change(net):  # parameters only: batch-norm statistics move at any rate
        a, b = nets["slow_d"][net], nets["slow_both"][net]
        return max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point() and "running" not in k)

    assert largest_change("D") < 1e-6  # D moved by at most a few steps of 1e-9 in both runs
    assert largest_change("G") > 1e-4  # G trained at the default rate in one, hardly at all in the other


def test_wgan_losses_have_the_papers_signs():
    import wgan

    module, G, D = small_nets("wgan")
    real = real_batch()
    state = torch.get_rng_state()
    loss_D, w, _ = d_step("wgan", module, G, D, real)
    torch.set_rng_state(state)
    assert loss_D.item() == pytest.approx(-w.item())  # critic loss = mean D(fake) - mean D(real)
    assert max(p.abs().max().item() for p in D.parameters()) <= 0.01  # clipped after the step
    optim_G = torch.optim.RMSprop(G.parameters(), lr=1e-4)
    G.eval()
    with torch.no_grad():
        state = torch.get_rng_state()
        expected = -D(G(torch.randn(32, 16))).mean().item()
        torch.set_rng_state(state)
    G.eval()
    loss_G = wgan.train_generator(D, G, optim_G, 32, 16, "cpu")
    assert loss_G.item() == pytest.approx(expected, rel=1e-5)


class LinearCritic(torch.nn.Module):
    """D(x) = <w, x> with |w| = scale: its gradient norm is `scale` everywhere."""

    def __init__(self, scale):
        super().__init__()
        w = torch.randn(784, generator=torch.Generator().manual_seed(0))
        self.w = torch.nn.Parameter(w / w.norm() * scale)

    def forward(self, x):
        return x.flatten(1) @ self.w


def test_the_gradient_penalty_is_per_sample_and_trains_the_critic():
    import wgan

    real, fake = real_batch(16), real_batch(16, seed=1)
    assert wgan.gradient_penalty(LinearCritic(1.0), real, fake).item() == pytest.approx(0, abs=1e-8)
    assert wgan.gradient_penalty(LinearCritic(2.0), real, fake).item() == pytest.approx(1, rel=1e-5)
    # Two-sided, as in the paper: a critic flatter than 1-Lipschitz is pulled back up too (not only norms above 1).
    assert wgan.gradient_penalty(LinearCritic(0.5), real, fake).item() == pytest.approx(0.25, rel=1e-5)
    _, _, D = small_nets("wgan")
    wgan.gradient_penalty(D, real, fake).backward()  # needs create_graph: the penalty must reach D's weights
    weights = [p for name, p in D.named_parameters() if name.endswith("weight")]  # biases do not move grad_x D
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)


def test_the_gradient_penalty_is_taken_on_the_segments_between_real_and_fake():
    import wgan

    seen = []

    class Recording(LinearCritic):
        def forward(self, x):
            seen.append(x.detach().flatten(1))
            return super().forward(x)

    real, fake = real_batch(64), real_batch(64, seed=1)
    wgan.gradient_penalty(Recording(1.0), real, fake)
    gap, offset = (real - fake).flatten(1), seen[0] - fake.flatten(1)
    t = (offset * gap).sum(1) / gap.square().sum(1)  # where on its segment each point lies
    assert torch.allclose(offset, t[:, None] * gap, atol=1e-5)  # on the line through real and fake: one eps per image
    assert (t >= 0).all() and (t <= 1).all()  # between the two, not beyond
    assert t.std() > 0.15  # a weight of its own for each pair (uniform on [0, 1] has std 0.29)


def test_each_wgan_critic_step_draws_a_fresh_batch_and_the_step_logs_their_means(monkeypatch):
    import wgan

    batches, returned, critic_step = [], [], wgan.train_discriminator

    def recording(real_images, *rest):
        batches.append(real_images)
        returned.append(torch.stack(critic_step(real_images, *rest)))
        return returned[-1].unbind()

    monkeypatch.setattr(wgan, "train_discriminator", recording)
    _, G, D = small_nets("wgan")
    images = tiny_split(320, 0)[0].unsqueeze(1)
    optim_D, optim_G = torch.optim.RMSprop(D.parameters(), lr=5e-5), torch.optim.RMSprop(G.parameters(), lr=5e-5)
    logged = wgan.train_step(images, D, G, optim_D, optim_G, 32, 16, 3, 0.01, None)
    assert len(batches) == 3 and all(b.shape == (32, 1, 28, 28) for b in batches)
    # The critic's loss, W and penalty are means over its steps; the handout's sum prints five times the value.
    assert torch.allclose(logged[[0, 2, 3]], torch.stack(returned).mean(0))
    assert not torch.equal(batches[0], batches[1]) and not torch.equal(batches[1], batches[2])  # the handout's reuse
    assert all(b.min() >= -1 and b.max() <= 1 and b.min() < 0 for b in batches)  # real images, scaled to [-1, 1]
    drawn, first = torch.cat(batches).flatten(1), wgan.to_unit(images[:32]).flatten(1)
    assert not (drawn[:, None] == first[None]).all(2).any(1).all()  # from all 320 images, not the first batch's 32


# ===== The small pure pieces, exactly =====
@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("dataset, seed", [("fashion-mnist", 0), ("mnist", 1)])
def test_each_dataset_trains_on_its_own_training_split(script, dataset, seed, data_root):
    module = importlib.import_module(script)
    p, args, _ = module.parse_args(["--dataset", dataset, "--data-root", str(data_root)])
    images = module.load_images(p, args, torch.device("cpu"))
    assert torch.equal(images, tiny_split(320, seed * 10 + len("train"))[0].unsqueeze(1))  # tiny_data_root's


def test_images_are_scaled_to_minus_one_one():
    import gan

    assert gan.to_unit(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]


def test_the_epoch_order_is_a_fresh_permutation_each_epoch_and_repeats_per_seed_and_epoch():
    import gan

    first, second = gan.epoch_order(100, 0, 0, "cpu"), gan.epoch_order(100, 0, 1, "cpu")
    assert sorted(first.tolist()) == list(range(100)) and not torch.equal(first, second)
    assert torch.equal(first, gan.epoch_order(100, 0, 0, "cpu"))
    assert not torch.equal(first, gan.epoch_order(100, 1, 0, "cpu"))
    orders = {(s, e): tuple(gan.epoch_order(100, s, e, "cpu").tolist()) for s in range(3) for e in range(-1, 31)}
    assert len(set(orders.values())) == len(orders)  # no seed replays another's epochs shifted (as seed + epoch would)


@pytest.mark.parametrize("script", ["dcgan", "wgan"])
def test_sampling_is_independent_of_the_batch_and_leaves_batch_norm_alone(script):
    module, G, _ = small_nets(script)
    G.train()
    z = torch.randn(8, 16)
    buffers = {k: v.clone() for k, v in G.state_dict().items()}
    alone = torch.cat([module.sample(G, z[i : i + 1]) for i in range(8)])
    assert torch.allclose(module.sample(G, z), alone, atol=1e-5)
    assert all(torch.equal(buffers[k], v) for k, v in G.state_dict().items()) and G.training


def test_perturb_and_evaluate_use_the_generator_in_eval_mode(trained, tmp_path):
    if trained["variant"] != "dcgan":
        pytest.skip("a batch-norm generator shows it")
    import evaluate as ev
    import perturb

    G, latent = perturb.load_generator(None, str(trained["cwd"] / "a.pt"))
    assert not G.training
    _, G = ev.load_checkpoint(None, str(trained["cwd"] / "a.pt"))
    G.train()
    assert torch.allclose(ev.generate(G, 100, 10, 0, batch=10)[:2], ev.generate(G, 100, 10, 0, batch=2)[:2], atol=1e-5)


def figure_args(**overrides):
    base = dict(samples_only=False, sweep=None, interpolate=False, slerp=False, mode="add", steps=3)
    return argparse.Namespace(**{**base, "dims": [1], "values": [-2.0, 3.0], "range": [-1.0, 1.0], **overrides})


def test_perturb_figure_vectors():
    import perturb

    z = torch.arange(8.0).view(2, 4)
    grid, labels, _ = perturb.figure(figure_args(), z)
    assert grid[0, :, 1].tolist() == [-1.0, 3.0] and grid[1, :, 1].tolist() == [4.0, 8.0]  # add
    assert torch.equal(grid[:, :, [0, 2, 3]], z[:, [0, 2, 3]].expand(2, 2, 3)) and labels == ["dim 1 -2", "dim 1 +3"]
    grid, _, _ = perturb.figure(figure_args(mode="set"), z)
    assert grid[:, :, 1].tolist() == [[-2.0, -2.0], [3.0, 3.0]]  # set
    grid, _, _ = perturb.figure(figure_args(sweep=2), z)
    assert grid[0, :, 2].tolist() == [1.0, 2.0, 3.0] and grid[1, :, 2].tolist() == [5.0, 6.0, 7.0]  # 2 + [-1, 0, 1]
    for slerp in [False, True]:
        grid, _, _ = perturb.figure(figure_args(interpolate=True, slerp=slerp), z)
        assert torch.allclose(grid[0, 0], z[0]) and torch.allclose(grid[0, -1], z[1])  # the end points
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    assert perturb.slerp(a, b, 0.5).norm().item() == pytest.approx(3.0)  # on the sphere, not inside it
    zero = torch.zeros(2)
    assert torch.equal(perturb.slerp(zero, b, 0.0), zero) and torch.equal(perturb.slerp(zero, b, 1.0), b)


def test_evaluate_metrics_on_constructed_features():
    import evaluate as ev

    g = torch.Generator().manual_seed(0)
    ref = torch.randn(400, 8, generator=g)
    tight = torch.randn(400, 8, generator=g) * 0.05  # all samples in one small, realistic spot
    one_class = torch.zeros(400, 10)
    one_class[:, 3] = 10.0
    score = lambda features, logits: ev.scores(features, logits, ref, ev.knn_radii(ref, 5), 5)  # noqa: E731
    s = score(tight, one_class)
    assert s["precision"] > 0.9 and s["recall"] < 0.1
    assert s["classes_covered"] == 1 and s["kl_uniform"] == pytest.approx(math.log(10))
    assert s["confidence"] == pytest.approx(1 / (1 + 9 * math.exp(-10)))  # the top softmax probability, not a logit
    balanced = torch.eye(10).repeat(40, 1) * 10
    s = score(ref.clone(), balanced)
    assert s["classes_covered"] == 10 and s["kl_uniform"] == pytest.approx(0, abs=1e-12)
    assert s["fid"] == pytest.approx(0, abs=1e-6) and s["precision"] == 1 and s["recall"] == 1
    uneven = torch.eye(10)[[0] * 20 + [1] * 19 + list(range(2, 9)) * 40 + [9] * 81] * 10  # 400 samples
    s = score(ref, uneven)
    assert s["classes_covered"] == 9  # 20, half of a fair 40, counts; 19 does not
    assert s["class_shares"][:2] == [20 / 400, 19 / 400] and s["class_shares"][9] == 81 / 400


def test_evaluate_precision_and_recall_on_points_of_a_line():
    import evaluate as ev

    ref = torch.arange(10.0)[:, None]  # 0, 1, ..., 9: each one's nearest other point is 1 away
    fake = torch.tensor([[x + 0.5] for x in range(9)] + [[20.0]])  # 0.5, ..., 8.5 in between, and one far off
    assert ev.knn_radii(ref, 1).tolist() == [1.0] * 10  # the k-th neighbour other than the point itself
    assert ev.coverage(fake, ref, ev.knn_radii(ref, 1)) == pytest.approx(0.9)  # precision: all but the far one
    assert ev.coverage(ref, fake, ev.knn_radii(fake, 1)) == 1.0  # recall: the far one's ball (11.5) reaches 9
    assert ev.knn_radii(ref, 3).tolist() == [3.0, 2.0] + [2.0] * 6 + [2.0, 3.0]  # ends reach inward only
    # Through scores(), which takes k for recall's balls: two tight pairs, at 0 and 5, reach 0.2 at k = 1 and reach
    # the other pair at k = 2.
    pairs, line = torch.tensor([[0.0, 0], [0.2, 0], [5, 0], [5.2, 0]]), torch.cat([ref, torch.zeros(10, 1)], 1)
    recall = [ev.scores(pairs, torch.eye(10)[:4], line, ev.knn_radii(line, k), k)["recall"] for k in (1, 2)]
    assert recall == [pytest.approx(0.2), 1.0]  # k = 1: only 0 and 5 are within 0.2 of a sample


def with_moments(x, mean, cov):
    """x moved so that its sample mean and covariance are exactly `mean` and `cov`."""
    x = x.double() - x.double().mean(0)
    white = x @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(x.T))).T  # sample covariance: exactly I
    return white @ torch.linalg.cholesky(cov.double()).T + mean.double()


def test_evaluate_frechet_distance_matches_its_closed_form():
    import evaluate as ev

    g = torch.Generator().manual_seed(0)
    # Diagonal covariances: FID = |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2.
    a = with_moments(torch.randn(500, 3, generator=g), torch.tensor([1.0, 0, 0]), torch.diag(torch.tensor([4.0, 1, 9])))
    b = with_moments(torch.randn(500, 3, generator=g), torch.tensor([0.0, 2, 0]), torch.diag(torch.tensor([1.0, 1, 1])))
    assert ev.frechet_distance(a, b) == pytest.approx(1 + 4 + (2 - 1) ** 2 + 0 + (3 - 1) ** 2, rel=1e-9)
    # Covariances that do not commute: for 2x2, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)), with M ~ cov_a cov_b.
    cov_a, cov_b = torch.tensor([[4.0, 0], [0, 1]]).double(), torch.tensor([[2.0, 1], [1, 2]]).double()
    a = with_moments(torch.randn(500, 2, generator=g), torch.zeros(2), cov_a)
    b = with_moments(torch.randn(500, 2, generator=g), torch.tensor([3.0, 4]), cov_b)
    cross = math.sqrt((cov_a @ cov_b).trace().item() + 2 * math.sqrt((cov_a.det() * cov_b.det()).item()))
    assert ev.frechet_distance(a, b) == pytest.approx(25 + 5 + 4 - 2 * cross, rel=1e-9)


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


def test_each_grid_is_the_generator_of_its_moment_on_one_fixed_z(trained):
    """The handout draws fresh noise for every grid, so epochs cannot be compared: here one z serves the whole run."""
    a, module = load(trained["cwd"] / "a.pt"), importlib.import_module(VARIANTS[trained["variant"]][0])
    assert torch.equal(a["fixed_noise"], trained["c_stopped_at"]["fixed_noise"])  # epoch 0's z is epoch 2's
    G = module.Generator(**a["generator_kwargs"])
    G.load_state_dict(a["G"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the run's own arithmetic (run_quietly), bit for bit
    try:
        final = module.to_uint8(module.sample(G, a["fixed_noise"]))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a["history"][2], final)
    logged = events(run_dir_of(trained, "a.pt")).Images("Generated Images")[-1]
    assert logged.step == 2 and torch.equal(
        pixels(logged.encoded_image_string), torchvision.utils.make_grid(final)
    )  # as TensorBoard shows it


def test_tensorboard_holds_the_handout_tags_images_graph_and_hparams(trained):
    run_dir = run_dir_of(trained, "a.pt")  # TensorBoard lists runs by folder: script, mode, changed flags, seed
    flags = "_batch-size=16" + ("_n-critic=2" if trained["variant"].startswith("wgan") else "")  # --gp 10: default
    assert run_dir.name.startswith(f"{trained['variant']}_fashion-mnist{flags}_seed0_"), run_dir.name
    acc = events(run_dir)
    tags, tag = acc.Tags(), trained["tag"]
    for name in [f"{tag}/Loss/Discriminator", f"{tag}/Loss/Generator"]:
        assert [e.step for e in acc.Scalars(name)] == [1, 2]  # at the x of the images of the same moment
    assert [e.step for e in acc.Scalars(f"{tag}/Step/Loss_D")] == list(range(1, 2 * trained["steps"] + 1))
    assert [e.step for e in acc.Images("Generated Images")] == [0, 1, 2]
    assert tags["graph"] is True
    assert any(t.startswith("hyperparameters") for t in tags["tensors"])


def test_tensorboard_epoch_curves_are_the_epoch_lines_and_the_means_of_the_step_losses(trained):
    acc, tag, steps = events(run_dir_of(trained, "a.pt")), trained["tag"], trained["steps"]
    wgan = tag == "WGAN"
    # printed name -> TensorBoard tag, for the four numbers of an epoch line
    names = {"Loss_D": "Loss/Discriminator", "Loss_G": "Loss/Generator"} | (
        {"W": "Wasserstein", "GP": "GradientPenalty"} if wgan else {"D(x)": "Output/D_real", "D(G(z))": "Output/D_fake"}
    )
    lines = [line for line in trained["straight"].splitlines() if re.match(r"Epoch \d\d \| [\d.]+ s \|", line)]
    assert len(lines) == 2
    curves = {name: [e.value for e in acc.Scalars(f"{tag}/{t}")] for name, t in names.items()}
    for epoch, line in enumerate(lines):
        printed = dict(re.findall(r"\| (\S+) (-?\d+\.\d+)", line))
        assert printed.keys() == names.keys(), line
        for name, value in printed.items():
            assert curves[name][epoch] == pytest.approx(float(value), abs=0.51 * 10 ** -len(value.split(".")[1]))
    step = {name: [e.value for e in acc.Scalars(f"{tag}/Step/{name}")] for name in ["Loss_D", "Loss_G"]}
    for name, values in step.items():
        means = [sum(values[e * steps : (e + 1) * steps]) / steps for e in range(2)]
        assert curves[name] == pytest.approx(means, rel=1e-5, abs=1e-6)
    for line in step_lines(trained["straight"]):  # each progress line: the running means since its epoch began
        epoch, done = (int(n) for n in re.match(r"Epoch (\d+) \| Step (\d+)", line).groups())
        for name, values in step.items():
            printed = float(re.search(rf"{name} (-?\d+\.\d+)", line).group(1))
            assert sum(values[epoch * steps : epoch * steps + done]) / done == pytest.approx(printed, abs=6e-5), line
    if wgan:  # the critic's loss is -W (+ lambda GP): the Wasserstein curve has the paper's sign
        gp = 10 if trained["variant"] == "wgan-gp" else 0
        expected = [-w + gp * p for w, p in zip(curves["W"], curves["GP"], strict=True)]
        assert curves["Loss_D"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
        assert all(p > 0 for p in curves["GP"]) if gp else curves["GP"] == [0.0, 0.0]


# variant -> the optimiser of both G and D at the default flags: the handout's (with --gp, the paper's), lr, betas
OPTIMISERS = {
    "gan": ("Adam", 2e-4, [0.5, 0.999]),
    "dcgan": ("Adam", 2e-4, [0.5, 0.999]),
    "wgan": ("RMSprop", 5e-5, None),  # the WGAN paper: no momentum with a clipped critic
    "wgan-gp": ("Adam", 1e-4, [0.5, 0.9]),
}


def test_g_and_d_train_with_the_handouts_optimisers(trained):
    kind, lr, betas = OPTIMISERS[trained["variant"]]
    ckpt = load(trained["cwd"] / "a.pt")
    for name in ["optim_G", "optim_D"]:
        state, group = ckpt[name]["state"][0], ckpt[name]["param_groups"][0]
        assert set(state) - {"step"} == ({"exp_avg", "exp_avg_sq"} if kind == "Adam" else {"square_avg"}), name
        assert group["lr"] == lr and (list(group["betas"]) if "betas" in group else None) == betas, name


MILESTONES_OF_2_EPOCHS = [
    "samples_000pct_epoch000.png",
    "samples_025pct_epoch001.png",
    "samples_050pct_epoch001.png",
    "samples_075pct_epoch002.png",
    "samples_100pct_epoch002.png",
]


def test_milestone_progress_and_comparison_pngs(trained):
    run_dir = run_dir_of(trained, "a.pt")
    assert sorted(f.name for f in run_dir.glob("samples_*.png")) == MILESTONES_OF_2_EPOCHS
    for name in MILESTONES_OF_2_EPOCHS:
        assert Image.open(run_dir / name).size == (8 * 30 + 2, 8 * 30 + 2)  # 8x8 grid, 2 px padding
    grid = 2 * (8 * 30 + 2)  # the report figures enlarge each grid twice, without blur
    width, height = Image.open(run_dir / "progress.png").size
    assert width > 5 * grid and grid < height < grid + 200  # five grids side by side, captions and a title above
    width, height = Image.open(run_dir / "real_vs_generated.png").size
    assert width > grid + 60 and height > 2 * (2 * 30 + 2)  # row labels on the left, two rows
    # What they show: each milestone's samples; 8 training images as they are and the final G's first 8 samples.
    module, n = importlib.import_module(trained["variant"].split("-")[0]), VARIANTS[trained["variant"]][4]
    history = load(trained["cwd"] / "a.pt")["history"]
    assert all(shows(run_dir / "progress.png", module.grid_image(history[epoch])) for epoch in [0, 1, 2])
    train = tiny_split(n, len("train"))[0].unsqueeze(1)[module.epoch_order(n, 0, -1, "cpu")[:8]]
    for row in [train, history[2][:8]]:
        assert shows(run_dir / "real_vs_generated.png", module.grid_image(row))


def test_losses_png_is_drawn_from_every_step_loss_of_the_run(trained, tmp_path):
    """The checkpoint keeps each step's (Loss_D, Loss_G) as TensorBoard logged them (wgan.py: and its Wasserstein
    estimate); losses.png is drawn from them."""
    module, ckpt = importlib.import_module(trained["variant"].split("-")[0]), load(trained["cwd"] / "a.pt")
    logged = events(run_dir_of(trained, "a.pt"))
    for column, name in enumerate(["Loss_D", "Loss_G"]):
        values = [e.value for e in logged.Scalars(f"{trained['tag']}/Step/{name}")]
        assert torch.equal(ckpt["step_losses"][:, column], torch.tensor(values))
    wgan = trained["variant"].startswith("wgan")
    assert module.CURVES == ["Loss_D", "Loss_G", *(["Wasserstein"] if wgan else [])]  # the curve to watch in a WGAN
    if wgan:  # its third panel, logged to TensorBoard as epoch means only
        epoch_means = ckpt["step_losses"][:, 2].view(2, -1).mean(1)
        assert torch.allclose(epoch_means, torch.tensor([e.value for e in logged.Scalars("WGAN/Wasserstein")]))
    assert ckpt["step_losses"].shape == (2 * trained["steps"], len(module.CURVES))
    args, final = argparse.Namespace(**ckpt["args"]), ckpt["history"][2][:8]
    module.save_report_figures(tmp_path, args, ckpt["history"], final, final, ckpt["step_losses"], trained["steps"])
    assert (tmp_path / "losses.png").read_bytes() == (run_dir_of(trained, "a.pt") / "losses.png").read_bytes()


@pytest.mark.parametrize("script", SCRIPTS)
def test_loss_curves_plot_each_loss_in_its_own_panel_against_the_epochs(script, tmp_path):
    module, steps = importlib.import_module(script), 100
    names, rises = module.CURVES, torch.cat([torch.zeros(steps), torch.ones(steps)])  # 0 in epoch 1, then 1
    signs = [1 if k % 2 == 0 else -1 for k in range(len(names))]  # D rises, G falls, W rises
    curves = torch.stack([rises if sign > 0 else 1 - rises for sign in signs], 1)
    module.loss_curves(tmp_path / "a.png", curves, names, steps, 2 * steps)
    module.loss_curves(tmp_path / "b.png", torch.ones(steps, len(names)), names, steps, 2 * steps)  # epoch 2's

    def bold(png, colour):  # (x, y) of the pixels of the bold line in that colour
        image = pixels(png)
        y, x = torch.nonzero((image == torch.tensor(colour).view(3, 1, 1)).all(0), as_tuple=True)
        return x.float(), y.float()

    lines = [bold(tmp_path / "a.png", colour) for colour in module.COLOURS[: len(names)]]
    assert all(x.numel() > 500 for x, _ in lines)
    assert all(lines[k][0].max() < lines[k + 1][0].min() for k in range(len(names) - 1))  # D's panel, G's (, W's)
    xd = lines[0][0]
    for (x, y), sign in zip(lines, signs, strict=True):
        middle, span = (x.min() + x.max()) / 2, x.max() - x.min()
        left, right = y[x < middle - span / 20].mean(), y[x > middle + span / 20].mean()
        assert sign * (left - right) > 0.8 * (y.max() - y.min())  # a rise is drawn upwards (a smaller row)
        jump = x[(y > y.min() + 0.25 * (y.max() - y.min())) & (y < y.max() - 0.25 * (y.max() - y.min()))]
        assert (jump - middle).abs().max() < span / 50  # the step between the epochs, at the middle of the x-axis
    xb, _ = bold(tmp_path / "b.png", module.COLOURS[0])
    assert (xb.min() - (xd.min() + xd.max()) / 2).abs() < (xd.max() - xd.min()) / 50  # the last 100 of 200 steps


def test_same_seed_gives_the_same_losses(trained):
    first_epoch = [line for line in step_lines(trained["straight"]) if line.startswith("Epoch 00")]
    assert first_epoch and first_epoch == step_lines(trained["first"])


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_seed_sets_the_initial_weights_and_the_noise(script, data_root, tmp_path, monkeypatch):
    module, starts = importlib.import_module(script), {}

    def train_step(images, D, G, *_):  # records what a run's first step starts from (weights, next noise)
        weights = torch.cat([p.detach().flatten() for p in [*G.parameters(), *D.parameters()]])
        starts.setdefault(run, (weights, torch.randn(8)))
        return torch.full((4,), 0.5)

    monkeypatch.setattr(module, "train_step", train_step)
    for run, seed in enumerate(["0", "0", "1"], 1):
        argv = ["--data-root", str(data_root), "--batch-size", "64", "--epochs", "1", "--seed", seed]
        run_quietly(script, [*argv, "--ckpt", str(tmp_path / f"{run}.pt"), "--logdir", str(tmp_path / "runs")])
    (weights_0, noise_0), (weights_again, noise_again), (weights_1, noise_1) = starts.values()
    assert torch.equal(weights_0, weights_again) and torch.equal(noise_0, noise_again)
    assert not torch.equal(weights_0, weights_1) and not torch.equal(noise_0, noise_1)
    fixed = [load(tmp_path / f"{run}.pt")["fixed_noise"] for run in (1, 2, 3)]
    assert torch.equal(fixed[0], fixed[1]) and not torch.equal(fixed[0], fixed[2])  # the logged grids' z as well


def test_resume_equals_an_uninterrupted_run(trained):
    a, b = load(trained["cwd"] / "a.pt"), load(trained["cwd"] / "b.pt")
    assert b["epoch"] == 2
    assert_same_weights(a, b)


def test_ctrl_c_saves_and_resume_equals_an_uninterrupted_run(trained):
    stopped = trained["c_stopped_at"]
    assert "Interrupted: saved c.pt" in trained["interrupted"] and "Traceback" not in trained["interrupted"]
    assert (stopped["epoch"], stopped["step"]) < (2, 0)
    assert_same_weights(load(trained["cwd"] / "a.pt"), load(trained["cwd"] / "c.pt"))


def test_a_run_whose_tensorboard_folder_is_deleted_saves_its_steps_and_resumes(trained, tmp_path, monkeypatch):
    """`rm -r runs` to tidy TensorBoard's list while a run trains (or a disk that fills up) fails TensorBoard's writer
    thread, and the next write raised its error: two tracebacks, and the steps since the last epoch end lost."""
    script = VARIANTS[trained["variant"]][0]
    module, runs, lines = importlib.import_module(script), tmp_path / "runs", []
    argv = [*command(trained["variant"], data_root=trained["data_root"])[2:], "--epochs", "2", "--logdir", str(runs)]
    argv += ["--ckpt", str(tmp_path / "d.pt")]

    def print_then_delete(*args, **kwargs):  # the folder goes at the first progress line
        lines.append(" ".join(map(str, args)))
        if len(step_lines("\n".join(lines))) == 1:
            shutil.rmtree(runs)

    thread_errors = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)  # what the script leaves to the default hook
    with monkeypatch.context() as m, pytest.raises(SystemExit) as stop:
        m.setattr(module, "print", print_then_delete, raising=False)
        run_quietly(script, argv)  # one thread, as the straight run: the same arithmetic
    assert thread_errors == []  # TensorBoard's thread traceback not printed: the line below says it
    ckpt, line = load(tmp_path / "d.pt"), str(stop.value.code)
    assert line.startswith(f"Cannot write TensorBoard events in {ckpt['run_dir']} (No such file or directory)"), line
    assert line.endswith(
        f": saved {tmp_path / 'd.pt'} at epoch {ckpt['epoch']} step {ckpt['step']}; --resume continues it"
    )
    assert (0, 1) <= (ckpt["epoch"], ckpt["step"]) < (2, 0)
    resumed = run_quietly(script, [*argv, "--resume"])  # into a new folder: the old one is gone
    assert_same_weights(load(trained["cwd"] / "a.pt"), load(tmp_path / "d.pt"))
    epoch_means = lambda out: [x.split("| Loss_D")[1] for x in out.splitlines() if " s | " in x]  # noqa: E731
    assert epoch_means("\n".join(lines) + "\n" + resumed) == epoch_means(trained["straight"])  # sums saved too


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("script", SCRIPTS)
def test_ctrl_c_between_progress_lines_keeps_the_steps_since_the_last_line(
    script, signum, status, small_data_root, tmp_path
):
    """The steps after the last progress line are logged and summed before the save, or the resumed epoch lacks them.
    A scheduler's SIGTERM (Slurm's time limit, Colab's stop) saves the same way as Ctrl-C."""
    module, returned = importlib.import_module(script), []
    train_step = module.train_step

    def interrupted_at_step_3(*args):
        returned.append(train_step(*args))
        if len(returned) == 3:
            signal.raise_signal(signum)  # the script's own handler: finish this step, save, exit
        return returned[-1]

    def unhandled(*_):  # what the signal meets if the script does not take it (SIGTERM's default would end pytest)
        raise AssertionError(f"{signum.name} reached no handler of {script}.py")

    argv = ["--epochs", "2", "--batch-size", "4", "--log-every", "100", "--data-root", str(small_data_root)]
    default = signal.signal(signum, unhandled)
    try:
        with pytest.MonkeyPatch.context() as m, pytest.raises(SystemExit) as exc:
            m.setattr(module, "train_step", interrupted_at_step_3)
            run_main(script, [*argv, "--ckpt", str(tmp_path / "x.pt"), "--logdir", str(tmp_path / "runs")])
    finally:
        signal.signal(signum, default)
    assert exc.value.code == status  # no progress line was due: 3 of 8 steps, one every 100
    ckpt = load(tmp_path / "x.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (0, 3)
    assert torch.allclose(ckpt["sums"], torch.stack(returned).sum(0))  # the resumed epoch's means include them
    tag = f"{VARIANTS[script][2]}/Step/Loss_D"
    assert [e.step for e in events(ckpt["run_dir"]).Scalars(tag)] == [1, 2, 3]


def test_the_speed_of_a_resumed_epoch_counts_only_the_images_it_trained(trained, tmp_path, monkeypatch):
    if trained["variant"] != "gan":
        pytest.skip("checked once")
    import gan

    stopped = trained["c_stopped_at"]  # Ctrl-C'd mid-epoch
    assert stopped["step"] > 0
    torch.save(stopped, tmp_path / "c.pt")
    ticks = iter(range(100))
    monkeypatch.setattr(gan, "time", argparse.Namespace(perf_counter=lambda: float(next(ticks))))  # 1 s an epoch
    argv = ["--resume", "--epochs", str(stopped["epoch"] + 1), "--data-root", str(trained["data_root"])]
    out = run_quietly("gan", [*argv, "--ckpt", str(tmp_path / "c.pt"), "--logdir", str(tmp_path / "runs")])
    seen = 320 - stopped["step"] * VARIANTS["gan"][3]  # the rest of the epoch, not all of it
    assert f"| 1.00 s | {seen} img/s |" in out, out
    speed = events(run_dir_of({"cwd": tmp_path}, "c.pt")).Scalars("GAN/Time/Images_per_second")
    assert [(e.step, e.value) for e in speed] == [(stopped["epoch"] + 1, seen)]


@pytest.mark.parametrize("resumed", ["b.pt", "c.pt"])
def test_a_resumed_run_logs_what_a_straight_run_logs(trained, resumed):
    """Beyond the weights: every step loss once, the same epoch means (the loss sums survive a Ctrl-C), same images."""
    straight, again = events(run_dir_of(trained, "a.pt")), events(run_dir_of(trained, resumed))
    tag = trained["tag"]
    assert [e.step for e in again.Scalars(f"{tag}/Step/Loss_D")] == list(range(1, 2 * trained["steps"] + 1))
    for name in [f"{tag}/Loss/Discriminator", f"{tag}/Loss/Generator", f"{tag}/Step/Loss_G"]:
        assert [(e.step, e.value) for e in again.Scalars(name)] == [(e.step, e.value) for e in straight.Scalars(name)]
    pictures = lambda acc: [(e.step, e.encoded_image_string) for e in acc.Images("Generated Images")]  # noqa: E731
    assert pictures(again) == pictures(straight)
    folder = run_dir_of(trained, resumed)
    assert sorted(f.name for f in folder.glob("samples_*.png")) == MILESTONES_OF_2_EPOCHS  # the final plan only
    for name in MILESTONES_OF_2_EPOCHS + ["progress.png", "losses.png"]:
        assert (folder / name).read_bytes() == (run_dir_of(trained, "a.pt") / name).read_bytes(), name


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(trained, data_root, capsys):
    cwd = trained["cwd"]
    (cwd / "n.pt").write_bytes((cwd / "a.pt").read_bytes())
    argv = command(trained["variant"], "--epochs", "1", "--ckpt", str(cwd / "n.pt"), "--overwrite", data_root=data_root)
    writers = tensorboard_writers()
    with pytest.raises(SystemExit) as exc:
        run_main(VARIANTS[trained["variant"]][0], [*argv[2:], "--lr", "1e30", "--logdir", str(cwd / "runs")])
    assert "NaN or infinite" in str(exc.value.code)  # sys.exit(message): status 1, one line
    assert tensorboard_writers() <= writers  # closed before the exit: what was logged up to the NaN is on disk
    assert_same_weights(load(cwd / "a.pt"), load(cwd / "n.pt"))
    assert not (cwd / "n.pt.lock").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_infinite_generator_loss_alone_stops_the_run(script, small_data_root, tmp_path, monkeypatch):
    """G's loss is looked at too: at a run's last step G can blow up while D's loss, taken before, is still finite."""
    module = importlib.import_module(script)
    monkeypatch.setattr(module, "train_step", lambda *_: torch.tensor([1.0, math.inf, 0.5, 0.5]))
    argv = [
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--data-root",
        str(small_data_root),
        "--ckpt",
        str(tmp_path / "x.pt"),
    ]
    writers = tensorboard_writers()
    with pytest.raises(SystemExit) as exc:
        run_main(script, [*argv, "--logdir", str(tmp_path / "runs")])
    assert "Step 0002: a loss is NaN or infinite" in str(exc.value.code)  # at the first progress line (2 steps)
    assert tensorboard_writers() <= writers
    assert not (tmp_path / "x.pt").exists()


# ===== Bad input: one line, exit status 2, no traceback =====
BAD_FLAGS = [
    (["--epochs", "0"], "--epochs: must be positive"),
    (["--batch-size", "-1"], "--batch-size: must be positive"),
    (["--lr", "0"], "--lr: must be positive"),
    (["--lr", "abc"], "--lr: expected a number"),
    (["--batch-size", "abc"], "--batch-size: expected an integer"),
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


@pytest.mark.parametrize("script", ["gan", "dcgan"])  # wgan.py's own: test_wgan_rejects_flags_that_do_nothing_...
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--label-smoothing", "1"], "--label-smoothing: must be in [0, 1)"),  # a real label of 0, the fakes' label
        (["--label-smoothing", "-0.1"], "--label-smoothing: must be in [0, 1)"),
        (["--beta1", "1"], "--beta1/--beta2: must be in [0, 1)"),
        (["--beta2", "-0.5"], "--beta1/--beta2: must be in [0, 1)"),
    ],
)
def test_bce_scripts_refuse_labels_and_betas_out_of_range(script, flags, message, capsys):
    code, err = main_exit(script, flags, capsys)
    assert code == 2 and message in err


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bad_checkpoints_exit_2(variant, tmp_path, capsys):
    script, extra, *_ = VARIANTS[variant]
    other = "dcgan" if script == "gan" else "gan"
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    torch.save({"script": other, "args": {}}, tmp_path / "other.pt")
    (tmp_path / "exists.pt").write_bytes(b"")
    torch.save({"script": script, "weights": torch.zeros(1000)}, tmp_path / "full.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "full.pt").read_bytes()[:2000])  # a copy cut short
    cases = [
        (["--resume", "--ckpt", str(tmp_path / "missing.pt")], "no checkpoint at"),
        (
            ["--resume", "--ckpt", str(tmp_path / "corrupt.pt")],
            "is not a readable checkpoint (UnpicklingError); --overwrite starts afresh",
        ),
        (["--resume", "--ckpt", str(tmp_path / "cut.pt")], "is not a readable checkpoint (RuntimeError)"),
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
def test_missing_data_without_network_exits_2(script, tmp_path, capsys, monkeypatch):
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(script)
    with pytest.raises(SystemExit) as exc:
        module.main(command(script, "--epochs", "1", data_root=tmp_path / "empty")[2:])
    code, (out, err) = exc.value.code, capsys.readouterr()
    assert code == 2 and "FashionMNIST is not in" in err and "Copy the four official .gz files" in err
    # Why it failed (here the closed proxy), not only which file torchvision tried. torchvision < 0.21 (torch < 2.6,
    # which requirements.txt allows) prints the reason itself and raises only the file's name: the line says so.
    if tuple(int(part) for part in torchvision.__version__.split(".")[:2]) < (0, 21):
        assert "urlopen error" in out and "torchvision's lines above say why" in err.splitlines()[-1]
    else:
        assert "urlopen error" in err.splitlines()[-1] and "lines above" not in err  # torchvision printed none
    assert not (tmp_path / "runs").exists()  # a failed start leaves no empty run folder
    assert not list(tmp_path.glob("*.lock"))


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
    steps_D, steps_G = ckpt["optim_D"]["state"][0]["step"], ckpt["optim_G"]["state"][0]["step"]
    assert steps_D == 2 * steps_G == 2 * 2 * trained["steps"]  # --n-critic 2 critic steps per generator step


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


def test_perturb_draws_in_each_cell_g_of_its_rows_change_to_its_columns_z(trained, tmp_path):
    if trained["variant"] != "dcgan":
        pytest.skip("checked on a batch-norm generator, where a cell could also depend on the others")
    import perturb

    ckpt = str(trained["cwd"] / "a.pt")
    flags = ["--dims", "3", "50", "--values", "-2", "2", "--n-samples", "3", "--seed", "4"]
    perturb.main(["--ckpt", ckpt, "--out", str(tmp_path / "f.png"), *flags, "--logdir", str(tmp_path / "tb")])
    G = importlib.import_module("dcgan").Generator(**load(ckpt)["generator_kwargs"])
    G.load_state_dict(load(ckpt)["G"])
    z = torch.randn(3, 100, generator=torch.Generator().manual_seed(4))  # the columns
    png = pixels(tmp_path / "f.png")[0].int()
    for r, (dim, value) in enumerate([(3, -2.0), (3, 2.0), (50, -2.0), (50, 2.0)]):  # the rows: each dim, each value
        changed = z.clone()
        changed[:, dim] += value
        with torch.no_grad():
            expected = G.eval()(changed).view(3, 28, 28).add(1).mul(127.5).round().clamp(0, 255).int()
        for c in range(3):
            top, left = perturb.TOP + r * (56 + perturb.GAP) + perturb.GAP, perturb.LEFT + c * (56 + perturb.GAP)
            cell = png[top : top + 56 : 2, left + perturb.GAP : left + perturb.GAP + 56 : 2]  # --scale 2
            assert (cell - expected[c]).abs().max() <= 1, (r, c)  # 1 grey level: the batch's rounding
    logged = events(tmp_path / "tb").Images("perturb/a")[0]  # TensorBoard holds the same figure
    assert torch.equal(pixels(logged.encoded_image_string).int(), png.expand(3, -1, -1))  # as RGB


def test_perturb_command_line_default_name_and_determinism(trained, tmp_path):
    if trained["variant"] != "gan":
        pytest.skip("the command line does not depend on the script: checked once")
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes((trained["cwd"] / "a.pt").read_bytes())
    cmd = [sys.executable, str(ROOT / "perturb.py"), "--ckpt", str(ckpt), "--logdir", str(tmp_path / "tb")]
    first = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    png = (tmp_path / "perturb_model.png").read_bytes()
    assert Image.open(tmp_path / "perturb_model.png").size == png_size(15, 8)
    import perturb

    perturb.main(["--ckpt", str(ckpt)])
    assert (tmp_path / "perturb_model.png").read_bytes() == png  # the same figure again: the same file
    perturb.main(["--ckpt", str(ckpt), "--dims", "3", "--logdir", str(tmp_path / "tb")])  # the next free name
    assert (tmp_path / "perturb_model.png").read_bytes() == png
    assert Image.open(tmp_path / "perturb_model_2.png").size == png_size(3, 8)
    perturb.main(["--ckpt", str(ckpt), "--dims", "3"])
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["perturb_model.png", "perturb_model_2.png"]
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    # Each figure under its own tag. Sorted: the accumulator lists tags in the order of the event files' names, and two
    # files made in the same second sort by process id, so the subprocess's may come second (a flaky order, seen here).
    assert sorted(acc.Tags()["images"]) == ["perturb/model", "perturb/model_2"]


@pytest.fixture(scope="session")
def small_gan(data_root, tmp_path_factory):
    """A gan.py checkpoint with --latent-dim 8 and --hidden-dim 32 (not the defaults), trained in this process."""
    cwd = tmp_path_factory.mktemp("small")
    argv = command("gan", "--epochs", "1", "--hidden-dim", "32", "--latent-dim", "8", data_root=data_root)[2:]
    run_main("gan", [*argv, "--ckpt", str(cwd / "small.pt"), "--logdir", str(cwd / "runs")])
    return cwd / "small.pt"


def test_perturb_non_default_architecture(small_gan, tmp_path):
    import perturb

    perturb.main(["--ckpt", str(small_gan), "--dims", "0", "7", "--out", str(tmp_path / "grid.png")])
    assert Image.open(tmp_path / "grid.png").size == png_size(6, 8)
    # The default --dims (up to 80) only matter to the grid: the other figures work with 8 latent dimensions.
    for flags, rows, cols in [(["--sweep", "4"], 8, 9), (["--samples-only"], 1, 8), (["--interpolate"], 4, 9)]:
        perturb.main(["--ckpt", str(small_gan), "--out", str(tmp_path / "x.png"), *flags])
        assert Image.open(tmp_path / "x.png").size == png_size(rows, cols), flags


def test_perturb_bad_input_exits_2(trained, tmp_path, capsys):
    import perturb

    ckpt = str(trained["cwd"] / "a.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x00garbage")
    torch.save({"script": "vae", "generator_kwargs": {"latent_dim": 2}, "G": {}}, tmp_path / "vae.pt")
    (tmp_path / "narrow.txt").write_text("1 2 3\n")
    crafted = load(ckpt)
    crafted["generator_kwargs"]["latent_dim"] = 7
    torch.save(crafted, tmp_path / "crafted.pt")
    cases = [
        (["--ckpt", str(tmp_path / "missing.pt")], "no file at"),
        (["--ckpt", str(tmp_path / "tensor.pt")], "is not a checkpoint of gan.py"),
        (["--ckpt", str(tmp_path / "garbage.pt")], "is not a checkpoint of ours"),
        (["--ckpt", str(tmp_path / "vae.pt")], "unknown script 'vae'"),
        (["--ckpt", str(tmp_path / "crafted.pt")], "do not fit its weights"),
        (["--ckpt", ckpt, "--dims", "100"], "dimension 100 is outside [0, 100)"),
        (["--ckpt", ckpt, "--sweep", "-1"], "dimension -1 is outside"),
        (["--ckpt", ckpt, "--values"], "expected at least one argument"),
        (["--ckpt", ckpt, "--vectors", str(tmp_path / "narrow.txt")], "needs 100 numbers a line"),
        (["--ckpt", ckpt, "--vectors", str(tmp_path / "none.txt")], "cannot read"),
        (["--ckpt", ckpt, "--interpolate", "--n-samples", "1"], "needs at least 2 base vectors"),
        (["--ckpt", ckpt, "--interpolate", "--steps", "1"], "--steps: must be in [2, 1000], got 1"),  # both ends
        (["--ckpt", ckpt, "--n-samples", "0"], "--n-samples: must be in [1, 1000], got 0"),
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
    lines, _ = evaluate([ckpt, "--data-root", str(data_root), "--n", "256"], capsys)
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [r[0] for r in body] == ["real data", ckpt] and all(float(r[4]) >= 0 for r in body)


def test_evaluate_feeds_the_metrics_what_it_says(trained, data_root, tmp_path, capsys):
    """The metrics are pinned on constructed features; this pins their inputs: the shipped classifier in eval mode,
    the real test split as the reference, --n real training images and --n samples of G in eval mode from --seed,
    and --k for both precision's and recall's neighbourhoods."""
    if trained["variant"] != "gan":
        pytest.skip("the inputs do not depend on the script: checked once")
    import evaluate as ev

    ckpt = str(trained["cwd"] / "a.pt")
    argv = [ckpt, "--data-root", str(data_root), "--n", "256", "--seed", "3", "--k", "3"]
    argv += ["--json", str(tmp_path / "s.json")]
    evaluate(argv, capsys)
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    model = ev.Classifier()
    model.load_state_dict(load(Path(ev.CLASSIFIERS) / "fashion-mnist.pt"))
    model.eval()
    unit = lambda n, split: tiny_split(n, len(split))[0].unsqueeze(1).float() / 127.5 - 1  # noqa: E731 (data_root's)
    train, test = unit(320, "train"), unit(100, "t10k")
    G = importlib.import_module("gan").Generator(**load(ckpt)["generator_kwargs"])
    G.load_state_dict(load(ckpt)["G"])
    with torch.no_grad():
        real = train[torch.randperm(320, generator=torch.Generator().manual_seed(3))[:256]]
        fake = G.eval()(torch.randn(256, G.model[0].in_features, generator=torch.Generator().manual_seed(3)))
        for row, images in zip(rows, [real, fake.view(-1, 1, 28, 28)], strict=True):
            ref = model.features(test)
            expected = ev.scores(model.features(images), model(images), ref, ev.knn_radii(ref, 3), 3)
            for key in ["fid", "precision", "recall", "classes_covered", "kl_uniform", "confidence"]:
                assert row[key] == pytest.approx(expected[key], rel=1e-4, abs=0.01), (row["name"], key)


def test_evaluate_table_json_and_determinism(trained, data_root, tmp_path, capsys):
    if trained["variant"] != "gan":
        pytest.skip("the table and JSON do not depend on the script: checked once")
    ckpt = str(trained["cwd"] / "a.pt")
    mnist = load(ckpt)
    mnist["args"]["dataset"] = "mnist"  # the same generator, scored against MNIST: one call, two datasets
    torch.save(mnist, tmp_path / "as_mnist.pt")
    argv = [ckpt, str(tmp_path / "as_mnist.pt"), "--data-root", str(data_root), "--n", "256"]
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
    again, _ = evaluate(argv, capsys)
    assert again == lines


def test_evaluate_tells_apart_runs_that_differ_in_one_hyper_parameter():
    """The table's flags column once left out the seed and the betas: `--gp 10` and `--gp 10 --beta1 0`, or three
    seeds of one configuration, printed the same row label. Every flag of every script but paths, devices, lengths
    and the dataset (a column of its own) must show, and those must not."""
    import evaluate as ev

    not_shown = {"dataset", "data_root", "epochs", "ckpt", "resume", "overwrite", "device", "cuda_graph", "logdir"}
    not_shown |= {"log_every"}
    for script, flags in [("gan", []), ("dcgan", []), ("wgan", []), ("wgan", ["--gp", "10"])]:
        args = vars(importlib.import_module(script).parse_args(flags)[1])
        shown = ev.describe({"args": args})
        for key, value in args.items():
            changed = {**args, key: "elsewhere" if isinstance(value, str) else (value or 0) + 1}
            if key in not_shown:
                assert ev.describe({"args": changed}) == shown, (script, key)
            elif value is not None:  # None: not this mode's (--clip with --gp)
                assert ev.describe({"args": changed}) != shown, (script, key)
    args = vars(importlib.import_module("wgan").parse_args(["--gp", "10", "--beta1", "0", "--seed", str(2**32 - 1)])[1])
    assert ev.describe({"args": args}) == (
        "batch-size 128, lr 0.0001, beta1 0, beta2 0.9, n-critic 5, gp 10, latent-dim 100, seed 4294967295"
    )


def test_evaluate_refuses_a_tampered_classifier_and_retrains_on_request(trained, data_root, tmp_path, capsys):
    if trained["variant"] != "gan":
        pytest.skip("checked once")
    import evaluate as ev

    shipped = Path(ev.CLASSIFIERS) / "fashion-mnist.pt"
    (tmp_path / "fashion-mnist.pt").write_bytes(shipped.read_bytes()[:-10] + b"tampered!!")
    argv = [str(trained["cwd"] / "a.pt"), "--data-root", str(data_root), "--n", "256"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ev, "CLASSIFIERS", str(tmp_path))
        with pytest.raises(SystemExit) as exc:
            ev.main(argv)
    assert exc.value.code == 2 and "does not match its sha256" in capsys.readouterr().err
    lines, err = evaluate([*argv, "--retrain-classifier", "--classifier-steps", "2"], capsys)
    assert "retrained, saved as" in err and len(lines) == 4
    assert (data_root / "FashionMNIST" / "classifier.pt").exists()


def real_data_root(tmp_path):
    """The official .gz files, linked into a temporary folder (torchvision extracts beside them), or a skip."""
    for candidate in [ROOT / "data", ROOT.parent / "shared" / "data"]:
        found = sorted((candidate / "FashionMNIST" / "raw").glob("*.gz"))
        if len(found) == 4:
            raw = tmp_path / "FashionMNIST" / "raw"
            raw.mkdir(parents=True)
            for gz in found:
                (raw / gz.name).symlink_to(gz.resolve())
            return tmp_path
    pytest.skip("the official FashionMNIST files are not here (offline checkout)")


def test_the_shipped_classifier_loads_and_classifies_the_real_test_split(tmp_path):
    import evaluate as ev

    root = real_data_root(tmp_path)
    p = ev.parse_args(["x.pt"])[0]
    test_x, test_y = ev.load_split(p, str(root), "fashion-mnist", train=False)
    args = argparse.Namespace(retrain_classifier=False)
    _, accuracy, _ = ev.get_classifier(p, args, "fashion-mnist", None, None, test_x, test_y)
    assert accuracy >= 0.913  # the README states 91.32%


def test_evaluate_export_writes_pngs(trained, data_root, tmp_path, capsys):
    if trained["variant"] != "gan":
        pytest.skip("checked once")
    ckpt = str(trained["cwd"] / "a.pt")
    argv = [ckpt, "--data-root", str(data_root), "--n", "256", "--export", str(tmp_path)]
    evaluate(argv, capsys)
    files = sorted((tmp_path / "a").glob("*.png"))
    assert len(files) == 256 and Image.open(files[0]).size == (28, 28)
    import evaluate as ev  # each file is its sample, [-1, 1] mapped to [0, 255], in the order --seed draws them
    import gan

    ckpt = load(ckpt)
    G = gan.Generator(**ckpt["generator_kwargs"])
    G.load_state_dict(ckpt["G"])
    expected = ev.generate(G, ckpt["generator_kwargs"]["latent_dim"], 256, 0).add(1).mul(127.5)
    for i in [0, 1, 255]:
        assert (pixels(files[i])[0].float() - expected[i, 0]).abs().max() <= 0.51, files[i].name
    with pytest.raises(SystemExit) as exc:  # a second export (here of more samples) would mix with these in one FID
        ev.main([str(trained["cwd"] / "a.pt"), "--data-root", str(data_root), "--n", "300", "--export", str(tmp_path)])
    assert exc.value.code == 2 and "a is not empty" in capsys.readouterr().err
    assert sorted((tmp_path / "a").glob("*.png")) == files


def test_evaluate_bad_input_exits_2(trained, data_root, tmp_path, capsys):
    if trained["variant"] != "gan":
        pytest.skip("checked once")
    import evaluate as ev

    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    ckpt = str(trained["cwd"] / "a.pt")
    crafted = load(ckpt)
    crafted["generator_kwargs"]["hidden_dim"] = 64  # does not fit the weights
    torch.save(crafted, tmp_path / "crafted.pt")
    (tmp_path / "file").write_text("")
    (tmp_path / "copy").mkdir()
    shutil.copy(ckpt, tmp_path / "copy" / "a.pt")
    truncated = corrupt_copy(data_root, tmp_path / "t", "t10k-images-idx3-ubyte", lambda f: f.write_bytes(b"\0" * 99))
    cases = [
        ([str(tmp_path / "missing.pt")], "no checkpoint at"),
        ([str(tmp_path / "foreign.pt")], "is not a checkpoint of gan.py"),
        ([str(tmp_path / "crafted.pt")], "do not fit its weights"),
        ([ckpt, "--n", "10"], "too few for a 128-d covariance"),
        ([ckpt, "--data-root", str(tmp_path / "empty")], "is not in"),
        ([ckpt, "--data-root", str(tmp_path / "empty")], "Copy the four official .gz files there"),
        ([ckpt, "--n", "1000", "--k", "999"], "--k: must be in [1, n/20 = 50]"),
        ([ckpt, "--json", str(tmp_path / "nodir" / "s.json")], "--json: cannot write"),
        ([ckpt, "--export", str(tmp_path / "file")], "--export: "),
        ([ckpt, str(tmp_path / "copy" / "a.pt"), "--export", str(tmp_path / "x")], "two checkpoints named a"),
        ([ckpt, "--classifier-steps", "5"], "only with --retrain-classifier"),
        (
            [ckpt, "--retrain-classifier", "--classifier-steps", "-1"],
            "--classifier-steps: must be 0 (3 epochs) or more",
        ),
        ([ckpt, "--seed", str(2**64)], "--seed: must be in [0, 2^32)"),  # torch's overflow, a traceback, before
        ([ckpt, "--seed", "-1"], "--seed: must be in [0, 2^32)"),
        ([ckpt, "--data-root", str(truncated)], "t10k-images-idx3-ubyte is truncated or corrupt"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exc:
            ev.main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err, (argv, err)
    # The parser alone: without the ceiling, main() would score 60,001 samples for minutes instead of failing.
    with pytest.raises(SystemExit) as exc:
        ev.parse_args([ckpt, "--n", "60001"])
    assert exc.value.code == 2 and "--n: at most 60000, the training images" in capsys.readouterr().err
    assert ev.parse_args([ckpt, "--n", "60000"])[1].n == 60000  # the whole training split is still allowed


def test_perturb_and_evaluate_refuse_read_only_folders_and_stop_in_one_line_on_a_full_disk(
    trained, data_root, tmp_path, capsys, monkeypatch
):
    """A TA's read-only folder of checkpoints, a shared read-only data root, a full disk: one line each, never a
    traceback, and the refusals come before any drawing or scoring."""
    if trained["variant"] != "gan":
        pytest.skip("checked once")
    import evaluate as ev
    import perturb

    ro, ckpt = tmp_path / "ro", tmp_path / "a.pt"
    ro.mkdir()
    shutil.copy(trained["cwd"] / "a.pt", ckpt)
    shutil.copy(ckpt, ro / "a.pt")
    access = os.access  # root may write anywhere, so the scripts' os is told that ro is read-only
    read_only = lambda path, mode: not os.path.abspath(path).startswith(str(ro)) and access(path, mode)  # noqa: E731
    for module in (perturb, ev):
        monkeypatch.setattr(module, "os", argparse.Namespace(**{**vars(os), "access": read_only}))
    for main, argv, message in [
        (perturb.main, ["--ckpt", str(ro / "a.pt")], f"--out: cannot write in {ro} (not writable here): pass --out"),
        (perturb.main, ["--ckpt", str(ckpt), "--logdir", str(ro / "tb")], f"--logdir: cannot create '{ro}/tb'"),
        (ev.main, [str(ckpt), "--data-root", str(ro / "data"), "--retrain-classifier"], f"cannot save it in {ro} "),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err, (argv, err)
    assert sorted(ro.iterdir()) == [ro / "a.pt"]
    perturb.main(["--ckpt", str(ro / "a.pt"), "--out", str(tmp_path / "p.png")])  # --out elsewhere: the way out
    assert Image.open(tmp_path / "p.png").size == (72 + 8 * 58 + 2, 16 + 15 * 58 + 2)

    monkeypatch.setattr(ev, "open", FullDisk, raising=False)  # the JSON
    monkeypatch.setattr(Image, "builtins", argparse.Namespace(open=FullDisk))  # every PNG: PIL opens with builtins
    scored = [str(ckpt), "--data-root", str(data_root), "--n", "256"]
    for main, argv, message in [
        (perturb.main, ["--ckpt", str(ckpt), "--out", str(tmp_path / "f.png")], f"Cannot write {tmp_path}/f.png "),
        (ev.main, [*scored, "--json", str(tmp_path / "s.json")], f"{tmp_path}/s.json (No space left on device): the"),
        (ev.main, [*scored, "--export", str(tmp_path / "x")], f"Cannot write the samples of {ckpt} in {tmp_path}/x/a "),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert message in str(exc.value.code) and "No space left on device" in exc.value.code, (argv, exc.value.code)
    assert "| real data |" in capsys.readouterr().out  # the JSON's failure came after the table
    assert not (tmp_path / "f.png").exists() and not (tmp_path / "s.json").exists()  # no half-written files


# ===== Hardening: bad paths, locks, corrupt data, crafted checkpoints (one line, exit status 2) =====
@pytest.mark.parametrize("script", SCRIPTS)
def test_networks_too_large_for_memory_are_one_line(script, data_root, tmp_path, capsys, monkeypatch):
    """A layer of petabytes: the allocator refuses at once (past any address space, so nothing is really allocated)."""
    monkeypatch.chdir(tmp_path)
    huge = ["--hidden-dim", str(10**7)] if script == "gan" else ["--latent-dim", str(10**12)]
    code, err = main_exit(script, ["--data-root", str(data_root), "--ckpt", "x.pt", *huge], capsys)
    assert code == 2 and "out of memory (" in err and "try a smaller --batch-size" in err, err
    assert "Traceback" not in err and sorted(os.listdir(tmp_path)) == []  # no lock, run folder or checkpoint left


@pytest.mark.parametrize("script", SCRIPTS)
def test_bad_output_paths_are_refused_before_any_training(script, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("")
    (tmp_path / "a_dir").mkdir()
    cases = [
        (["--ckpt", str(tmp_path / "nodir" / "x.pt")], "--ckpt: cannot write"),
        (["--ckpt", ""], "--ckpt: cannot write"),
        (["--ckpt", str(tmp_path / "a_file" / "x.pt")], "--ckpt: cannot write"),
        (["--ckpt", str(tmp_path / "a_dir"), "--overwrite"], "--ckpt: cannot write"),
        (["--ckpt", "x.pt", "--logdir", str(tmp_path / "a_file" / "runs")], "--logdir: cannot write"),
        (["--ckpt", "x.pt", "--seed", str(2**64)], "--seed: must be in [0, 2^32)"),
        (["--ckpt", "x.pt", "--device", "meta"], "--device: meta cannot train"),
        (["--ckpt", "x.pt", "--device", "gpu"], "--device: 'gpu' is not a device name (use auto, cpu, cuda, cuda:N"),
    ]
    if not torch.backends.mps.is_available():  # torch's own reason would run to 3,000 characters on one line
        cases.append((["--ckpt", "x.pt", "--device", "mps"], "--device: mps is not usable here (MPS"))
    for flags, message in cases:
        code, err = main_exit(script, VARIANTS[script][1] + flags, capsys)
        assert code == 2 and message in err and len(err.splitlines()[-1]) < 200, (flags, err)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a_dir", "a_file"]  # no run folder, temp file or lock


def test_resume_refuses_flags_it_would_ignore_and_accepts_repeated_ones(trained, capsys, monkeypatch):
    monkeypatch.chdir(trained["cwd"])
    script, extra, _, batch, _ = VARIANTS[trained["variant"]]
    base = extra + ["--resume", "--ckpt", "a.pt", "--epochs", "2"]
    # Every flag but these is the run's own: a different value typed with --resume is refused, whatever the flag.
    may_change = {"help", "epochs", "ckpt", "resume", "device", "data_root", "logdir", "log_every", "cuda_graph"}
    parser, ran = importlib.import_module(script).parse_args([])[0], load(trained["cwd"] / "a.pt")["args"]
    own = [action for action in parser._actions if action.dest not in may_change]
    assert {"lr", "seed", "batch_size", "dataset", "overwrite"} <= {action.dest for action in own}
    for action in own:
        value = ran[action.dest]
        if action.nargs == 0:  # --overwrite
            typed = []
        elif action.choices:
            typed = [next(choice for choice in action.choices if choice != value)]
        else:
            typed = [str(value + 1 if isinstance(value, int) else value / 2 if value else 0.5)]  # None, 0: 0.5
        flags = [action.option_strings[0], *typed]
        code, err = main_exit(script, base + flags, capsys)
        had = f"has {value}" if value is not None else "was started without it"  # a flag it lacks: not "has None"
        assert code == 2 and f"{action.option_strings[0]}: this run {had}; --resume keeps" in err, (flags, err)
    code, err = main_exit(script, base + ["--batch-size", str(batch)], capsys)  # the run's own value: fine
    assert code == 2 and "already has 2 epochs" in err
    if trained["variant"] == "wgan-gp":  # the mode comes from the checkpoint: its betas need no --gp typed again
        code, err = main_exit(script, ["--resume", "--ckpt", "a.pt", "--epochs", "2", "--beta1", "0.5"], capsys)
        assert code == 2 and "already has 2 epochs" in err
    if trained["variant"] == "wgan":  # and a clipping run has no betas to change
        code, err = main_exit(script, [*base, "--beta1", "0.5"], capsys)
        assert code == 2 and "--beta1: this run was started without it" in err


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch):
    import gan

    moment = gan.datetime(2026, 1, 1)
    monkeypatch.setattr(gan, "datetime", argparse.Namespace(now=lambda: moment))  # both in the same second
    p, args, _ = gan.parse_args(["--dataset", "mnist", "--logdir", str(tmp_path)])
    first, second = gan.new_run_dir(p, args), gan.new_run_dir(p, args)
    assert first != second and Path(first).is_dir() and Path(second).name == Path(first).name + "_2"


def test_run_folders_name_each_hyper_parameter_that_differs_from_its_default(tmp_path, monkeypatch):
    """TensorBoard lists runs by folder. Named by script, dataset and seed alone, `dcgan.py` and `dcgan.py --lr 1e-4`,
    two of the settings question 3 compares, read apart only by the second each started."""
    from datetime import datetime

    not_named = {"dataset", "data_root", "epochs", "ckpt", "resume", "overwrite", "device", "cuda_graph", "logdir"}
    not_named |= {"log_every", "seed"}  # the seed has its own place in the name

    def name(script, args):
        args.logdir = str(tmp_path / str(len(list(tmp_path.iterdir()))))  # a folder each: no "_2" suffixes
        return Path(importlib.import_module(script).new_run_dir(None, args)).name

    for script, mode, bare in [
        ("gan", [], "gan"),
        ("dcgan", [], "dcgan"),
        ("wgan", [], "wgan"),
        ("wgan", ["--gp", "10"], "wgan-gp"),
    ]:
        module = importlib.import_module(script)
        monkeypatch.setattr(module, "datetime", argparse.Namespace(now=lambda: datetime(2026, 1, 1)))
        elsewhere = ["--epochs", "3", "--log-every", "5", "--device", "cpu", "--no-cuda-graph", "--ckpt", "x.pt"]
        args = module.parse_args([*mode, *elsewhere, "--data-root", "d", "--overwrite"])[1]  # none of them named
        assert name(script, args) == f"{bare}_fashion-mnist_seed0_20260101-000000"
        for key, value in vars(args).items():
            if key not in not_named and value is not None:  # None: not this mode's (--clip with --gp)
                changed = argparse.Namespace(**{**vars(args), key: value + 1})
                shown = f"_{key.replace('_', '-')}={format(value + 1, 'g')}_seed0_"
                assert name(script, changed) == f"{bare}_fashion-mnist{shown}20260101-000000", (script, key)
    cases = [
        ("gan", ["--lr", "4e-4", "--lr-d", "8e-4", "--hidden-dim", "2048", "--label-smoothing", "0.1", "--seed", "2"]),
        ("wgan", ["--clip", "0.01", "--seed", "1", "--dataset", "mnist"]),
        ("wgan", ["--gp", "10", "--beta1", "0", "--beta2", "0.9"]),
    ]
    names = [name(script, importlib.import_module(script).parse_args(flags)[1]) for script, flags in cases]
    assert names == [
        "gan_fashion-mnist_lr=0.0004_lr-d=0.0008_hidden-dim=2048_label-smoothing=0.1_seed2_20260101-000000",
        "wgan_mnist_seed1_20260101-000000",  # the handout's clipping, typed: the default
        "wgan-gp_fashion-mnist_beta1=0_seed0_20260101-000000",  # not beta10
    ]


def test_a_second_run_on_the_same_checkpoint_is_refused(tmp_path, capsys, monkeypatch):
    import gan

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.pt.lock").write_text(str(os.getppid()))  # a live process holds it
    code, err = main_exit("gan", ["--ckpt", "x.pt"], capsys)
    assert code == 2 and "in use by another run" in err and (tmp_path / "x.pt.lock").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, host = dead.stdout.strip(), socket.gethostname()
    # Its run was killed: the lock is taken over. So it is when the number is this run's own: in a container every
    # run is pid 1, and the killed run's lock would otherwise name a live process, this one, forever.
    # A number no process can have (a lock edited by hand) is stale too, not os.kill's OverflowError.
    for owner in (f"{dead}@{host}", dead, f"{os.getpid()}@{host}", f"{2**64}@{host}"):  # dead alone: an old lock
        (tmp_path / "x.pt.lock").write_text(owner)
        with gan.checkpoint_lock(None, "x.pt"):
            assert (tmp_path / "x.pt.lock").read_text() == f"{os.getpid()}@{host}"
        assert not (tmp_path / "x.pt.lock").exists()
    # A run on another machine sharing the folder (a cluster's home): its pid says nothing here, so the lock holds.
    (tmp_path / "x.pt.lock").write_text(f"{dead}@another-node")
    with pytest.raises(SystemExit) as refused, gan.checkpoint_lock(argparse.ArgumentParser(), "x.pt"):
        pass  # (the lock alone: were it taken over, a run would start training here)
    err = capsys.readouterr().err
    assert refused.value.code == 2 and f"in use by another run (pid {dead} on another-node)" in err
    (tmp_path / "x.pt.lock").write_text("\u00b2")  # a digit int() cannot read: refused in one line, not a traceback
    with pytest.raises(SystemExit) as refused, gan.checkpoint_lock(argparse.ArgumentParser(), "x.pt"):
        pass
    assert refused.value.code == 2 and "in use by another run (pid 0)" in capsys.readouterr().err


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_lock_owner_is_looked_up_without_a_signal(script, tmp_path, monkeypatch, capsys):
    """On Windows os.kill(pid, 0) asks nothing: signal 0 is CTRL_C_EVENT, a Ctrl-C to the whole console, this run
    included. There the process is opened and asked whether it has ended (a fake of those calls stands in here)."""
    module = importlib.import_module(script)
    monkeypatch.chdir(tmp_path)
    system = argparse.Namespace(**vars(os))  # the script's os, changed without touching pytest's
    monkeypatch.setattr(module, "os", system)

    def not_yours(pid, sig):  # POSIX's answer when another user's process has the number
        raise PermissionError(1, "Operation not permitted")

    system.kill = not_yours
    assert module.running(12345)  # so the lock is not stale

    processes, opened = {101: 258, 102: 0}, []  # pid -> WaitForSingleObject(it, 0): 258 running, 0 ended

    def open_process(access, inherit, pid):
        if pid == 103:
            raise PermissionError(13, "Access is denied")  # another user's process
        if pid not in processes:
            raise OSError(22, "The parameter is incorrect")  # Windows' answer for a pid no process has
        opened.append(pid)
        return pid  # the handle

    def no_signal(pid, sig):
        raise AssertionError(f"os.kill({pid}, {sig}) on Windows: a console Ctrl-C, not a question")

    winapi = argparse.Namespace(SYNCHRONIZE=0x100000, WAIT_OBJECT_0=0, WAIT_TIMEOUT=258, OpenProcess=open_process)
    winapi.WaitForSingleObject, winapi.CloseHandle = lambda handle, ms: processes[handle], opened.remove
    monkeypatch.setitem(sys.modules, "_winapi", winapi)
    system.name, system.kill = "nt", no_signal
    assert [module.running(pid) for pid in (101, 102, 103, 104)] == [True, False, True, False]
    assert opened == []  # every handle closed again
    (tmp_path / "x.pt.lock").write_text("101")
    code, err = main_exit(script, ["--ckpt", "x.pt"], capsys)
    assert code == 2 and "in use by another run (pid 101)" in err
    (tmp_path / "x.pt.lock").write_text("102")  # its run ended without removing it: taken over
    with module.checkpoint_lock(None, "x.pt"):
        assert (tmp_path / "x.pt.lock").read_text() == f"{os.getpid()}@{socket.gethostname()}"


class FullDisk:
    """open() onto a disk that fills up: the first write puts part of its data in the file, then fails."""

    def __init__(self, path, mode="r", *args, **kwargs):
        self.file = open(path, mode, *args, **kwargs)  # noqa: SIM115 (closed by close() or the with block)

    def write(self, data):
        self.file.write(data[:100])
        self.file.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(script, tmp_path, monkeypatch):
    """torch.save onto a full disk raised "basic_ios::clear: iostream error" in a traceback, naming no disk at all."""
    module = importlib.import_module(script)
    path = tmp_path / "x.pt"
    module.save_checkpoint(str(path), {"epoch": 1})
    monkeypatch.setattr(module, "open", FullDisk, raising=False)  # the script's own open, nobody else's
    for target, kept in [(path, "the previous one is kept"), (tmp_path / "new.pt", "nothing was saved")]:
        with pytest.raises(SystemExit) as stop:
            module.save_checkpoint(str(target), {"epoch": 2})
        assert stop.value.code == f"Cannot write {target} (No space left on device): {kept}" + (
            ", and --resume continues it" if target == path else ""
        )
    assert load(path) == {"epoch": 1} and [f.name for f in tmp_path.iterdir()] == ["x.pt"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_checkpoint_held_open_on_windows_is_renamed_on_a_later_try(script, tmp_path, monkeypatch):
    """Windows refuses os.replace while another process holds either file open (a virus scanner reading the file
    just written, perturb.py loading the checkpoint): an epoch end must wait for it, not stop a 30-epoch run. No
    Windows here: the script's own os answers as Windows would, and its time.sleep only counts the waits."""
    module = importlib.import_module(script)
    path = tmp_path / "x.pt"
    module.save_checkpoint(str(path), {"epoch": 1})
    system, waits = argparse.Namespace(**vars(os)), []
    monkeypatch.setattr(module, "os", system)
    monkeypatch.setattr(module, "time", argparse.Namespace(**{**vars(time), "sleep": waits.append}))

    def held_for(refusals):
        def replace(src, dst):
            if len(waits) < refusals:
                raise PermissionError(13, "Access is denied")
            os.replace(src, dst)

        return replace

    system.name, system.replace = "nt", held_for(2)  # let go after two waits: written
    module.save_checkpoint(str(path), {"epoch": 2})
    assert load(path) == {"epoch": 2} and waits == [0.1, 0.2]

    def still_held(name):
        raise PermissionError(13, "Access is denied", name)

    kept = "the previous one is kept, and --resume continues it"
    for name, waited in [("nt", [0.1, 0.2, 0.4, 0.8, 1.6]), ("posix", [])]:  # never let go; on POSIX, no retry
        system.name, system.replace, waits[:] = name, held_for(99), []
        system.remove = still_held if name == "nt" else os.remove  # nor the temp file: left, not a traceback
        with pytest.raises(SystemExit) as stop:
            module.save_checkpoint(str(path), {"epoch": 3})
        assert stop.value.code == f"Cannot write {path} (Access is denied): {kept}"
        assert waits == waited and load(path) == {"epoch": 2}
        assert sorted(f.name for f in tmp_path.iterdir()) == ["x.pt"] + [f"x.pt.{os.getpid()}.tmp"] * (name == "nt")
        (tmp_path / f"x.pt.{os.getpid()}.tmp").unlink(missing_ok=True)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_full_disk_under_the_report_figures_is_one_line_after_a_whole_checkpoint(
    script, small_data_root, tmp_path, monkeypatch
):
    """The figures come after the last checkpoint: a disk that fills up there (or a run folder deleted meanwhile)
    must not end a finished run in PIL's traceback."""
    monkeypatch.setattr(Image, "builtins", argparse.Namespace(open=FullDisk))  # every PNG: PIL opens with builtins
    argv = ["--data-root", str(small_data_root), "--epochs", "1", "--batch-size", "16", "--log-every", "100"]
    with pytest.raises(SystemExit) as stop:
        run_main(script, [*argv, "--ckpt", str(tmp_path / "x.pt"), "--logdir", str(tmp_path / "runs")])
    ckpt = load(tmp_path / "x.pt")
    expected = f"Cannot write the report's figures in {ckpt['run_dir']} (No space left on device); the run is saved in"
    assert str(stop.value.code).startswith(expected) and ckpt["epoch"] == 1
    assert not list(Path(ckpt["run_dir"]).glob("*.png"))  # PIL removed what it could not finish
    tag = f"{VARIANTS[script][2]}/Step/Loss_D"
    assert [e.step for e in events(ckpt["run_dir"]).Scalars(tag)] == [1, 2]  # the curves are there all the same


def corrupt_copy(data_root, tmp_path, name, damage):
    raw = tmp_path / "FashionMNIST" / "raw"
    shutil.copytree(data_root / "FashionMNIST" / "raw", raw)
    damage(raw / name)
    return tmp_path


@pytest.mark.parametrize("script", SCRIPTS)
def test_corrupt_data_files_are_named(script, data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    truncate = lambda f: f.write_bytes(f.read_bytes()[:1000])  # noqa: E731 (what an interrupted extraction leaves)
    root = corrupt_copy(data_root, tmp_path / "t", "train-images-idx3-ubyte", truncate)
    code, err = main_exit(script, ["--data-root", str(root), "--ckpt", "x.pt"], capsys)
    assert code == 2 and "train-images-idx3-ubyte is truncated or corrupt" in err and "delete it" in err, err
    if script == "gan":  # a .gz whose md5 is wrong: checked once
        for key, value in OFFLINE.items():
            monkeypatch.setenv(key, value)
        gz = lambda f: (f.unlink(), f.with_suffix(".gz").write_bytes(b"\x1f\x8b garbage"))  # noqa: E731
        root = corrupt_copy(data_root, tmp_path / "g", "train-images-idx3-ubyte", gz)
        code, err = main_exit(script, ["--data-root", str(root), "--ckpt", "x.pt"], capsys)
        assert code == 2 and "train-images-idx3-ubyte.gz is corrupt" in err, err


@pytest.mark.parametrize("script", SCRIPTS)
def test_gz_files_that_cannot_be_extracted_are_named(script, data_root, tmp_path, capsys, monkeypatch):
    """A read-only folder of official .gz files (a lab server's shared copy): torchvision extracts them beside
    themselves and reads the extracted files, so the answer names the folder's problem, not a failed download."""
    monkeypatch.chdir(tmp_path)
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    raw = tmp_path / "FashionMNIST" / "raw"
    shutil.copytree(data_root / "FashionMNIST" / "raw", raw)
    resources = []  # the official four as .gz files only; the tiny ones stand in, with their own md5
    for name, _ in torchvision.datasets.FashionMNIST.resources:
        f = raw / name[: -len(".gz")]
        f.with_suffix(".gz").write_bytes(gzip.compress(f.read_bytes()))
        resources.append((name, hashlib.md5(f.with_suffix(".gz").read_bytes()).hexdigest()))
        f.unlink()
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "resources", resources)
    name = resources[0][0]  # torchvision takes them in this order

    def read_only(archive, *_):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), archive[: -len(".gz")])

    with monkeypatch.context() as m:
        m.setattr(torchvision.datasets.utils, "extract_archive", read_only)
        code, err = main_exit(script, ["--data-root", str(tmp_path), "--ckpt", "x.pt"], capsys)
    assert code == 2 and f"{name} is the official file, but extracting it there failed (Read-only file system)" in err
    assert "download" not in err and "gunzip -k" in err, err
    # Without the first file, torchvision stops there: a failed download, however the other three stand.
    shutil.copytree(raw, tmp_path / "three" / "FashionMNIST" / "raw")
    (tmp_path / "three" / "FashionMNIST" / "raw" / name).unlink()
    code, err = main_exit(script, ["--data-root", str(tmp_path / "three"), "--ckpt", "x.pt"], capsys)
    assert code == 2 and "FashionMNIST is not in" in err and "the download failed" in err, err
    # Where it can be extracted, the same folder is the data: the README's "copy the .gz files there" works.
    args = argparse.Namespace(dataset="fashion-mnist", data_root=str(tmp_path))
    images = importlib.import_module(script).load_images(argparse.ArgumentParser(), args, torch.device("cpu"))
    assert images.shape == (320, 1, 28, 28) and images.dtype == torch.uint8


@pytest.mark.parametrize("variant", ["dcgan", "wgan"])
def test_batch_norm_scripts_refuse_one_image_batches(variant, capsys):
    code, err = main_exit(variant, ["--batch-size", "1"], capsys)
    assert code == 2 and "batch norm needs at least 2 images" in err


@pytest.mark.parametrize("script", ["gan", "dcgan"])  # wgan.py draws a random batch for every critic step
def test_an_epoch_trains_on_every_image_once_the_last_batch_smaller(script, data_root, tmp_path, monkeypatch):
    module, batches = importlib.import_module(script), []

    def train_step(real_images, *_):  # records what the loop feeds the handout's steps, trains nothing
        batches.append(real_images.clone())
        return torch.full((4,), 0.5)

    monkeypatch.setattr(module, "train_step", train_step)
    ticks = iter(range(100))
    monkeypatch.setattr(module, "time", argparse.Namespace(perf_counter=lambda: float(next(ticks))))  # 1 s an epoch
    argv = ["--data-root", str(data_root), "--batch-size", "48", "--epochs", "1", "--ckpt", str(tmp_path / "x.pt")]
    out = run_quietly(script, [*argv, "--logdir", str(tmp_path / "runs")])
    assert [len(batch) for batch in batches] == [48] * 6 + [32]  # 320 images
    assert "| 1.00 s | 320 img/s |" in out, out  # the images trained, not 7 full batches
    images = sorted(torch.cat(batches).flatten(1).tolist())
    assert images == sorted(module.to_unit(tiny_split(320, len("train"))[0]).flatten(1).tolist())  # data_root's


def test_wgan_images_per_second_count_every_critic_batch(data_root, tmp_path, monkeypatch):
    wgan = importlib.import_module("wgan")
    monkeypatch.setattr(wgan, "train_step", lambda *_: torch.full((4,), 0.5))  # trains nothing
    ticks = iter(range(100))
    monkeypatch.setattr(wgan, "time", argparse.Namespace(perf_counter=lambda: float(next(ticks))))  # 1 s an epoch
    argv = ["--data-root", str(data_root), "--batch-size", "48", "--n-critic", "3", "--epochs", "1"]
    out = run_quietly("wgan", [*argv, "--ckpt", str(tmp_path / "x.pt"), "--logdir", str(tmp_path / "runs")])
    assert f"| 1.00 s | {7 * 48 * 3} img/s |" in out, out  # 7 generator steps, 3 critic batches of 48 each


def test_an_epoch_never_ends_with_a_one_image_batch(data_root, tmp_path, capsys):
    # 320 images at batch 319 would leave one image for a second step, which batch norm cannot train on.
    argv = ["--data-root", str(data_root), "--batch-size", "319", "--epochs", "1", "--log-every", "1"]
    run_main("dcgan", [*argv, "--ckpt", str(tmp_path / "x.pt"), "--logdir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert "| 1 steps/epoch |" in out and "Epoch 00 | Step 0001 / 0001" in out


def test_crafted_checkpoints_exit_2(trained, tmp_path, capsys, monkeypatch):
    if trained["variant"] == "wgan-gp":
        pytest.skip("one variant per script")
    monkeypatch.chdir(tmp_path)
    script, extra, *_ = VARIANTS[trained["variant"]]
    good = load(trained["cwd"] / "a.pt")
    for name, ckpt, message in [
        ("no_args.pt", {k: v for k, v in good.items() if k != "args"}, "lacks args"),
        ("no_G.pt", {k: v for k, v in good.items() if k != "G"}, "lacks G"),
        ("shape.pt", {**good, "args": {**good["args"], "latent_dim": 7}}, "does not fit"),
    ]:
        torch.save(ckpt, tmp_path / name)
        flags = ["--resume", "--ckpt", name, "--epochs", "3", "--data-root", str(trained["data_root"])]
        code, err = main_exit(script, extra + flags, capsys)
        assert code == 2 and message in err, (name, err)


def test_perturb_refuses_bad_numbers_and_paths_and_names_each_figure(trained, tmp_path, capsys):
    if trained["variant"] != "gan":
        pytest.skip("checked once")
    import perturb

    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes((trained["cwd"] / "a.pt").read_bytes())
    (tmp_path / "nan.txt").write_text(" ".join(["nan"] * 100) + "\n")
    for flags, message in [
        (["--values", "1", "nan"], "--values: must be finite"),
        (["--sweep", "3", "--range", "-3", "inf"], "--range: must be finite"),
        (["--vectors", str(tmp_path / "nan.txt")], "NaN or infinite"),
        (["--out", str(tmp_path / "nodir" / "x.png")], "--out: cannot write"),
        (["--out", str(tmp_path / "x.unknown")], "--out: unknown image type"),
        (["--logdir", str(tmp_path / "nan.txt" / "tb")], "--logdir: cannot create"),
        (["--seed", str(2**64)], "--seed: must be in [0, 2^32)"),  # torch's overflow, a traceback, before
    ]:
        with pytest.raises(SystemExit) as exc:
            perturb.main(["--ckpt", str(ckpt), *flags])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err, (flags, err)
    for flags, name in [
        ([], "perturb_m.png"),
        (["--mode", "set"], "perturb-set_m.png"),
        (["--interpolate"], "interpolate_m.png"),
        (["--interpolate", "--slerp"], "interpolate-slerp_m.png"),
        (["--sweep", "3", "--mode", "set"], "sweep3-set_m.png"),
    ]:
        perturb.main(["--ckpt", str(ckpt), "--n-samples", "2", *flags])
        assert (tmp_path / name).exists(), flags
    perturb.main(["--ckpt", str(ckpt), "--interpolate", "--n-samples", "3"])
    assert "vector #3 has no partner" in capsys.readouterr().out
    for flags in [["--n-samples", "100000"], ["--steps", "1001"], ["--scale", "33"]]:  # asked of the parser alone:
        with pytest.raises(SystemExit) as exc:  # without the ceiling, the figure itself would take gigabytes
            perturb.parse_args(["--ckpt", str(ckpt), *flags])
        assert exc.value.code == 2 and f"{flags[0]}: must be in [" in capsys.readouterr().err, flags
    # Each flag within its ceiling, their product not: 15 rows x 1000 columns of 86-pixel cells, 113 megapixels.
    with pytest.raises(SystemExit) as exc:
        perturb.main(["--ckpt", str(ckpt), "--n-samples", "1000", "--scale", "3", "--out", str(tmp_path / "big.png")])
    assert exc.value.code == 2 and "86074 x 1308 pixels, past the 89478485 that PIL opens" in capsys.readouterr().err
    assert not (tmp_path / "big.png").exists()


def test_a_saturated_discriminator_is_reported(data_root, tmp_path, capsys):
    argv = ["--data-root", str(data_root), "--batch-size", "16", "--epochs", "1", "--log-every", "5"]
    run_main("gan", [*argv, "--lr", "1e6", "--ckpt", str(tmp_path / "x.pt"), "--logdir", str(tmp_path / "runs")])
    assert "sits at BCE's clamp" in capsys.readouterr().err


@pytest.mark.parametrize("script", [*SCRIPTS, "perturb", "evaluate"])
def test_an_older_python_is_refused_in_one_line_before_anything_runs(script, capsys, monkeypatch):
    """zip(strict=True) is 3.10's: on 3.9 a run would train for 30 epochs and then fail drawing its figures."""
    monkeypatch.setattr(sys, "version_info", (3, 9, 18, "final", 0))
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(ROOT / f"{script}.py"), run_name="__main__")
    assert exc.value.code == 2 and "needs Python 3.10 or newer" in capsys.readouterr().err


def test_ctrl_c_while_starting_is_one_line(data_root, tmp_path):
    proc = subprocess.Popen(
        command("gan", "--epochs", "1", data_root=data_root), cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True
    )
    maps, deadline = Path(f"/proc/{proc.pid}/maps"), time.time() + 30
    if not maps.exists():  # no /proc: most machines are still importing torch by then
        time.sleep(0.5)
    while maps.exists() and "libtorch" not in maps.read_text() and time.time() < deadline:
        time.sleep(0.01)  # a fixed sleep raced the interpreter's start on a loaded machine
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err and "Interrupted before training started" in err


# Runs a script as python would, but the first `import torch` meets a Ctrl-C and swallows the script's exit, as torch
# 2.4.1's C extension does when the signal lands while it loads (the run then trained on as if nothing happened).
SWALLOWING_IMPORT = """
import runpy, signal, sys
class Swallow:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            try:
                signal.raise_signal(signal.SIGINT)  # the script's handler raises SystemExit in here
            except BaseException:
                pass
sys.meta_path.insert(0, Swallow())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_ctrl_c_swallowed_while_torch_loads_still_stops_the_run(data_root, tmp_path):
    (tmp_path / "swallow.py").write_text(SWALLOWING_IMPORT)
    python, *argv = command("gan", "--epochs", "1", data_root=data_root)
    result = subprocess.run([python, "swallow.py", *argv], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.strip() == "Interrupted before training started: nothing to save"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "gan.pt").exists()


def test_resuming_a_copied_checkpoint_leaves_the_original_run_alone(trained, tmp_path, capsys):
    if trained["variant"] != "gan":
        pytest.skip("checked once")
    original = run_dir_of(trained, "a.pt")
    before = {f.name: f.stat().st_mtime_ns for f in original.iterdir()}
    (tmp_path / "copy.pt").write_bytes((trained["cwd"] / "a.pt").read_bytes())
    argv = ["--data-root", str(trained["data_root"]), "--epochs", "3", "--resume", "--logdir", str(original.parent)]
    run_main("gan", [*argv, "--ckpt", str(tmp_path / "copy.pt")])  # the same --logdir as the original run
    assert {f.name: f.stat().st_mtime_ns for f in original.iterdir()} == before
    new = run_dir_of({"cwd": tmp_path}, "copy.pt")
    assert new != original and new.parent == original.parent and (new / "progress.png").exists()
    assert sorted(f.name for f in new.glob("samples_*.png")) == [
        "samples_000pct_epoch000.png",  # from the samples the checkpoint keeps of every epoch
        "samples_025pct_epoch001.png",
        "samples_050pct_epoch002.png",
        "samples_075pct_epoch003.png",
        "samples_100pct_epoch003.png",
    ]


# ===== A short learning test: a GAN that does not learn fails =====
def test_gan_learns_the_bars(data_root, tmp_path):
    """200 steps of gan.py on the tiny bar images: the rows' brightness moves most of the way to the data's."""
    argv = [
        "--data-root",
        str(data_root),
        "--batch-size",
        "16",
        "--epochs",
        "10",
        "--hidden-dim",
        "128",
        "--lr",
        "5e-4",
    ]
    run_main("gan", [*argv, "--ckpt", str(tmp_path / "g.pt"), "--logdir", str(tmp_path / "runs")])
    history = load(tmp_path / "g.pt")["history"]  # the fixed-noise samples of every epoch, uint8
    images, _ = tiny_split(320, len("train"))  # the data_root fixture's FashionMNIST training split
    profile = lambda x: x.float().mean(dim=(0, 1, 3))  # noqa: E731 (mean brightness of each of the 28 rows)
    data = profile(images.unsqueeze(1))
    untrained, trained = (profile(history[0]) - data).abs().mean(), (profile(history[10]) - data).abs().mean()
    assert trained < 0.25 * untrained, (trained, untrained)  # measured: 3.1 against 84.5


# ===== The CUDA-graph path: its CPU-visible parts here, the GPU tests below =====
def test_a_checkpoint_of_a_graph_run_resumes_with_this_runs_optimiser_flags(trained, tmp_path):
    """A GPU graph run saves capturable=True; a CPU resume that kept it would crash (RMSprop) or run it uncaptured."""
    if trained["variant"] not in ("gan", "wgan"):
        pytest.skip("one script per optimiser: Adam (gan.py's, as dcgan.py's and --gp's) and RMSprop (wgan.py's)")
    ckpt = load(trained["cwd"] / "a.pt")
    for key in ["optim_G", "optim_D"]:
        for group in ckpt[key]["param_groups"]:
            group["capturable"] = True  # as a CUDA-graph run writes it
    ckpt["ckpt_path"] = None  # a copy: it gets a run folder of its own
    torch.save(ckpt, tmp_path / "g.pt")
    script, extra, *_ = VARIANTS[trained["variant"]]
    argv = [*command(trained["variant"], data_root=trained["data_root"])[2:], "--ckpt", str(tmp_path / "g.pt")]
    run_quietly(script, [*argv, "--logdir", str(tmp_path / "runs"), "--epochs", "3", "--resume", "--no-cuda-graph"])
    resumed = load(tmp_path / "g.pt")
    assert resumed["epoch"] == 3
    assert not any(g["capturable"] for key in ["optim_G", "optim_D"] for g in resumed[key]["param_groups"])


def test_the_cuda_graph_block_is_the_same_in_every_script():
    import inspect

    blocks = {inspect.getsource(importlib.import_module(script).CUDAGraphStep) for script in SCRIPTS}
    assert len(blocks) == 1  # one block, the same words: diff gan.py wgan.py shows only the algorithm


CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (run on the device: see the README)")
# variant -> flags for the GPU runs: 320 images at batch 48 end each epoch with a 32-image batch, the eager one.
GPU_FLAGS = {"gan": ["--batch-size", "48"], "dcgan": ["--batch-size", "48"], "wgan": ["--batch-size", "64"]}
GPU_FLAGS["wgan-gp"] = GPU_FLAGS["wgan"]


@gpu
def test_a_graphed_step_is_one_real_step_per_call_with_fresh_inputs_and_noise():
    import gan

    count = torch.zeros((), device="cuda")

    def step(x):
        count.add_(1)  # in place: the graph records it, so every replay counts
        return torch.stack([x.sum(), torch.randn((), device="cuda")])

    graphed = gan.CUDAGraphStep(step, warmup=2)
    outputs = [graphed(torch.full((4,), float(k), device="cuda")) for k in range(6)]  # read after the last replay
    outputs = [output.tolist() for output in outputs]  # as the loop reads them: each call's own, not the last's
    assert graphed.graph is not None and count.item() == 6  # 2 warm-up calls, the capturing call, 3 replays
    assert [sum_ for sum_, _ in outputs] == [4.0 * k for k in range(6)]  # each call's input, not the captured one
    assert len({z for _, z in outputs}) == 6  # a new draw every replay, not the one frozen at capture


@gpu
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_graph_path_trains_like_the_eager_path(variant, data_root, tmp_path):
    """Same seed, 2 epochs: the graph path's losses and final networks stay with the eager path's.

    Not bit for bit everywhere: cuDNN may time other algorithms in the two runs, and a GAN grows such last-bit
    differences (on an H200: up to 0.2% in a loss in dcgan.py and wgan.py; gan.py bit for bit). A broken graph
    (a lost clip, BN update or penalty) moves them far more; a frozen batch or z is the test above's. Networks are
    compared whole: per tensor, BN's shifts start at 0 and their relative drift means nothing. For --gp this
    also shows that the penalty's double backward reaches D inside the graph."""
    script = VARIANTS[variant][0]
    runs = {}
    for name, flags in [("eager", ["--no-cuda-graph"]), ("graph", [])]:
        argv = [*command(variant, data_root=data_root)[2:], *GPU_FLAGS[variant], "--device", "cuda"]
        argv += ["--epochs", "2", "--ckpt", str(tmp_path / f"{name}.pt"), *flags]  # losses read every 2 steps
        output = run_quietly(script, [*argv, "--logdir", str(tmp_path / name)])
        assert ("(CUDA graph" in output) == (name == "graph"), output
        runs[name] = load(tmp_path / f"{name}.pt")
    tag, scalars = VARIANTS[variant][2], {name: events(run["run_dir"]) for name, run in runs.items()}
    drift = {}
    for loss in ["Loss_D", "Loss_G"]:
        graph, eager = (torch.tensor([e.value for e in scalars[n].Scalars(f"{tag}/Step/{loss}")]) for n in runs)
        assert len(graph) == len(eager) > 8, loss
        drift[loss] = ((graph - eager).abs() / eager.abs().clamp_min(0.1)).max().item()  # every step's
    for net in ["G", "D"]:
        graph, eager = runs["graph"][net], runs["eager"][net]
        for key in [key for key, value in eager.items() if not value.is_floating_point()]:
            assert torch.equal(graph[key], eager[key]), f"{net}.{key}"  # BN's batch count: an update every step
        flat = [torch.cat([d[k].flatten() for k in eager if eager[k].is_floating_point()]) for d in (graph, eager)]
        drift[net] = ((flat[0] - flat[1]).norm() / flat[1].norm()).item()
    print(f"{variant}: graph vs eager, largest relative difference: {drift}")
    assert max(drift.values()) < 1e-2, drift


@gpu
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_graph_path_survives_ctrl_c_and_resumes_across_modes(variant, data_root, tmp_path):
    script = VARIANTS[variant][0]
    cmd = lambda *f: [*command(variant, data_root=data_root), *GPU_FLAGS[variant], "--device", "cuda", *f]  # noqa: E731
    rc, output = interrupted_run(cmd("--epochs", "2", "--ckpt", "c.pt", "--log-every", "1"), tmp_path, after=5)
    assert rc == 130 and "Interrupted: saved c.pt" in output and "Traceback" not in output, output
    assert "(CUDA graph" in output
    argv = lambda name, *f: [*cmd("--ckpt", str(tmp_path / name), "--logdir", str(tmp_path / "runs"), *f)[2:]]  # noqa: E731
    run_quietly(script, argv("c.pt", "--epochs", "2", "--resume"))
    assert load(tmp_path / "c.pt")["epoch"] == 2
    # An eager checkpoint resumed by the graph path, and back: each run uses its own optimiser flags.
    run_quietly(script, argv("m.pt", "--epochs", "1", "--no-cuda-graph"))
    for epochs, mode, capturable in [("2", "--cuda-graph", True), ("3", "--no-cuda-graph", False)]:
        run_quietly(script, argv("m.pt", "--epochs", epochs, "--resume", mode))
        ckpt = load(tmp_path / "m.pt")
        assert ckpt["epoch"] == int(epochs)
        assert all(g["capturable"] == capturable for key in ["optim_G", "optim_D"] for g in ckpt[key]["param_groups"])


@gpu
@pytest.mark.parametrize(
    "variant, mode",
    [("gan", "--cuda-graph"), ("gan", "--no-cuda-graph"), ("dcgan", "--cuda-graph"), ("wgan", "--cuda-graph")],
)
def test_a_diverging_gpu_run_stops_with_one_line(variant, mode, data_root, tmp_path):
    """On a GPU, BCELoss's NaN check is a device-side assert that surfaces later; the run still stops with the line."""
    cmd = [*command(variant, data_root=data_root), *GPU_FLAGS[variant], "--device", "cuda", "--epochs", "1", mode]
    cmd += ["--lr", "1e30", "--ckpt", str(tmp_path / "n.pt"), "--logdir", str(tmp_path / "runs")]
    result = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "NaN or infinite" in result.stderr, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "n.pt").exists()


# ===== bench/results.py: seeds, resume, the table =====
def test_results_script_refuses_its_own_flags_after_extra_before_any_work(tmp_path, capsys):
    """--extra passes all that follows to the training runs: `--extra --dataset mnist --figure f.png` would have
    trained for the figure's sake and then failed in gan.py's argument parser."""
    sys.path.insert(0, str(ROOT / "bench"))
    import results

    for flag in ["--figure", "--seeds", "--seed", "--ckpt=x.pt"]:
        with pytest.raises(SystemExit) as stop:
            results.parse_args([str(tmp_path / "out"), "--extra", "--dataset", "mnist", flag, "1"])
        assert stop.value.code == 2 and flag.split("=")[0] in capsys.readouterr().err.splitlines()[-1]
    args = results.parse_args([str(tmp_path / "out"), "--figure", "f.png", "--extra", "--dataset", "mnist"])
    assert (args.figure, args.extra) == ("f.png", ["--dataset", "mnist"])  # before --extra: results.py's own
    assert not (tmp_path / "out").exists()


def test_results_script_refuses_unwritable_out_and_figure_before_any_work(tmp_path, capsys):
    """An out folder under a file was a traceback, and an unwritable --figure failed only after every run trained."""
    sys.path.insert(0, str(ROOT / "bench"))
    import results

    (tmp_path / "a_file").write_text("")
    no_data = ["--data-root", str(tmp_path / "no_data")]  # past the checks, the data's own refusal: a wrong message
    for argv, message in [
        ([str(tmp_path / "a_file" / "out")], "argument out: cannot create the folder"),
        ([str(tmp_path / "a_file")], "argument out: cannot create the folder"),
        ([str(tmp_path / "out"), "--figure", str(tmp_path / "nodir" / "f.png")], "argument --figure: cannot write"),
        ([str(tmp_path / "out"), "--figure", str(tmp_path)], "argument --figure: cannot write"),
    ]:
        with pytest.raises(SystemExit) as stop:
            results.main([*argv, *no_data])
        assert stop.value.code == 2 and message in capsys.readouterr().err.splitlines()[-1], argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # no out folder made, nothing trained


def test_results_script_refuses_bad_seeds_and_sample_counts_before_any_work(tmp_path, capsys):
    """A --n that evaluate.py refuses was found only after 30 epochs of training, and a bad seed by each run."""
    sys.path.insert(0, str(ROOT / "bench"))
    import results

    for flags, message in [
        (["--n", "3"], "--n: at least 256 samples"),
        (["--seeds", "0", str(2**32)], "--seeds: each must be in [0, 2^32)"),
    ]:
        with pytest.raises(SystemExit) as stop:
            results.main([str(tmp_path / "out"), *flags])
        assert stop.value.code == 2 and message in capsys.readouterr().err.splitlines()[-1], flags
    with pytest.raises(SystemExit) as stop:  # the parser alone: without its ceiling, main() would start training
        results.parse_args([str(tmp_path / "out"), "--n", "60001"])
    assert stop.value.code == 2 and "--n: at most 60000 samples" in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_results_figure_labels_each_row_and_names_the_flags_of_candidates_and_recipes(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "bench"))
    import results

    names = ["dcgan", "wgan_gp", "dcgan_lr1e-4_ls", "dcgan_lr1e-4_lrd5e-5_ls"]
    for k, name in enumerate(names):  # a grey of its own for each configuration's sample row, and for each seed
        for seed in [0, 2]:
            Image.new("L", (20, 8), 10 * k + 100 * (seed == 2)).save(tmp_path / f"{name}_seed{seed}.png")
    drawn = {}

    def labelled(path, tiles, labels, **kw):
        drawn.update(kw, labels=labels, greys=[tile.getpixel((0, 0)) for tile in tiles])

    monkeypatch.setattr(results.gan, "labelled", labelled)
    args = argparse.Namespace(out=str(tmp_path), seeds=[2, 0], epochs=30, extra=["--dataset", "mnist"])
    results.figure(args, names, str(tmp_path / "f.png"))
    assert drawn["title"].startswith("MNIST, 30 epochs, seed 2")  # a figure says what it was trained on
    assert drawn["greys"] == [100, 110, 120, 130]  # each label beside its own configuration's row, of the first seed
    assert drawn["labels"] == [
        "dcgan.py, handout defaults",
        "wgan.py --gp 10 (WGAN-GP)",  # its flags are in its name already
        "dcgan.py candidate --lr 1e-4 --label-smoothing 0.1",
        "dcgan.py recipe --lr 1e-4 --lr-d 5e-5 --label-smoothing 0.1",
    ]


def test_results_script_trains_seeds_resumes_and_prints_mean_and_spread(data_root, tmp_path, capsys, monkeypatch):
    sys.path.insert(0, str(ROOT / "bench"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # its runs go two side by side on the two cores
    import results

    # A candidate whose name has a dot: its files must not lose "0.2" to a suffix, and its flags must reach the run.
    monkeypatch.setitem(results.CONFIGS, "gan_ls0.2", ("gan", "--label-smoothing 0.2", "gan.py candidate"))
    out = tmp_path / "out"
    argv = [str(out), "--epochs", "1", "--seeds", "0", "1", "--only", "gan_ls0.2", "--jobs", "2"]
    argv += ["--data-root", str(data_root), "--n", "256", "--figure", str(tmp_path / "rows.png")]
    argv += ["--extra", "--batch-size", "32", "--log-every", "5"]
    results.main(argv)
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("| gan.py candidate |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["`--label-smoothing 0.2`", "2"] and all(" ± " in c for c in cells[4:]), row
    assert re.fullmatch(r"\S+ ± \S+ \((\d+), (\d+)\)", cells[7]), (
        row
    )  # mean ± sd over the two seeds, each seed's classes
    seeds = [results.score(results.parse_args(argv), "gan_ls0.2", s) for s in [0, 1]]  # each run's own scores file
    for (key, _, digits), text in zip(results.METRICS, cells[4:], strict=True):
        a, b = (float(r[key]) for r in seeds)
        mean, sd = (a + b) / 2, abs(a - b) / math.sqrt(2)  # the sample standard deviation (n - 1) of two values
        assert text.split(" (")[0] == f"{mean:.{digits}f} ± {sd:.{digits}f}", (key, text, a, b)
    for s in [0, 1]:
        assert re.search(rf"^- gan_ls0\.2, seed {s}: .* under 5%$", table, re.M), table
        ran = load(out / f"gan_ls0.2_seed{s}.pt")["args"]
        assert (ran["label_smoothing"], ran["seed"], seeds[s]["epochs"]) == (0.2, s, 1)
    assert (out / "table.md").read_text().strip() == table.split("\nfigure:")[0].strip()
    assert Image.open(tmp_path / "rows.png").size[1] > 2 * 30  # one labelled row of samples
    args = results.parse_args(argv)
    log = (out / "gan_ls0.2_seed0.log").read_text()
    results.train(args, "gan_ls0.2", 0)  # finished: not trained again
    assert (out / "gan_ls0.2_seed0.log").read_text() == log
    args.epochs = 2

    def in_process(cmd, stdout, stderr):  # the same command line, run here: a subprocess spends ~7 s on imports
        assert cmd[0] == sys.executable and stderr == subprocess.STDOUT
        stdout.write(run_quietly(Path(cmd[1]).stem, cmd[2:]))
        return subprocess.CompletedProcess(cmd, 0)

    with monkeypatch.context() as m:
        m.setattr(results.subprocess, "run", in_process)
        results.train(args, "gan_ls0.2", 0)  # unfinished for 2 epochs: resumed, not restarted
    resumed = (out / "gan_ls0.2_seed0.log").read_text()  # the first call's lines kept: its epochs count in s/epoch
    assert (
        resumed.startswith(log) and "Resuming" in resumed[len(log) :] and load(out / "gan_ls0.2_seed0.pt")["epoch"] == 2
    )
    # A folder brought back from a GPU machine holds scores, logs and sample rows, not checkpoints: nothing retrains.
    for ckpt in out.glob("*.pt"):
        ckpt.unlink()
    kept = {path.name: path.read_text() for path in [*out.glob("*.log"), out / "scores.json"]}
    results.main(argv)
    assert "| gan.py candidate |" in capsys.readouterr().out and not list(out.glob("*.pt"))
    assert {path.name: path.read_text() for path in [*out.glob("*.log"), out / "scores.json"]} == kept


def test_a_loans_results_are_kept_and_the_next_loan_starts_from_them(tmp_path):
    """bench/gpu_session.sh: `keep` files what a GPU call brought back, and `results` (here without training: the
    Python it calls is `true`) starts from the kept runs without overwriting those already there, and sends them back.
    """
    (tmp_path / "bench").mkdir()
    shutil.copy(ROOT / "bench" / "gpu_session.sh", tmp_path / "bench")
    brought = tmp_path / "brought" / "gpu_results"
    brought.mkdir(parents=True)
    for name in ["gan_seed0.json", "gan_seed0.log", "gan_seed0.png", "table.md"]:
        (brought / name).write_text(name)
    subprocess.run(["tar", "czf", "results.tar.gz", "gpu_results"], cwd=brought.parent, check=True)
    env = {**os.environ, "KEPT": str(tmp_path / "kept"), "OUT": str(tmp_path / "out"), "PYTHON": "true"}
    script = ["bash", str(tmp_path / "bench" / "gpu_session.sh")]
    subprocess.run([*script, "keep", str(brought.parent)], env=env, check=True, capture_output=True)
    run_files = ["gan_seed0.json", "gan_seed0.log", "gan_seed0.png"]
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [*run_files, "table.md"]
    (tmp_path / "gpu_results").mkdir()
    (tmp_path / "gpu_results" / "gan_seed0.log").write_text("carried")  # a carried folder's file wins
    subprocess.run([*script, "results", "gan"], env=env, check=True, capture_output=True)
    assert sorted(p.name for p in (tmp_path / "gpu_results").iterdir()) == run_files  # a run's files, not the table
    assert (tmp_path / "gpu_results" / "gan_seed0.log").read_text() == "carried"
    listed = subprocess.run(["tar", "tzf", tmp_path / "out" / "results.tar.gz"], capture_output=True, text=True)
    assert sorted(listed.stdout.split()) == [f"gpu_results/{name}" for name in run_files]  # sent back
    bad = subprocess.run([*script, "keep", str(tmp_path / "nowhere")], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_a_results_call_uses_mps_only_where_it_starts(tmp_path):
    """bench/gpu_session.sh results with RESULTS_MPS=1: the runs get MPS's pipes where its daemon starts and answers,
    and the daemon is stopped after them; where it does not start, they run without it. RESULTS_JOBS reaches results.py.
    """
    (tmp_path / "bench").mkdir()
    shutil.copy(ROOT / "bench" / "gpu_session.sh", tmp_path / "bench")
    (tmp_path / "bin").mkdir()
    calls = tmp_path / "calls.txt"
    fake_python = tmp_path / "bin" / "python"  # records how it was called, and whether MPS's pipes were passed on
    fake_python.write_text(f'#!/bin/sh\necho "python ${{CUDA_MPS_PIPE_DIRECTORY:-none}} $*" >> {calls}\n')
    mps = tmp_path / "bin" / "nvidia-cuda-mps-control"
    mps.write_text(f'#!/bin/sh\necho "mps $* $(cat <&0 2>/dev/null)" >> {calls}\nexit $MPS_RC\n')
    for fake in (fake_python, mps):
        fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "PYTHON": str(fake_python)}
    env |= {"KEPT": str(tmp_path / "kept"), "OUT": str(tmp_path / "out"), "RESULTS_MPS": "1", "RESULTS_JOBS": "6"}
    for rc, started in [("0", True), ("1", False)]:
        calls.write_text("")
        script = ["bash", str(tmp_path / "bench" / "gpu_session.sh"), "results", "dcgan"]
        subprocess.run(script, env={**env, "MPS_RC": rc}, check=True, capture_output=True, stdin=subprocess.DEVNULL)
        lines = calls.read_text().splitlines()
        results = [line for line in lines if "bench/results.py" in line]
        assert len(results) == 1 and "--jobs 6" in results[0] and "--only dcgan" in results[0], lines
        assert results[0].startswith("python /tmp/gan_mps/pipe " if started else "python none "), lines
        stopped = lines.index("mps  quit")  # after the runs, or at once where the daemon did not answer
        assert lines[0] == "mps -d " and stopped == (len(lines) - 1 if started else lines.index(results[0]) - 1), lines
        said = (tmp_path / "out" / "results.txt").read_text().splitlines()[-1]
        assert said == (
            "MPS on: 6 runs side by side" if started else "MPS did not start: 6 runs side by side, time-sliced"
        )
        (tmp_path / "out" / "results.txt").unlink()


def test_every_mutation_still_fits_the_code_it_breaks():
    """bench/mutations.py stops at an edit whose text is no longer in its file (on a GPU loan, with the loan's minutes),
    and an edit that breaks the syntax would be 'caught' by every test without showing that any test looks."""
    sys.path.insert(0, str(ROOT / "bench"))
    import mutations

    for k, (file, what, edits, *_) in mutations.numbered():
        original = text = (ROOT / file).read_text()
        for old, new in edits:
            assert text.count(old) == 1, f"mutation {k} ({what}): {old!r} is in {file} {text.count(old)} times"
            text = text.replace(old, new)
        assert text != original, f"mutation {k} ({what}) changes nothing"
        if file.endswith(".py"):
            compile(text, file, "exec")  # a SyntaxError names the mutation's file and line
        elif file.endswith(".sh"):
            checked = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
            assert checked.returncode == 0, f"mutation {k} ({what}): {checked.stderr}"


# ===== bench/flops.py: a step does the arithmetic it needs, and no more =====
def test_a_gan_step_multiplies_exactly_what_the_handouts_two_updates_need():
    """Counted by bench/flops.py; a D step that back-propagates into G, or a G step that computes D's weight
    gradients, costs more multiplies than this and fails."""
    sys.path.insert(0, str(ROOT / "bench"))
    import flops

    step = flops.step_of("gan", [], torch.device("cpu"))
    with flops.CountFlops() as counter:
        step()
    G, D = [100 * 256, 256 * 256, 256 * 784], [784 * 256, 256 * 256, 256 * 1]  # weights of each Linear (MACs)
    # D step: G(z) without grad, D(real) and D(fake); backward: D's weight gradients, input gradients past layer 1.
    d_step = sum(G) + 2 * sum(D) + 2 * sum(D) + 2 * sum(D[1:])
    # G step: D(G(z)); backward: D's input gradients only (D is frozen), G's weight and inner input gradients.
    g_step = sum(G) + sum(D) + sum(D) + sum(G) + sum(G[1:])
    assert counter.flops == 2 * 128 * (d_step + g_step)


@pytest.mark.parametrize(
    "script, flags, batch, d_steps",
    [("dcgan", [], 128, 1), ("wgan", ["--clip", "0.01", "--n-critic", "2", "--batch-size", "16"], 16, 2)],
    ids=["dcgan", "wgan"],
)
def test_a_conv_step_convolves_exactly_what_its_updates_need(script, flags, batch, d_steps):
    """The same count for the convolutional scripts (wgan.py's critic is dcgan.py's D without the Sigmoid, which
    convolves the same), held to cuDNN's TF32 peak by bench/flops.py on a GPU."""
    sys.path.insert(0, str(ROOT / "bench"))
    import flops

    step = flops.step_of(script, flags, torch.device("cpu"))
    step()  # as bench/flops.py counts: after the first step
    with flops.CountFlops() as counter:
        step()
    # Multiply-adds per image of D's conv1 (1 -> 32, 5x5, 28x28) and conv2 (32 -> 64, 14x14), G's transposed convs.
    c1, c2, t = 28 * 28 * 32 * 25, 14 * 14 * 64 * 25 * 32, 7 * 7 * 128 * 64 * 16 + 14 * 14 * 64 * 16
    # D step: D(real) and D(fake), G(z) without grad; backward: both convs' weights, conv2's input (not the images).
    d_step = 2 * (c1 + c2) + t + 2 * (c1 + 2 * c2)
    # G step: G(z) and D(G(z)); backward: D's input gradients only (frozen), G's weights and inputs.
    g_step = t + (c1 + c2) + (c1 + c2) + 2 * t
    assert counter.conv_flops == 2 * batch * (d_steps * d_step + g_step)
    assert 0 < counter.conv_flops < counter.flops  # the Linear layers are the rest
