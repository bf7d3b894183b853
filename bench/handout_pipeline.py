"""Times one epoch of the handout's pipeline for the same networks as our scripts.

The handout feeds a torchvision DataLoader (ToTensor, batch 128, shuffle) and calls .item() on
every loss. This script does exactly that, with the Generator/Discriminator classes imported from
our script, so the only difference from `python <script>.py --epochs 1` is the input pipeline and
training-loop plumbing.

    python bench/handout_pipeline.py gan           # prints seconds for one epoch
    python bench/handout_pipeline.py gan --epochs 3  # one line per epoch (bench/speed.py takes the later ones)
    python bench/handout_pipeline.py dcgan --device cuda
    python bench/handout_pipeline.py wgan          # 5 critic steps per batch, clipping
"""

import argparse
import importlib
import os
import sys
import time

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("script", choices=["gan", "dcgan", "wgan"], help="whose networks to time")
    p.add_argument("--data-root", default="./data", help="holds FashionMNIST/raw/*.gz")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    p.add_argument("--epochs", type=int, default=1, help="epochs to time, one line each")
    p.add_argument("--max-steps", type=int, default=0, help="stop each epoch after this many batches (0: all)")
    args = p.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    module = importlib.import_module(args.script)
    latent = 100
    if args.script == "gan":
        G, D = module.Generator(latent, 256, 784), module.Discriminator(784, 256)
    else:
        G, D = module.Generator(latent), module.Discriminator()
    G, D = G.to(device), D.to(device)
    # The handout's WGAN normalises to [-1, 1]; GAN and DCGAN use plain ToTensor. Same cost either way.
    ds = datasets.FashionMNIST(args.data_root, train=True, transform=transforms.ToTensor(), download=True)
    loader = DataLoader(ds, batch_size=128, shuffle=True)
    if args.script == "wgan":
        optim_G = torch.optim.RMSprop(G.parameters(), lr=5e-5)
        optim_D = torch.optim.RMSprop(D.parameters(), lr=5e-5)
    else:
        optim_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        optim_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCELoss()

    def d_step(real):
        if args.script == "gan":
            real = real.view(-1, 784)
        noise = torch.randn(real.size(0), latent, device=device)
        real_out, fake_out = D(real), D(G(noise).detach())
        if args.script == "wgan":
            loss = fake_out.mean() - real_out.mean()
        else:
            loss = bce(real_out, torch.ones_like(real_out)) + bce(fake_out, torch.zeros_like(fake_out))
        optim_D.zero_grad()
        loss.backward()
        optim_D.step()
        if args.script == "wgan":
            for q in D.parameters():
                q.data.clamp_(-0.01, 0.01)
        return loss.item()

    def g_step(n):
        out = D(G(torch.randn(n, latent, device=device)))
        loss = -out.mean() if args.script == "wgan" else bce(out, torch.ones_like(out))
        optim_G.zero_grad()
        loss.backward()
        optim_G.step()
        return loss.item()

    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        steps = 0
        for real, _ in loader:
            real = real.to(device)
            for _ in range(5 if args.script == "wgan" else 1):
                d_step(real)
            g_step(real.size(0))
            steps += 1
            if steps == args.max_steps:
                break
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        print(f"handout pipeline | {args.script} | {device} | epoch {epoch} | {steps} steps | {seconds:.2f} s")


if __name__ == "__main__":
    main()
