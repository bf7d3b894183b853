"""Wasserstein GAN on FashionMNIST or MNIST, with weight clipping or gradient penalty: task 3 of the lab.

Arjovsky et al., "Wasserstein GAN", ICML 2017 (https://arxiv.org/abs/1701.07875): weight clipping.
Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017 (https://arxiv.org/abs/1704.00028):
gradient penalty (--gp). The handout's networks; single file: copy it as it is.

    python wgan.py --epochs 30 --clip 0.01       # the handout's WGAN: RMSprop 5e-5, 5 critic steps, writes wgan.pt
    python wgan.py --gp 10 --ckpt wgan_gp.pt     # WGAN-GP: Adam 1e-4, betas (0.5, 0.9), no clipping
    python wgan.py --epochs 60 --resume          # continue wgan.pt up to epoch 60
    tensorboard --logdir runs                    # watch WGAN/Wasserstein: it should fall as samples improve
    python perturb.py --ckpt wgan.pt             # latent-dimension grid
"""

import signal
import sys

if sys.version_info < (3, 10):  # noqa: UP036 (zip(strict=True) and more: one line now, not a traceback later)
    print(f"This script needs Python 3.10 or newer; this is {sys.version.split()[0]}", file=sys.stderr)
    sys.exit(2)
if __name__ == "__main__":  # Ctrl-C while torch loads: one line, not a traceback
    BEFORE_TRAINING, interrupted = "Interrupted before training started: nothing to save", []
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(True) or sys.exit(BEFORE_TRAINING))

import argparse
import contextlib
import glob
import io
import math
import os
import socket
import threading
import time
import warnings
from collections import OrderedDict
from datetime import datetime

import torch
import torch.nn as nn
import torchvision
from PIL import Image, ImageDraw, ImageFont
from torch.utils.tensorboard import SummaryWriter

if __name__ == "__main__" and interrupted:  # torch 2.4 swallows the exit if Ctrl-C lands while its C part loads
    sys.exit(BEFORE_TRAINING)

SCRIPT = "wgan"
DATASETS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}
# Flags a resumed run may change; the others are the run's own.
RESUMABLE = ("epochs", "ckpt", "resume", "device", "data_root", "logdir", "log_every", "cuda_graph")


# ===== Arguments =====
def positive(kind):
    def check(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return check


def seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < 2**32:  # torch seeds are 64-bit and the data order multiplies the seed: keep it 32-bit
        raise argparse.ArgumentTypeError(f"must be in [0, 2^32), got {text}")
    return value


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """--help with every default, except a flag that is off (False) or unset (None): its text says what that means."""

    def _get_help_string(self, action):
        return action.help if action.default is None or action.default is False else super()._get_help_string(action)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=Help)
    p.add_argument("--dataset", choices=DATASETS, default="fashion-mnist", help="training set")
    p.add_argument("--data-root", default="./data", help="holds <Name>/raw/*.gz; downloaded there if missing")
    p.add_argument("--epochs", type=positive(int), default=30, help="total epochs (with --resume: train up to this)")
    p.add_argument("--batch-size", type=positive(int), default=128, help="images per step")
    p.add_argument(
        "--lr",
        type=positive(float),
        help="learning rate of G, and of D without --lr-d (default: 5e-5 RMSprop; 1e-4 Adam with --gp)",
    )
    p.add_argument("--lr-d", type=positive(float), help="learning rate of D (default: same as --lr)")
    p.add_argument("--beta1", type=float, help="Adam beta1, --gp only (default: 0.5)")
    p.add_argument("--beta2", type=float, help="Adam beta2, --gp only (default: 0.9)")
    p.add_argument("--n-critic", type=positive(int), default=5, help="critic steps per generator step")
    p.add_argument(
        "--clip", type=positive(float), help="clip critic weights to [-clip, clip] (default: 0.01; not with --gp)"
    )
    p.add_argument(
        "--gp",
        type=positive(float),
        help="gradient-penalty weight lambda: WGAN-GP instead of clipping (paper: 10; default: clipping)",
    )
    p.add_argument("--latent-dim", type=positive(int), default=100, help="size of the noise vector z")
    p.add_argument("--seed", type=seed, default=0, help="seeds weights, noise and data order, in [0, 2^32)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    p.add_argument(
        "--cuda-graph",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="on a GPU, replay each training step as one CUDA graph (same steps, fewer launches)",
    )
    p.add_argument("--logdir", default="runs", help="TensorBoard runs go to <logdir>/<run name>")
    p.add_argument(
        "--log-every", type=positive(int), default=100, help="progress line every N steps (TensorBoard: every step)"
    )
    p.add_argument("--ckpt", default=f"{SCRIPT}.pt", help="checkpoint written at every epoch end and on Ctrl-C")
    p.add_argument("--resume", action="store_true", help="continue --ckpt up to --epochs, with the run's own flags")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if --ckpt exists")
    args = p.parse_args(argv)
    if args.resume:  # the mode and its flags are the checkpoint's; train() refuses typed ones that differ
        pass
    elif args.gp is None:  # a flag that would do nothing in this mode is an error, not silently ignored
        if args.beta1 is not None or args.beta2 is not None:
            p.error("arguments --beta1/--beta2: only for --gp (weight clipping uses RMSprop, which has no betas)")
        args.clip = 0.01 if args.clip is None else args.clip
        args.lr = 5e-5 if args.lr is None else args.lr
    else:
        if args.clip is not None:
            p.error("argument --clip: not with --gp (the gradient penalty replaces weight clipping)")
        args.lr = 1e-4 if args.lr is None else args.lr
        args.beta1 = 0.5 if args.beta1 is None else args.beta1  # the paper's MNIST code; Algorithm 1 uses 0
        args.beta2 = 0.9 if args.beta2 is None else args.beta2
        if not (0 <= args.beta1 < 1 and 0 <= args.beta2 < 1):
            p.error("arguments --beta1/--beta2: must be in [0, 1)")
    if args.batch_size < 2:
        p.error("argument --batch-size: batch norm needs at least 2 images per batch")
    for action in p._actions:  # parse again without defaults: what is left was typed
        action.default = argparse.SUPPRESS
    return p, args, vars(p.parse_args(argv))


