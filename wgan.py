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

import argparse
import math
import os
import signal
import sys
import time
import warnings
from collections import OrderedDict
from datetime import datetime

import torch
import torch.nn as nn
import torchvision
from torch.utils.tensorboard import SummaryWriter

SCRIPT = "wgan"
DATASETS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}
RESUMABLE = ("epochs", "ckpt", "resume", "overwrite", "device", "data_root", "logdir", "log_every")


# ===== Arguments =====
def positive(kind):
    def check(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return check


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--dataset", choices=DATASETS, default="fashion-mnist", help="training set")
    p.add_argument("--data-root", default="./data", help="holds <Name>/raw/*.gz; downloaded there if missing")
    p.add_argument("--epochs", type=positive(int), default=30, help="total epochs (with --resume: train up to this)")
    p.add_argument("--batch-size", type=positive(int), default=128, help="images per step")
    p.add_argument(
        "--lr", type=positive(float), help="learning rate of G and D (default 5e-5 RMSprop; 1e-4 Adam with --gp)"
    )
    p.add_argument("--beta1", type=float, help="Adam beta1, --gp only (default 0.5)")
    p.add_argument("--beta2", type=float, help="Adam beta2, --gp only (default 0.9)")
    p.add_argument("--n-critic", type=positive(int), default=5, help="critic steps per generator step")
    p.add_argument(
        "--clip", type=positive(float), help="clip critic weights to [-clip, clip] (default 0.01; not with --gp)"
    )
    p.add_argument(
        "--gp", type=positive(float), help="gradient-penalty weight lambda: WGAN-GP instead of clipping (paper: 10)"
    )
    p.add_argument("--latent-dim", type=positive(int), default=100, help="size of the noise vector z")
    p.add_argument("--seed", type=int, default=0, help="seeds weights, noise and data order")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--logdir", default="runs", help="TensorBoard runs go to <logdir>/<run name>")
    p.add_argument("--log-every", type=positive(int), default=100, help="print and log step losses every N steps")
    p.add_argument("--ckpt", default=f"{SCRIPT}.pt", help="checkpoint written at every epoch end")
    p.add_argument("--resume", action="store_true", help="continue --ckpt up to --epochs")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if --ckpt exists")
    args = p.parse_args(argv)
    if args.gp is None:  # a flag that would do nothing in this mode is an error, not silently ignored
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
    return p, args


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


# ===== Helpers: data, images, checkpoints =====
def load_images(p, args, device):
    """The whole training set as one uint8 tensor (N, 1, 28, 28) on the device."""
    name = DATASETS[args.dataset]
    try:
        ds = getattr(torchvision.datasets, name)(args.data_root, train=True, download=True)
    except (RuntimeError, OSError) as e:
        raw = os.path.join(args.data_root, name, "raw")
        p.error(
            f"{name} is not in {raw} and the download failed ({str(e).strip().splitlines()[0]}). "
            f"Copy the four official .gz files there, or point --data-root at a folder that has them."
        )
    return ds.data.unsqueeze(1).to(device)  # uint8: 4x less memory than float32; scaled per batch


def to_unit(x_uint8):
    return x_uint8.float().div_(127.5).sub_(1)  # [0, 255] -> [-1, 1]: the handout's [0, 1] misses Tanh's range


@torch.no_grad()
def sample(G, z):
    was_training = G.training
    G.eval()  # eval mode: no dropout/batch-norm batch statistics when sampling
    images = G(z).view(-1, 1, 28, 28)
    G.train(was_training)
    return images


def save_grid(images, path, nrow=8):
    torchvision.utils.save_image(images.add(1).div(2), path, nrow=nrow, padding=2)


def save_checkpoint(path, state):
    torch.save(state, f"{path}.tmp")
    os.replace(f"{path}.tmp", path)  # atomic: a kill mid-write leaves the previous checkpoint intact


def load_checkpoint(p, path):
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        p.error(f"--resume: no checkpoint at {path}")
    except Exception as e:  # noqa: BLE001 (any unreadable file gets the same one-line answer)
        p.error(f"--resume: {path} is not a readable checkpoint ({type(e).__name__})")
    found = ckpt.get("script", "an unknown script") if isinstance(ckpt, dict) else "an unknown script"
    if found != SCRIPT:
        p.error(f"--resume: {path} was written by {found}, not {SCRIPT}.py")
    return ckpt


def pick_device(p, name):
    if name == "auto":
        mps = getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
        name = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    try:
        return torch.empty(0, device=name).device
    except (RuntimeError, AssertionError) as e:
        p.error(f"argument --device: {name} is not usable here ({str(e).splitlines()[0]})")


def diverged(args, epoch, step):
    kept = f"the last good checkpoint is {args.ckpt}" if os.path.exists(args.ckpt) else "no checkpoint was written"
    sys.exit(f"Epoch {epoch:02d} | Step {step:04d}: a loss is NaN or infinite, stopping ({kept}). Try a lower --lr.")


def epoch_order(n, seed, epoch, device):
    # The order depends only on (seed, epoch), so a resumed run replays it exactly.
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).to(device)


