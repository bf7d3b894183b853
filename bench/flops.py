"""How much arithmetic one training step is, and how close an eager step gets to the device's peak.

For every row it builds the script's networks and optimisers at its default flags (plus the row's), counts the
floating-point operations of one `train_step` with the formulas of torch.utils.flop_counter (matrix multiplies
and convolutions, forward and backward; element-wise ops and the optimisers are not counted, so the rate is a
lower bound), times eager steps on one fixed batch, and compares the time with what the arithmetic alone needs at
the device's peak, timed on a large matrix multiply. A step that reaches a good part of that peak is bound by its
arithmetic: a faster input pipeline cannot help it.

On a CUDA GPU the two kinds of multiply run at different precisions by PyTorch's defaults: convolutions in TF32
(torch.backends.cudnn.conv.fp32_precision), the Linear layers in full fp32 (torch.backends.cuda.matmul). So the
peak is timed both ways, and each kind of multiply is held to its own: "of the peak" is (convolution FLOP / TF32
rate + the other FLOP / fp32 rate) / measured time. On a CPU both run in fp32 and there is one peak.

    python bench/flops.py                        # this CPU, every row
    python bench/flops.py --only dcgan --steps 5
    python bench/flops.py --device cuda          # eager steps; bench/speed.py times the CUDA-graph path
"""

import argparse
import contextlib
import importlib
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# row -> (script, flags)
ROWS = {
    "gan.py": ("gan", []),
    "gan.py --hidden-dim 1024": ("gan", ["--hidden-dim", "1024"]),
    "dcgan.py": ("dcgan", []),
    "wgan.py --clip 0.01": ("wgan", ["--clip", "0.01"]),
    "wgan.py --gp 10": ("wgan", ["--gp", "10"]),
}


class CountFlops(TorchDispatchMode):
    """FlopCounterMode's formulas without its module hooks, which the penalty's double backward trips over."""

    flops = 0
    conv_flops = 0  # the part in convolutions (forward and backward), which cuDNN may run at another precision

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func._overloadpacket in flop_registry:
            flops = flop_registry[func._overloadpacket](*args, **(kwargs or {}), out_val=out)
            self.flops += flops
            self.conv_flops += flops if "conv" in func._overloadpacket.__name__ else 0
        return out


def step_of(script, flags, device):
    """One training step of the script as a function of nothing, built as its train() builds it (eager)."""
    mod = importlib.import_module(script)
    _, args, _ = mod.parse_args(flags)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (1024, 1, 28, 28), dtype=torch.uint8, device=device)  # stands in for the data
    if script == "gan":
        G, D = mod.Generator(args.latent_dim, args.hidden_dim, 28 * 28), mod.Discriminator(28 * 28, args.hidden_dim)
    else:
        G, D = mod.Generator(args.latent_dim), mod.Discriminator()
    G, D = G.to(device), D.to(device)
    if script == "wgan" and not args.gp:
        optim_G, optim_D = (torch.optim.RMSprop(m.parameters(), lr=args.lr) for m in (G, D))
    else:
        adam = {"lr": args.lr, "betas": (args.beta1, args.beta2), "fused": True}
        optim_G, optim_D = (torch.optim.Adam(m.parameters(), **adam) for m in (G, D))
    if script == "wgan":
        a = (args.batch_size, args.latent_dim, args.n_critic, args.clip, args.gp)
        return lambda: mod.train_step(images, D, G, optim_D, optim_G, *a)
    batch = mod.to_unit(images[: args.batch_size])
    return lambda: mod.train_step(batch, D, G, nn.BCELoss(), optim_D, optim_G, args.latent_dim, 1.0)


def seconds(fn, n, device):
    fn()  # warm-up: allocations, cuDNN's choice, the optimisers' state
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / n


# torch 2.9 renamed the TF32 switches (allow_tf32 -> fp32_precision); requirements.txt allows older torch.
def convolutions_in_tf32():
    conv = getattr(torch.backends.cudnn, "conv", None)
    return conv.fp32_precision == "tf32" if conv is not None else torch.backends.cudnn.allow_tf32


@contextlib.contextmanager
def matmul_in_tf32():
    matmul = torch.backends.cuda.matmul
    name, value = ("fp32_precision", "tf32") if hasattr(matmul, "fp32_precision") else ("allow_tf32", True)
    before = getattr(matmul, name)
    setattr(matmul, name, value)
    try:
        yield
    finally:
        setattr(matmul, name, before)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", choices=sorted({s for s, _ in ROWS.values()}), help="scripts to measure")
    p.add_argument("--steps", type=int, default=10, help="eager steps timed per row (after one warm-up step)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True  # as the scripts set it
    size = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    peak = 2 * size**3 / seconds(lambda: a @ b, 10, device) / 1e9
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"`{' '.join(['python bench/flops.py', *sys.argv[1:]])}` on {where}, torch {torch.__version__}")
    print(f"fp32 matrix multiply ({size}x{size}): {peak:.0f} GFLOP/s")
    conv_peak = peak
    if device.type == "cuda" and convolutions_in_tf32():
        with matmul_in_tf32():
            conv_peak = 2 * size**3 / seconds(lambda: a @ b, 10, device) / 1e9
        print(f"TF32 matrix multiply ({size}x{size}): {conv_peak:.0f} GFLOP/s, the convolutions' peak (cuDNN's TF32)")
    print("\n| script | GFLOP/step | convolutions | TFLOP/epoch | s/step (eager) | GFLOP/s | of the peak |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, (script, flags) in ROWS.items():
        if args.only and script not in args.only:
            continue
        step = step_of(script, flags, device)
        step()  # the optimisers' state exists before counting, as in every later step
        with CountFlops() as counter:
            step()
        gflop, conv = counter.flops / 1e9, counter.conv_flops / 1e9
        s = seconds(step, args.steps, device)
        bound = conv / conv_peak + (gflop - conv) / peak  # seconds the arithmetic needs at the peaks
        row = f"| {name} | {gflop:.2f} | {conv / gflop:.0%} | {gflop * 469 / 1e3:.2f} | {s:.4f} | {gflop / s:.0f} |"
        print(f"{row} {bound / s:.0%} |", flush=True)


if __name__ == "__main__":
    main()