# ===== Networks =====
class Generator(nn.Module):
    def __init__(self, latent_dim):
        super().__init__()
        self.fc1 = nn.Linear(latent_dim, 1024)  # (N, latent) -> (N, 1024)
        self.br1 = nn.Sequential(nn.BatchNorm1d(1024), nn.ReLU())
        self.fc2 = nn.Linear(1024, 128 * 7 * 7)  # -> (N, 6272), seen as (N, 128, 7, 7)
        self.br2 = nn.Sequential(nn.BatchNorm1d(128 * 7 * 7), nn.ReLU())
        self.conv1 = nn.Sequential(  # (N, 128, 7, 7) -> (N, 64, 14, 14)
            nn.ConvTranspose2d(128, 64, kernel_size=4, stride=2, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        )
        self.conv2 = nn.Sequential(  # -> (N, 1, 28, 28)
            nn.ConvTranspose2d(64, 1, kernel_size=4, stride=2, padding=1),
            nn.Tanh(),  # pixels in [-1, 1], like the training images (not the handout's Sigmoid with [0, 1])
        )

    def forward(self, z):
        x = self.br2(self.fc2(self.br1(self.fc1(z))))
        return self.conv2(self.conv1(x.view(-1, 128, 7, 7)))


class Discriminator(nn.Module):
    def __init__(self):  # the critic; no batch norm, which the gradient penalty (per sample) would break
        super().__init__()
        # Padding 2, as in the lab text (28 -> 14 -> 7); the fill-in-the-code handout pads none (-> 64x4x4).
        self.conv1 = nn.Sequential(nn.Conv2d(1, 32, 5, 1, 2), nn.LeakyReLU(0.1))  # (N, 1, 28, 28) -> (N, 32, 28, 28)
        self.pl1 = nn.MaxPool2d(2, stride=2)  # -> (N, 32, 14, 14)
        self.conv2 = nn.Sequential(nn.Conv2d(32, 64, 5, 1, 2), nn.LeakyReLU(0.1))  # -> (N, 64, 14, 14)
        self.pl2 = nn.MaxPool2d(2, stride=2)  # -> (N, 64, 7, 7)
        self.fc1 = nn.Sequential(nn.Linear(64 * 7 * 7, 1024), nn.LeakyReLU(0.1))  # -> (N, 1024)
        self.fc2 = nn.Linear(1024, 1)  # -> (N, 1): an unbounded score, no Sigmoid (a critic, not a classifier)

    def forward(self, x):
        x = self.pl2(self.conv2(self.pl1(self.conv1(x))))
        return self.fc2(self.fc1(x.flatten(1)))


# ===== Training steps: the critic maximises E[D(x)] - E[D(G(z))], the generator maximises E[D(G(z))] =====
def train_discriminator(real_images, D, G, optim_D, latent_dim, clip, gp):
    noise = torch.randn(real_images.size(0), latent_dim, device=real_images.device)
    with torch.no_grad():  # the handout's .detach(): this step must not update G (and needs no graph of G)
        fake_images = G(noise)
    wasserstein = D(real_images).mean() - D(fake_images).mean()  # the critic's estimate of W(P_real, P_G)
    penalty = gradient_penalty(D, real_images, fake_images) if gp else torch.zeros((), device=real_images.device)
    loss_D = -wasserstein + (gp or 0) * penalty  # = mean(D(fake)) - mean(D(real)) [+ lambda * GP]
    optim_D.zero_grad(set_to_none=True)
    loss_D.backward()
    optim_D.step()
    if not gp:
        with torch.no_grad():  # weight clipping keeps the critic (roughly) K-Lipschitz
            for param in D.parameters():
                param.clamp_(-clip, clip)
    return loss_D.detach(), wasserstein.detach(), penalty.detach()


def gradient_penalty(D, real_images, fake_images):
    """(||grad_x D(x)|| - 1)^2 on random points between real and fake, the norm per sample over the whole image."""
    eps = torch.rand(real_images.size(0), 1, 1, 1, device=real_images.device)
    mixed = (eps * real_images + (1 - eps) * fake_images).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(mixed).sum(), mixed, create_graph=True)  # create_graph: the penalty is trained
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def train_generator(D, G, optim_G, batch_size, latent_dim, device):
    noise = torch.randn(batch_size, latent_dim, device=device)
    D.requires_grad_(False)  # gradients flow through D into G; D's own would only be thrown away
    loss_G = -D(G(noise)).mean()
    D.requires_grad_(True)
    optim_G.zero_grad(set_to_none=True)
    loss_G.backward()
    optim_G.step()
    return loss_G.detach()