def new_run_dir(args):
    base = os.path.join(args.logdir, f"{SCRIPT}_{args.dataset}_seed{args.seed}_{datetime.now():%Y%m%d-%H%M%S}")
    for k in range(1, 1000):
        run_dir = base if k == 1 else f"{base}_{k}"
        try:
            os.makedirs(run_dir)  # atomic claim: runs started in the same second never share a folder
            return run_dir
        except FileExistsError:
            continue
    sys.exit(f"no free run folder next to {base}")


# ===== Main =====
def main(argv=None):
    p, args = parse_args(argv)
    ckpt = load_checkpoint(p, args.ckpt) if args.resume else None
    if ckpt is not None:
        for key, value in ckpt["args"].items():  # the run's own flags win, except the ones meant to change
            if key not in RESUMABLE:
                setattr(args, key, value)
        if ckpt["epoch"] >= args.epochs:
            p.error(f"--resume: {args.ckpt} already has {ckpt['epoch']} epochs; ask for more with --epochs")
    elif os.path.exists(args.ckpt) and not args.overwrite:
        p.error(f"{args.ckpt} exists: pass --resume to continue it, --overwrite to replace it, or another --ckpt")

    torch.manual_seed(args.seed)
    device = pick_device(p, args.device)
    torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN times its algorithms once and keeps the fastest
    images = load_images(p, args, device)
    run_dir = ckpt["run_dir"] if ckpt is not None and os.path.isdir(ckpt["run_dir"]) else new_run_dir(args)
    n, steps = images.size(0), math.ceil(images.size(0) / args.batch_size)

    G_kwargs = {"latent_dim": args.latent_dim}
    G = Generator(**G_kwargs).to(device)
    D = Discriminator().to(device)
    if args.gp:  # Adam is fine once the penalty, not clipping, keeps the critic Lipschitz
        fused = device.type in ("cpu", "cuda")  # one kernel per step instead of a dozen per parameter
        optim_G = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), fused=fused)
        optim_D = torch.optim.Adam(D.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), fused=fused)
    else:  # the WGAN paper: momentum-based optimisers made clipped critics unstable, so RMSprop
        optim_G = torch.optim.RMSprop(G.parameters(), lr=args.lr)
        optim_D = torch.optim.RMSprop(D.parameters(), lr=args.lr)
    parts = {"G": G, "D": D, "optim_G": optim_G, "optim_D": optim_D}
    # One fixed z for every image logged, so that epochs compare; its own generator keeps it seed-only.
    fixed_noise = torch.randn(64, args.latent_dim, generator=torch.Generator().manual_seed(args.seed)).to(device)
    start_epoch, start_step, sums = 0, 0, torch.zeros(4)
    if ckpt is not None:
        for key, part in parts.items():
            part.load_state_dict(ckpt[key])
        start_epoch, start_step, sums = ckpt["epoch"], ckpt["step"], ckpt["sums"]
        fixed_noise = ckpt["fixed_noise"].to(device)
        torch.set_rng_state(ckpt["rng_cpu"])
        if device.type == "cuda" and ckpt["rng_cuda"] is not None:
            torch.cuda.set_rng_state(ckpt["rng_cuda"], device)
        print(f"Resuming {args.ckpt} at epoch {start_epoch} step {start_step}, up to epoch {args.epochs}")

    def state(epoch, step):  # what resuming needs, and what perturb.py needs to rebuild G without the data
        rng_cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        meta = {"script": SCRIPT, "args": vars(args), "generator_kwargs": G_kwargs, "epoch": epoch, "step": step}
        extra = {"fixed_noise": fixed_noise.cpu(), "sums": sums, "run_dir": run_dir, "rng_cpu": torch.get_rng_state()}
        return meta | extra | {"rng_cuda": rng_cuda} | {key: part.state_dict() for key, part in parts.items()}

    global_step = start_epoch * steps + start_step
    writer = SummaryWriter(run_dir, purge_step=global_step if ckpt is not None else None)
    if ckpt is None:
        table = "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())
        writer.add_text("hyperparameters", f"|flag|value|\n|-|-|\n{table}")
        model = nn.Sequential(OrderedDict(G=G, D=D)).eval()  # eval: tracing must not move batch-norm statistics
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # add_graph still uses the deprecated jit.trace
            writer.add_graph(model, fixed_noise)  # the handout's question 3: the model graph
        model.train()
        save_grid(sample(G, fixed_noise), os.path.join(run_dir, "samples_000pct_epoch000.png"))
        writer.add_image("Generated Images", torchvision.utils.make_grid(sample(G, fixed_noise), normalize=True), 0)
    print(f"{SCRIPT}.py on {device} | {args.dataset}: {n} images | {steps} steps/epoch | run {run_dir}")
    # Report figures at 25/50/75/100% of the epochs (the handout's question 2); 0% is written above.
    milestones = [(math.ceil(args.epochs * q / 4), q * 25) for q in range(1, 5)]

    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))  # Ctrl-C: finish the step, save, exit
    for epoch in range(start_epoch, args.epochs):
        # An epoch is `steps` generator steps, as in the handout; every critic step draws a fresh real batch
        # (Algorithm 1 of the WGAN paper), where the handout reuses one batch for all its critic steps.
        t0, pending, first = time.perf_counter(), [], start_step if epoch == start_epoch else 0
        for i in range(first, steps):
            critic = torch.zeros(3, device=device)
            for _ in range(args.n_critic):
                real = to_unit(images[torch.randint(n, (args.batch_size,), device=device)])
                critic += torch.stack(train_discriminator(real, D, G, optim_D, args.latent_dim, args.clip, args.gp))
            loss_G = train_generator(D, G, optim_G, args.batch_size, args.latent_dim, device)
            loss_D, wasserstein, penalty = critic / args.n_critic  # means over the critic steps
            pending.append(torch.stack([loss_D, loss_G, wasserstein, penalty]))  # stays on the device: no sync per step
            if (i + 1) % args.log_every == 0 or i + 1 == steps or stop:
                values, pending = torch.stack(pending).cpu(), []  # one sync per log line
                if not torch.isfinite(values).all():
                    diverged(args, epoch, i + 1)
                for ld, lg, _, _ in values.tolist():
                    global_step += 1
                    writer.add_scalar("WGAN/Step/Loss_D", ld, global_step)
                    writer.add_scalar("WGAN/Step/Loss_G", lg, global_step)
                sums = sums + values.sum(0)
                mean = sums / (i + 1)
                print(
                    f"Epoch {epoch:02d} | Step {i + 1:04d} / {steps:04d} | Loss_D {mean[0]:.4f} | Loss_G {mean[1]:.4f}"
                )
            if stop:
                save_checkpoint(args.ckpt, state(epoch, i + 1))
                writer.close()
                print(f"Interrupted: saved {args.ckpt} at epoch {epoch} step {i + 1}; continue with --resume")
                sys.exit(130)

        seconds, seen = time.perf_counter() - t0, (steps - first) * args.batch_size * args.n_critic
        mean, sums = sums / steps, torch.zeros(4)
        writer.add_scalar("WGAN/Loss/Discriminator", mean[0], epoch)  # the handout's tags
        writer.add_scalar("WGAN/Loss/Generator", mean[1], epoch)
        writer.add_scalar("WGAN/Wasserstein", mean[2], epoch)  # -critic loss without penalty: should fall
        writer.add_scalar("WGAN/GradientPenalty", mean[3], epoch)
        writer.add_scalar("WGAN/Time/Images_per_second", seen / seconds, epoch)
        fake = sample(G, fixed_noise)
        writer.add_image("Generated Images", torchvision.utils.make_grid(fake, normalize=True), epoch + 1)
        for pct in [pct for at, pct in milestones if at == epoch + 1]:
            save_grid(fake, os.path.join(run_dir, f"samples_{pct:03d}pct_epoch{epoch + 1:03d}.png"))
        save_checkpoint(args.ckpt, state(epoch + 1, 0))
        print(
            f"Epoch {epoch:02d} | {seconds:.1f} s | {seen / seconds:.0f} img/s | Loss_D {mean[0]:.4f} | "
            f"Loss_G {mean[1]:.4f} | W {mean[2]:.4f} | GP {mean[3]:.4f}"
        )

    # The report's comparison figure: top row real, bottom row generated.
    real = to_unit(images[epoch_order(n, args.seed, -1, device)[:8]])
    save_grid(torch.cat([real, sample(G, fixed_noise[:8])]), os.path.join(run_dir, "real_vs_generated.png"))
    writer.close()
    print(f"Done: {args.ckpt}, images and TensorBoard events in {run_dir}")


if __name__ == "__main__":
    main()