def train_step(images, D, G, optim_D, optim_G, batch_size, latent_dim, n_critic, clip, gp):
    """One iteration of the handout's loop: n_critic critic steps, each on a fresh random batch (Algorithm 1 of the
    WGAN paper; the handout reuses one batch), then a generator step. The four logged values stay on the device."""
    critic = torch.zeros(3, device=images.device)
    for _ in range(n_critic):
        real_images = to_unit(images[torch.randint(images.size(0), (batch_size,), device=images.device)])
        critic += torch.stack(train_discriminator(real_images, D, G, optim_D, latent_dim, clip, gp))
    loss_G = train_generator(D, G, optim_G, batch_size, latent_dim, images.device)
    loss_D, wasserstein, penalty = critic / n_critic  # means over the critic steps
    return torch.stack([loss_D, loss_G, wasserstein, penalty])


# ===== Performance: each training step as one CUDA graph (GPU only; --no-cuda-graph turns it off) =====
# Why: these networks are so small that on a GPU the time goes to Python launching a hundred tiny kernels per
# step, not to the kernels themselves. A CUDA graph records one step's kernels once and replays them with one
# launch: the same arithmetic, several times faster (README, "Speed"). What it records is train_step above.
class CUDAGraphStep:
    """Calls step(*inputs) as the eager loop would, but from call warmup + 1 on replays a recording of it.

    Every call is one real training step. The warm-up calls run eagerly, so that cuDNN, cuBLAS and the optimisers
    set up what capture cannot; the call that captures (capture only records) then replays. What changes between
    steps must be a tensor input, copied into the recorded one, or drawn inside the step: CUDA's random numbers are
    graph-safe, so every replay draws a new z. The optimisers must be built with capturable=True.
    """

    def __init__(self, step, warmup=3):
        self.step, self.warmup, self.graph = step, warmup, None
        self.stream = torch.cuda.Stream()

    def __call__(self, *inputs):
        if self.graph is None and self.warmup > 0:
            self.warmup -= 1
            return self.on_side_stream(self.step, *inputs)
        if self.graph is None:
            self.inputs = [x.clone() for x in inputs]
            self.on_side_stream(self.record)
        for recorded, x in zip(self.inputs, inputs, strict=True):
            recorded.copy_(x)
        self.graph.replay()
        return self.outputs.clone()  # the next replay overwrites self.outputs

    def record(self):
        torch.cuda.synchronize()  # an error of an earlier step (a NaN's device-side assert) surfaces here, not below
        self.graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(self.graph, stream=self.stream):
                self.outputs = self.step(*self.inputs)
        except RuntimeError as e:  # e.g. a .item() or a changing shape added to train_step
            sys.exit(f"Cannot record the step as a CUDA graph ({str(e).splitlines()[0]}): use --no-cuda-graph")

    def on_side_stream(self, fn, *args):
        """Warm-up and capture run on one side stream, as capture needs, ordered with the main stream."""
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "This instance was constructed with capturable=True")  # warm-up
            result = fn(*args)
        torch.cuda.current_stream().wait_stream(self.stream)
        return result


# ===== Helpers: data, paths, checkpoints =====
def load_images(p, args, device):
    """The whole training set as one uint8 tensor (N, 1, 28, 28) on the device."""
    name = DATASETS[args.dataset]
    try:
        ds = getattr(torchvision.datasets, name)(args.data_root, train=True, download=True)
    except Exception as e:  # noqa: BLE001 (whatever broke, the answer names the file and the fix)
        p.error(data_problem(args.data_root, name, e))
    return ds.data.unsqueeze(1).to(device)  # uint8: 4x less memory than float32; scaled per batch


def data_problem(root, name, error):
    """Names the file that stopped torchvision: a corrupt .gz, one it could not extract, a truncated extraction, or
    no files at all."""
    raw = os.path.join(root, name, "raw")
    for gz, md5 in getattr(torchvision.datasets, name).resources:
        gz, extracted = os.path.join(raw, gz), os.path.join(raw, gz[: -len(".gz")])
        if os.path.exists(gz) and not torchvision.datasets.utils.check_md5(gz, md5):
            return f"{gz} is corrupt (its md5 is not the official one): copy the official file there again"
        if os.path.exists(gz) and not os.path.exists(extracted):  # e.g. a read-only shared folder of .gz files
            why = getattr(error, "strerror", None) or str(error).strip().splitlines()[-1]
            return (
                f"{gz} is the official file, but extracting it there failed ({why}), and torchvision reads the "
                f"extracted files: point --data-root at a writable folder holding the .gz files, or extract them "
                f"where they are once (gunzip -k {os.path.join(raw, '*.gz')})"
            )
        if not os.path.exists(gz) and not os.path.exists(extracted):
            break  # torchvision takes the files in order: it stopped at this one, which is not there
        try:
            if os.path.exists(extracted):
                torchvision.datasets.mnist.read_sn3_pascalvincent_tensor(extracted)
        except Exception:  # noqa: BLE001
            return f"{extracted} is truncated or corrupt (an interrupted extraction?): delete it and run again"
    reason = str(error).strip().splitlines()[-1]  # torchvision's last line says why (no network, a proxy, ...)
    if reason.startswith("Error downloading"):  # torchvision < 0.21 printed why above and raised only the file's name
        reason += "; torchvision's lines above say why"
    return (
        f"{name} is not in {raw} and the download failed ({reason}). "
        f"Copy the four official .gz files there, or point --data-root at a folder that has them."
    )


def to_unit(x_uint8):
    return x_uint8.float().div_(127.5).sub_(1)  # [0, 255] -> [-1, 1]: the handout's [0, 1] misses Tanh's range


@torch.no_grad()
def sample(G, z):
    was_training = G.training
    G.eval()  # eval mode: no dropout/batch-norm batch statistics when sampling
    images = G(z).view(-1, 1, 28, 28)
    G.train(was_training)
    return images


def check_writable(p, flag, path, folder=False):
    """Refuses an output path now, in one line, rather than after an epoch of training."""
    where = os.path.abspath(path) if path else ""
    if folder:  # created later if missing: its first existing ancestor must be a writable folder
        while where and not os.path.exists(where):
            where = os.path.dirname(where)
    else:  # a file: its folder must exist, and it must not be a folder itself
        where = "" if os.path.isdir(where) else os.path.dirname(where)
    if not (path and os.path.isdir(where) and os.access(where, os.W_OK)):
        p.error(f"argument {flag}: cannot write {path!r} (is its folder there, writable, and not a file?)")


def running(pid):
    """Whether process pid exists, asked without a signal: on Windows os.kill(pid, 0) sends CTRL_C_EVENT (it is 0) to
    the whole console, this run included, so there the process is opened and asked whether it has ended."""
    if pid >= 2**31:  # no process has such a number (a lock edited by hand); os.kill would overflow
        return False
    if os.name == "nt":
        import _winapi  # the standard library's own Windows calls (subprocess and multiprocessing use them)

        try:
            handle = _winapi.OpenProcess(_winapi.SYNCHRONIZE, False, pid)
        except PermissionError:  # another user's process has the number
            return True
        except OSError:  # no such process
            return False
        try:
            return _winapi.WaitForSingleObject(handle, 0) == _winapi.WAIT_TIMEOUT  # not ended within 0 ms
        finally:
            _winapi.CloseHandle(handle)
    try:
        os.kill(pid, 0)  # signal 0 on POSIX: delivers nothing, only checks that pid exists
        return True
    except PermissionError:  # another user's process has the number
        return True
    except ProcessLookupError:
        return False


@contextlib.contextmanager
def checkpoint_lock(p, path):
    """One run per checkpoint: a second run on the same --ckpt is refused, not left to race the first."""
    lock = f"{path}.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            with open(lock) as f:
                text = f.read().strip()
            owner, _, host = text.partition("@")
            pid = int(owner) if owner.isdecimal() else 0  # empty: its owner is still writing it
            # A run on another machine sharing this folder (a cluster's home) has a pid that means nothing here.
            where = "" if host in ("", socket.gethostname()) else f" on {host}"
            # Its run was killed: the lock is stale. So it is if its pid is ours (a container's runs all get pid 1).
            if not where and (pid == os.getpid() or (pid > 0 and not running(pid))):
                os.remove(lock)
                continue
            p.error(f"{path} is in use by another run (pid {pid}{where}); if none is running, delete {lock}")
        except OSError as e:
            p.error(f"argument --ckpt: cannot write beside {path!r} ({e.strerror})")
    os.write(fd, f"{os.getpid()}@{socket.gethostname()}".encode())
    os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(lock)


def replace(src, dst):
    """os.replace, tried again for 3 s on Windows, which refuses it while another process holds either file open:
    a virus scanner reading the file just written, or perturb.py loading the checkpoint."""
    for wait in (0.1, 0.2, 0.4, 0.8, 1.6):
        try:
            return os.replace(src, dst)
        except PermissionError:
            if os.name != "nt":  # on POSIX it means what it says
                raise
            time.sleep(wait)
    return os.replace(src, dst)


def save_checkpoint(path, state):
    data = io.BytesIO()
    torch.save(state, data)  # in memory first: a full disk then fails in Python's write, which says so (torch's not)
    tmp = f"{path}.{os.getpid()}.tmp"  # unique: two writers never share a temp file
    try:
        with open(tmp, "wb") as f, data.getbuffer() as view:  # the view released however the write ends
            f.write(view)
        replace(tmp, path)  # atomic: a kill mid-write leaves the previous checkpoint intact
    except OSError as e:  # a full disk or quota: one line, and the previous checkpoint stays
        kept = "the previous one is kept, and --resume continues it" if os.path.exists(path) else "nothing was saved"
        sys.exit(f"Cannot write {path} ({e.strerror or e}): {kept}")
    finally:
        with contextlib.suppress(OSError):  # gone once renamed; on Windows perhaps still held: left, not a traceback
            os.remove(tmp)


def load_checkpoint(p, path):
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        p.error(f"--resume: no checkpoint at {path}")
    except Exception as e:  # noqa: BLE001 (any unreadable file gets the same one-line answer)
        # e.g. a copy cut short (torch's own message is an internal zip error): say what to do about it
        p.error(f"--resume: {path} is not a readable checkpoint ({type(e).__name__}); --overwrite starts afresh")
    found = ckpt.get("script", "an unknown script") if isinstance(ckpt, dict) else "an unknown script"
    if found != SCRIPT:
        p.error(f"--resume: {path} was written by {found}, not {SCRIPT}.py")
    needed = {"args", "G", "D", "optim_G", "optim_D", "epoch", "step", "sums", "fixed_noise", "rng_cpu", "rng_cuda"}
    if needed - ckpt.keys() or not isinstance(ckpt["args"], dict):
        p.error(f"--resume: {path} lacks {', '.join(sorted(needed - ckpt.keys())) or 'args'}: not a full checkpoint")
    return ckpt


def own_flags(saved, optim):
    """An optimiser's saved state with this run's implementation flags: a GPU graph run's capturable=True would
    otherwise come back with the state and break a CPU or --no-cuda-graph run (and the reverse, the capture)."""
    keep = ("foreach", "fused", "capturable")
    mine = [{key: group[key] for key in keep if key in group} for group in optim.param_groups]
    return saved | {"param_groups": [s | m for s, m in zip(saved["param_groups"], mine, strict=True)]}


def pick_device(p, name):
    if name == "auto":
        mps = getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
        name = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    try:
        torch.device(name)
    except RuntimeError:  # torch's reason lists twenty device types, most of which cannot train
        p.error(f"argument --device: {name!r} is not a device name (use auto, cpu, cuda, cuda:N or mps)")
    if name.startswith("mps") and not torch.backends.mps.is_available():  # torch's own reason runs on for a page
        p.error(f"argument --device: {name} is not usable here (MPS, the GPU backend of Macs, is not available)")
    try:
        device = torch.empty(0, device=name).device
    except (RuntimeError, AssertionError) as e:
        p.error(f"argument --device: {name} is not usable here ({str(e).splitlines()[0]})")
    if device.type not in ("cpu", "cuda", "mps"):
        p.error(f"argument --device: {name} cannot train (use cpu, cuda, cuda:N or mps)")
    return device


def diverged(args, writer, epoch, step):
    with contextlib.suppress(OSError):  # not train()'s TensorBoard handler: it would save the NaN weights
        writer.close()  # its thread is a daemon: the events it has not written yet would die with the process
    kept = f"the last good checkpoint is {args.ckpt}" if os.path.exists(args.ckpt) else "no checkpoint was written"
    sys.exit(f"Epoch {epoch:02d} | Step {step:04d}: a loss is NaN or infinite, stopping ({kept}). Try a lower --lr.")


def epoch_order(n, seed, epoch, device):
    # The order depends only on (seed, epoch), so a resumed run replays it exactly.
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).to(device)


def new_run_dir(p, args):
    # TensorBoard lists runs by folder: the name holds every hyper-parameter that differs from its default, so
    # that the settings compared for question 3 read apart in its run list (beta1=0, not beta10).
    name = f"{SCRIPT}-gp" if args.gp else SCRIPT  # the two modes told apart, each against its own defaults
    defaults = vars(parse_args(["--gp", "10"] if args.gp else [])[1])
    changed = "".join(
        f"_{key.replace('_', '-')}={format(value, 'g') if isinstance(value, float) else value}"
        for key, value in vars(args).items()
        if key not in RESUMABLE + ("overwrite", "dataset", "seed") and value != defaults[key]
    )
    run_name = f"{name}_{args.dataset}{changed}_seed{args.seed}_{datetime.now():%Y%m%d-%H%M%S}"
    base = os.path.join(args.logdir, run_name)
    for k in range(1, 1000):
        run_dir = base if k == 1 else f"{base}_{k}"
        try:
            os.makedirs(run_dir)  # atomic claim: runs started in the same second never share a folder
            return os.path.abspath(run_dir)
        except FileExistsError:
            continue
        except OSError as e:
            p.error(f"argument --logdir: cannot create {run_dir} ({e.strerror})")
    sys.exit(f"no free run folder next to {base}")


# ===== Helpers: figures for the report =====
def to_uint8(images):
    return images.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).cpu()  # [-1, 1] -> [0, 255]


def grid_image(images, nrow=8, scale=2):
    """uint8 (N, 1, 28, 28) -> a PIL grid, enlarged without blur so that it stays sharp in a document."""
    grid = torchvision.utils.make_grid(images, nrow=nrow, padding=2, pad_value=255)[0]
    return Image.fromarray(grid.numpy(), mode="L").resize((grid.size(1) * scale, grid.size(0) * scale), Image.NEAREST)


def labelled(path, tiles, labels, title="", across=True):
    """Saves PIL tiles side by side (labels above) or stacked (labels on the left), under a title line."""
    font, gap = ImageFont.load_default(size=24), 16
    w, h = tiles[0].size
    left = gap if across else 2 * gap + max(int(font.getlength(text)) for text in labels)
    top = gap + (40 if title else 0) + (32 if across else 0)
    cols, rows = (len(tiles), 1) if across else (1, len(tiles))
    canvas = Image.new(
        "L", (max(left + cols * (w + gap), int(font.getlength(title)) + 2 * gap), top + rows * (h + gap)), 255
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((gap, gap), title, fill=0, font=font)
    for k, (tile, text) in enumerate(zip(tiles, labels, strict=True)):
        x, y = (left + k * (w + gap), top) if across else (left, top + k * (h + gap))
        canvas.paste(tile, (x, y))
        draw.text((x, y - 32) if across else (gap, y + h // 2 - 12), text, fill=0, font=font)
    canvas.save(path)


CURVES = ["Loss_D", "Loss_G", "Wasserstein"]  # losses.png's panels: the step values they are drawn from
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]  # matplotlib's: D blue, G orange (report 002), W green


def nice_ticks(lo, hi, most=6):
    """Round values in [lo, hi], 1, 2 or 5 times a power of ten apart, at most `most` of them."""
    sizes = (s * 10.0**e for e in range(math.floor(math.log10((hi - lo) / most)), 99) for s in (1, 2, 5))
    size = next(size for size in sizes if (hi - lo) / size <= most)
    return [k * size for k in range(math.ceil(lo / size), math.floor(hi / size) + 1)]


def loss_curves(path, losses, names, steps, done, title=""):
    """The loss curves of a report: a panel per column of losses (the last len(losses) of `done` steps), x in epochs.
    Each step faint, the mean of each 1/200 of them bold; the y-axis spans the steps' 1st to 99th percentile, so that
    a few spikes do not flatten the rest."""
    font, small, gap = ImageFont.load_default(size=24), ImageFont.load_default(size=18), 16
    h, left, top = 300, 80, gap + (40 if title else 0) + 32
    w = max(480, (int(font.getlength(title)) + gap) // len(names) - left - gap)  # panels as wide as the title
    canvas = Image.new("RGB", (len(names) * (left + w + gap) + gap, top + h + 64), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((gap, gap), title, fill="black", font=font)
    first, chunk = done - len(losses), max(1, len(losses) // 200)
    for k, (name, colour) in enumerate(zip(names, COLOURS[: len(names)], strict=True)):
        x0, values = gap + left + k * (left + w + gap), losses[:, k]
        lo, hi = torch.quantile(values, torch.tensor([0.01, 0.99])).tolist()
        lo, hi = lo - (hi - lo) / 20 - 1e-3, hi + (hi - lo) / 20 + 1e-3  # a margin, and never zero height

        def xy(s, v):  # step s, value v -> pixel; values beyond the axis are drawn at its edge
            return x0 + w * s / done, top + h * (hi - min(max(v, lo), hi)) / (hi - lo)

        for tick in nice_ticks(lo, hi):
            draw.line([xy(0, tick), xy(done, tick)], fill=(225, 225, 225))
            draw.text(xy(0, tick), f"{tick:g} ", fill="black", font=small, anchor="rm")
        for tick in nice_ticks(0, done / steps):
            draw.text(xy(tick * steps, lo), f"{tick:g}", fill="black", font=small, anchor="ma")
        faint = tuple(c + (255 - c) * 3 // 4 for c in colour)
        draw.line([xy(first + s + 1, v) for s, v in enumerate(values.tolist())], fill=faint)
        means = [
            (first + s + len(c) / 2, c.mean().item())
            for s, c in zip(range(0, len(values), chunk), values.split(chunk), strict=True)
        ]
        draw.line([xy(s, v) for s, v in means], fill=colour, width=3, joint="curve")
        draw.rectangle([x0, top, x0 + w, top + h], outline="black")
        draw.text((x0, top - 30), name, fill="black", font=font)
        draw.text((x0 + w / 2, top + h + 32), "epoch", fill="black", font=small, anchor="ma")
    canvas.save(path)


def save_report_figures(run_dir, args, history, real, fake, step_losses, steps):
    """Question 2's images at 0/25/50/75/100% of the final --epochs, one progress.png, real vs generated, and the
    step losses of the whole run as losses.png."""
    for old in glob.glob(os.path.join(run_dir, "samples_*pct_epoch*.png")):
        os.remove(old)  # a resume with more --epochs moves the milestones: keep only the final plan's
    tiles, labels = [], []
    for pct, epoch in [(q * 25, math.ceil(args.epochs * q / 4)) for q in range(5)]:
        if epoch in history:  # a checkpoint from before the history was kept lacks the early epochs
            torchvision.utils.save_image(
                history[epoch].float() / 255, os.path.join(run_dir, f"samples_{pct:03d}pct_epoch{epoch:03d}.png")
            )
            tiles.append(grid_image(history[epoch]))
            labels.append(f"{pct}% (epoch {epoch})")
    own = {k: v for k, v in vars(args).items() if k not in RESUMABLE + ("overwrite",) and v is not None}
    title = f"{SCRIPT}.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in own.items())
    labelled(os.path.join(run_dir, "progress.png"), tiles, labels, title=title)
    loss_curves(os.path.join(run_dir, "losses.png"), step_losses, CURVES, steps, args.epochs * steps, title)
    labelled(
        os.path.join(run_dir, "real_vs_generated.png"),
        [grid_image(real), grid_image(fake)],
        ["real", "generated"],
        across=False,
    )


# ===== Main =====
def main(argv=None):
    p, args, typed = parse_args(argv)
    check_writable(p, "--ckpt", args.ckpt)
    # train() turns Ctrl-C and kills into "save after this step"; the handlers before it come back when it ends, or
    # a notebook that called main() could no longer interrupt anything.
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    # TensorBoard's writer thread prints a traceback for what it cannot write; train() says it in one line instead.
    thread_hook = threading.excepthook
    threading.excepthook = lambda a: None if type(a.thread).__name__ == "_AsyncWriterThread" else thread_hook(a)
    with checkpoint_lock(p, args.ckpt):  # released however the run ends
        try:
            train(p, args, typed)
        except RuntimeError as e:  # sizes too large for the machine: one line, not the allocator's traceback
            if "out of memory" not in str(e) and "can't allocate memory" not in str(e):
                raise
            p.error(f"out of memory ({str(e).splitlines()[0]}): try a smaller --batch-size or --latent-dim")
        finally:
            threading.excepthook = thread_hook
            for signum, handler in handlers.items():
                if handler is not None:  # None: a handler set outside Python, which cannot be put back
                    signal.signal(signum, handler)


def train(p, args, typed):
    ckpt = load_checkpoint(p, args.ckpt) if args.resume else None
    if ckpt is not None:
        for key, value in ckpt["args"].items():  # the run's own flags win, except the ones meant to change
            if key not in RESUMABLE:
                if key in typed and typed[key] != value:  # refused, not silently ignored
                    had = f"has {value}" if value is not None else "was started without it"  # not "has None"
                    p.error(f"argument --{key.replace('_', '-')}: this run {had}; --resume keeps the run's own flags")
                setattr(args, key, value)
        if ckpt["epoch"] >= args.epochs:
            p.error(f"--resume: {args.ckpt} already has {ckpt['epoch']} epochs; ask for more with --epochs")
    elif os.path.exists(args.ckpt) and not args.overwrite:
        p.error(f"{args.ckpt} exists: pass --resume to continue it, --overwrite to replace it, or another --ckpt")
    check_writable(p, "--logdir", args.logdir, folder=True)

    torch.manual_seed(args.seed)
    device = pick_device(p, args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # streams and CUDA graphs use the current device: make it --device's
    torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN times its algorithms once and keeps the fastest
    images = load_images(p, args, device)
    n = images.size(0)
    steps = n // args.batch_size if n % args.batch_size == 1 else math.ceil(n / args.batch_size)  # no 1-image batch

    G_kwargs = {"latent_dim": args.latent_dim}
    G = Generator(**G_kwargs).to(device)
    D = Discriminator().to(device)
    graph = device.type == "cuda" and args.cuda_graph  # see CUDAGraphStep
    if args.gp:  # Adam is fine once the penalty, not clipping, keeps the critic Lipschitz
        fused = device.type in ("cpu", "cuda")  # one kernel per step instead of a dozen per parameter
        adam = {"betas": (args.beta1, args.beta2), "fused": fused, "capturable": graph}
        optim_G = torch.optim.Adam(G.parameters(), lr=args.lr, **adam)
        optim_D = torch.optim.Adam(D.parameters(), lr=args.lr_d or args.lr, **adam)  # --lr-d: TTUR, Heusel et al. 2017
    else:  # the WGAN paper: momentum-based optimisers made clipped critics unstable, so RMSprop
        optim_G = torch.optim.RMSprop(G.parameters(), lr=args.lr, capturable=graph)
        optim_D = torch.optim.RMSprop(D.parameters(), lr=args.lr_d or args.lr, capturable=graph)
    parts = {"G": G, "D": D, "optim_G": optim_G, "optim_D": optim_D}
    # One fixed z for every image logged, so that epochs compare; its own generator keeps it seed-only.
    fixed_noise = torch.randn(64, args.latent_dim, generator=torch.Generator().manual_seed(args.seed)).to(device)
    start_epoch, start_step, sums, history, step_losses = 0, 0, torch.zeros(4), {}, torch.zeros(0, len(CURVES))
    if ckpt is not None:
        try:
            for key, part in parts.items():
                part.load_state_dict(own_flags(ckpt[key], part) if key.startswith("optim") else ckpt[key])
            start_epoch, start_step, sums = ckpt["epoch"], ckpt["step"], ckpt["sums"]
            fixed_noise, history = ckpt["fixed_noise"].to(device), ckpt.get("history", {})
            step_losses = ckpt.get("step_losses", step_losses)  # every step's CURVES, for losses.png
            torch.set_rng_state(ckpt["rng_cpu"])
            if device.type == "cuda" and ckpt["rng_cuda"] is not None:
                torch.cuda.set_rng_state(ckpt["rng_cuda"], device)
        except (RuntimeError, ValueError, TypeError, KeyError) as e:
            p.error(f"--resume: {args.ckpt} does not fit {SCRIPT}.py's networks ({str(e).splitlines()[0]})")
        print(f"Resuming {args.ckpt} at epoch {start_epoch} step {start_step}, up to epoch {args.epochs}")

    # A resumed run continues its own folder; a copied or moved checkpoint, or another --logdir, starts a new one.
    here = ckpt is not None and ckpt.get("ckpt_path") == os.path.abspath(args.ckpt)
    same = here and os.path.isdir(ckpt["run_dir"]) and os.path.dirname(ckpt["run_dir"]) == os.path.abspath(args.logdir)
    run_dir = ckpt["run_dir"] if same else new_run_dir(p, args)

    def state(epoch, step):  # what resuming needs, and what perturb.py needs to rebuild G without the data
        rng_cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        meta = {"script": SCRIPT, "args": vars(args), "generator_kwargs": G_kwargs, "epoch": epoch, "step": step}
        extra = {"fixed_noise": fixed_noise.cpu(), "sums": sums, "rng_cpu": torch.get_rng_state(), "rng_cuda": rng_cuda}
        paths = {"ckpt_path": os.path.abspath(args.ckpt), "run_dir": run_dir}
        figures = {"history": history, "step_losses": step_losses}  # what the report's figures are drawn from
        return meta | extra | paths | figures | {key: part.state_dict() for key, part in parts.items()}

    def step():  # the loop's body; on a GPU it is recorded once and replayed (see CUDAGraphStep)
        return train_step(
            images, D, G, optim_D, optim_G, args.batch_size, args.latent_dim, args.n_critic, args.clip, args.gp
        )

    graphed_step = CUDAGraphStep(step) if graph else step
    global_step = start_epoch * steps + start_step
    # purge_step drops what a killed run logged after its checkpoint; the last step it kept is global_step.
    writer = SummaryWriter(run_dir, purge_step=global_step + 1 if same else None)
    at = (start_epoch, start_step)  # how far the bookkeeping has got: what a checkpoint saved now would hold
    try:  # TensorBoard's writer thread fails in the background; the next write raises its error here
        if not same:
            table = "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())
            writer.add_text("hyperparameters", f"|flag|value|\n|-|-|\n{table}")
            model = nn.Sequential(OrderedDict(G=G, D=D))  # add_graph traces it in eval mode: batch norm stays put
            with torch.no_grad(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", r"`torch\.jit\.trace")  # add_graph traces (deprecated in torch)
                writer.add_graph(model, fixed_noise[:1])  # handout's question 3; one z: tracing runs G and D 3 times
        if ckpt is None:
            history[0] = to_uint8(sample(G, fixed_noise))
            writer.add_image("Generated Images", torchvision.utils.make_grid(history[0]), 0)
        how = " (CUDA graph; --no-cuda-graph for eager)" if graph else ""
        print(f"{SCRIPT}.py on {device}{how} | {args.dataset}: {n} images | {steps} steps/epoch | run {run_dir}")
        stop = []
        for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, or a scheduler's kill: finish the step, save
            signal.signal(signum, lambda got, _: stop.append(got))
        for epoch in range(start_epoch, args.epochs):
            # An epoch is `steps` generator steps, as in the handout; train_step draws every critic step's batch.
            t0, pending, first = time.perf_counter(), [], start_step if epoch == start_epoch else 0
            for i in range(first, steps):
                losses = graphed_step()  # every step has a full batch: all of them replay the graph
                pending.append(losses)  # stays on the device: no sync per step
                if (i + 1) % args.log_every == 0 or i + 1 == steps or stop:
                    values, pending = torch.stack(pending).cpu(), []  # one sync per log line
                    if not torch.isfinite(values).all():
                        diverged(args, writer, epoch, i + 1)
                    sums, step_losses = sums + values.sum(0), torch.cat([step_losses, values[:, : len(CURVES)]])
                    mean = sums / (i + 1)
                    at = (epoch, i + 1)
                    print(
                        f"Epoch {epoch:02d} | Step {i + 1:04d} / {steps:04d} | "
                        f"Loss_D {mean[0]:.4f} | Loss_G {mean[1]:.4f}"
                    )
                    for ld, lg, _, _ in values.tolist():
                        global_step += 1
                        writer.add_scalar("WGAN/Step/Loss_D", ld, global_step)
                        writer.add_scalar("WGAN/Step/Loss_G", lg, global_step)
                if stop:
                    save_checkpoint(args.ckpt, state(epoch, i + 1))
                    writer.close()
                    print(f"Interrupted: saved {args.ckpt} at epoch {epoch} step {i + 1}; continue with --resume")
                    sys.exit(128 + stop[0])  # the shell's status for that signal: 130 for Ctrl-C, 143 for a kill

            seconds, seen = time.perf_counter() - t0, (steps - first) * args.batch_size * args.n_critic
            mean, sums = sums / steps, torch.zeros(4)
            history[epoch + 1] = to_uint8(sample(G, fixed_noise))
            save_checkpoint(args.ckpt, state(epoch + 1, 0))  # first: a TensorBoard write below that fails loses nothing
            at = (epoch + 1, 0)
            print(
                f"Epoch {epoch:02d} | {seconds:.2f} s | {seen / seconds:.0f} img/s | Loss_D {mean[0]:.4f} | "
                f"Loss_G {mean[1]:.4f} | W {mean[2]:.4f} | GP {mean[3]:.4f}"
            )
            # Epoch scalars sit at x = epochs done, beside the images of the same moment.
            writer.add_scalar("WGAN/Loss/Discriminator", mean[0], epoch + 1)  # the handout's tags
            writer.add_scalar("WGAN/Loss/Generator", mean[1], epoch + 1)
            writer.add_scalar("WGAN/Wasserstein", mean[2], epoch + 1)  # -critic loss without penalty: should fall
            writer.add_scalar("WGAN/GradientPenalty", mean[3], epoch + 1)
            writer.add_scalar("WGAN/Time/Images_per_second", seen / seconds, epoch + 1)
            writer.add_image("Generated Images", torchvision.utils.make_grid(history[epoch + 1]), epoch + 1)
    except OSError as e:  # the run's folder deleted mid-run, or a full disk or quota: keep the steps, one line
        why = f"Cannot write TensorBoard events in {run_dir} ({e.strerror or e})"
        if at == (start_epoch, start_step):
            sys.exit(f"{why}: stopped before training anything")
        save_checkpoint(args.ckpt, state(*at))  # the weights are at `at`: the writes come after the bookkeeping
        sys.exit(f"{why}: saved {args.ckpt} at epoch {at[0]} step {at[1]}; --resume continues it")

    # The report's figures: milestones, progress.png, real (top) vs generated (bottom), and the loss curves.
    real = to_uint8(to_unit(images[epoch_order(n, args.seed, -1, device)[:8]]))
    with contextlib.suppress(OSError):  # the last events; where they could not be written, the figures say why
        writer.close()
    try:
        save_report_figures(run_dir, args, history, real, to_uint8(sample(G, fixed_noise[:8])), step_losses, steps)
    except OSError as e:  # a full disk, or the run's folder deleted meanwhile: one line; the checkpoint is whole
        sys.exit(f"Cannot write the report's figures in {run_dir} ({e.strerror or e}); the run is saved in {args.ckpt}")
    print(f"Done: {args.ckpt}; progress.png, losses.png, images and TensorBoard events in {run_dir}")


if __name__ == "__main__":
    main()
