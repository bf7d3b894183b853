"""Latent-space figures from a checkpoint of gan.py, dcgan.py or wgan.py, on a CPU, without the data.

The reports' main figure: 8 base vectors z (columns); for each chosen dimension and each value, the
samples with that dimension changed (rows). Other modes sweep one dimension, interpolate between
base vectors, or just draw them. The base vectors come from --seed or from your own --vectors file.

    python perturb.py --ckpt dcgan.pt                          # perturb_dcgan.png: 15 rows x 8 columns
    python perturb.py --ckpt dcgan.pt --dims 4 21 --values -3 -1 1 3 --mode set
    python perturb.py --ckpt gan.pt --sweep 4 --range -3 3 --steps 9
    python perturb.py --ckpt wgan.pt --interpolate --slerp --steps 10
    python perturb.py --ckpt gan.pt --samples-only --vectors my_z.txt --logdir runs/perturb
"""

import sys

if sys.version_info < (3, 10):  # noqa: UP036 (zip(strict=True) and more: one line now, not a traceback later)
    print(f"This script needs Python 3.10 or newer; this is {sys.version.split()[0]}", file=sys.stderr)
    sys.exit(2)

import argparse
import importlib
import io
import itertools
import math
import os

import torch
from PIL import Image, ImageDraw, ImageFont

SCRIPTS = ("gan", "dcgan", "wgan")
LEFT, TOP, GAP = 72, 16, 2  # label margins and the gap between cells, in pixels


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """--help with every default, except a flag that is off (False) or unset (None): its text says what that means."""

    def _get_help_string(self, action):
        return action.help if action.default is None or action.default is False else super()._get_help_string(action)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=Help)
    p.add_argument("--ckpt", required=True, help="checkpoint written by gan.py, dcgan.py or wgan.py")
    p.add_argument(
        "--out", help="image to write (default: <figure>_<ckpt stem>.png beside the checkpoint; _2, _3, ... if taken)"
    )
    p.add_argument("--n-samples", type=int, default=8, help="number of base vectors drawn from --seed (1-1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the base vectors, in [0, 2^32)")
    p.add_argument("--vectors", help="base vectors from a file: a saved tensor (.pt) or text, one vector a line")
    p.add_argument("--dims", type=int, nargs="+", default=[1, 20, 40, 60, 80], help="latent dimensions to change")
    p.add_argument("--values", type=float, nargs="+", default=[-2.0, 0.0, 2.0], help="values added to (or set in) each")
    p.add_argument("--mode", choices=["add", "set"], default="add", help="add the value to z[dim], or set z[dim] to it")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--sweep", type=int, metavar="DIM", help="sweep one dimension over --range for every sample")
    mode.add_argument("--interpolate", action="store_true", help="walk between pairs of base vectors (1-2, 3-4, ...)")
    mode.add_argument("--samples-only", action="store_true", help="just the base samples")
    p.add_argument("--range", type=float, nargs=2, default=[-3.0, 3.0], metavar=("LOW", "HIGH"), help="for --sweep")
    p.add_argument("--steps", type=int, default=9, help="columns of --sweep and --interpolate (2-1000)")
    p.add_argument("--slerp", action="store_true", help="spherical instead of linear interpolation")
    p.add_argument("--scale", type=int, default=2, help="pixels per image pixel in the PNG (1-32)")
    p.add_argument("--logdir", help="also write the figure to TensorBoard in this folder")
    args = p.parse_args(argv)
    for name, least, most in [("n_samples", 1, 1000), ("steps", 2, 1000), ("scale", 1, 32)]:
        value = getattr(args, name)
        if not least <= value <= most:  # past most: a picture no one can open
            p.error(f"argument --{name.replace('_', '-')}: must be in [{least}, {most}], got {value}")
    if not 0 <= args.seed < 2**32:  # torch takes 64 bits; the training scripts' range, one line and not a traceback
        p.error(f"argument --seed: must be in [0, 2^32), got {args.seed}")
    if args.interpolate and args.vectors is None and args.n_samples < 2:
        p.error("argument --interpolate: needs at least 2 base vectors")
    for name in ["values", "range"]:
        if not all(math.isfinite(v) for v in getattr(args, name)):
            p.error(f"argument --{name}: must be finite numbers, got {getattr(args, name)}")
    if args.out is not None:
        folder = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(folder) or os.path.isdir(args.out):
            p.error(f"argument --out: cannot write {args.out!r} (its folder must exist, and it must not be a folder)")
        if os.path.splitext(args.out)[1].lower() not in Image.registered_extensions():
            p.error(f"argument --out: unknown image type {args.out!r} (use .png)")
    folder = os.path.dirname(os.path.abspath(args.out or args.ckpt))  # the default figure goes beside the checkpoint
    if os.path.isdir(folder) and not os.access(folder, os.W_OK):  # e.g. a TA's read-only folder of checkpoints
        p.error(f"argument --out: cannot write in {folder} (not writable here): pass --out with a folder of yours")
    if args.logdir is not None:
        ancestor = os.path.abspath(args.logdir)
        while not os.path.exists(ancestor):
            ancestor = os.path.dirname(ancestor)
        if not os.path.isdir(ancestor):
            p.error(f"argument --logdir: cannot create {args.logdir!r} under the file {ancestor!r}")
        if not os.access(ancestor, os.W_OK):
            p.error(f"argument --logdir: cannot create {args.logdir!r} ({ancestor} is not writable here)")
    return p, args


def load_generator(p, path):
    """Rebuilds the generator a checkpoint describes, with the Generator class of the script that wrote it."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        p.error(f"argument --ckpt: no file at {path}")
    except Exception as e:  # noqa: BLE001 (any unreadable file gets the same one-line answer)
        p.error(f"argument --ckpt: {path} is not a checkpoint of ours ({type(e).__name__})")
    if not isinstance(ckpt, dict) or not {"script", "generator_kwargs", "G"} <= ckpt.keys():
        p.error(f"argument --ckpt: {path} is not a checkpoint of gan.py, dcgan.py or wgan.py")
    if ckpt["script"] not in SCRIPTS:
        p.error(f"argument --ckpt: {path} comes from an unknown script {ckpt['script']!r}")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        G = importlib.import_module(ckpt["script"]).Generator(**ckpt["generator_kwargs"])
        G.load_state_dict(ckpt["G"])
    except (TypeError, RuntimeError, ValueError, KeyError, AttributeError) as e:
        p.error(f"argument --ckpt: {path}: its generator_kwargs do not fit its weights ({str(e).splitlines()[0]})")
    return G.eval(), ckpt["generator_kwargs"]["latent_dim"]  # eval: batch-norm running statistics, not the batch's


def read_vectors(p, path, latent_dim):
    try:
        if path.endswith(".pt"):
            z = torch.load(path, map_location="cpu", weights_only=True)
            z = torch.as_tensor(z, dtype=torch.float32)
        else:
            with open(path) as f:
                rows = [line.replace(",", " ").split() for line in f if line.strip() and not line.startswith("#")]
            z = torch.tensor([[float(x) for x in row] for row in rows])
    except (OSError, ValueError, RuntimeError, TypeError) as e:
        p.error(f"argument --vectors: cannot read {path} ({str(e).splitlines()[0]})")
    z = z.reshape(1, -1) if z.dim() == 1 else z
    if not torch.isfinite(z).all():
        p.error(f"argument --vectors: {path} holds NaN or infinite numbers")
    if z.dim() != 2 or z.size(0) == 0 or z.size(1) != latent_dim:
        p.error(
            f"argument --vectors: {path} holds shape {tuple(z.shape)}; the generator needs {latent_dim} numbers a line"
        )
    return z


def slerp(a, b, t):
    if a.norm() < 1e-12 or b.norm() < 1e-12:  # no direction to turn through: the straight line
        return (1 - t) * a + t * b
    omega = torch.arccos(torch.dot(a / a.norm(), b / b.norm()).clamp(-1, 1))
    if omega < 1e-6:  # (anti)parallel: fall back to the straight line
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def figure(args, z):
    """The latent vectors of the figure, shape (rows, columns, latent), with row and column labels."""
    n = z.size(0)
    if args.samples_only:
        return z.unsqueeze(0), [""], [f"#{j + 1}" for j in range(n)]
    if args.sweep is not None:
        values = torch.linspace(args.range[0], args.range[1], args.steps)
        grid = z.unsqueeze(1).repeat(1, args.steps, 1)
        grid[:, :, args.sweep] = values if args.mode == "set" else grid[:, :, args.sweep] + values
        sign = "=" if args.mode == "set" else "+"
        return grid, [f"#{i + 1} dim {args.sweep}" for i in range(n)], [f"{sign}{v:.3g}" for v in values.tolist()]
    if args.interpolate:
        ts = torch.linspace(0, 1, args.steps).tolist()
        pairs = [(i, i + 1) for i in range(0, n - 1, 2)]
        walk = slerp if args.slerp else lambda a, b, t: (1 - t) * a + t * b
        grid = torch.stack([torch.stack([walk(z[i], z[j], t) for t in ts]) for i, j in pairs])
        return grid, [f"#{i + 1} to #{j + 1}" for i, j in pairs], [f"{t:.2f}" for t in ts]
    rows, labels = [], []
    for d in args.dims:
        for v in args.values:
            changed = z.clone()
            changed[:, d] = v if args.mode == "set" else changed[:, d] + v
            rows.append(changed)
            labels.append(f"dim {d} {'=' if args.mode == 'set' else ''}{v:+g}")
    return torch.stack(rows), labels, [f"#{j + 1}" for j in range(n)]


def render(images, row_labels, col_labels, scale):
    """images: (rows, columns, 28, 28) in [-1, 1] -> a labelled grayscale PIL image."""
    rows, cols, h, w = images.shape
    cell_h, cell_w = h * scale + GAP, w * scale + GAP
    canvas = Image.new("L", (LEFT + cols * cell_w + GAP, TOP + rows * cell_h + GAP), color=255)
    pixels = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    for r in range(rows):
        for c in range(cols):
            tile = Image.fromarray(pixels[r, c].numpy(), mode="L").resize((w * scale, h * scale), Image.NEAREST)
            canvas.paste(tile, (LEFT + c * cell_w + GAP, TOP + r * cell_h + GAP))
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for r, label in enumerate(row_labels):
        draw.text((4, TOP + r * cell_h + GAP + h * scale // 2 - 5), label, fill=0, font=font)
    for c, label in enumerate(col_labels):
        draw.text((LEFT + c * cell_w + GAP + 2, 2), label, fill=0, font=font)
    return canvas


def main(argv=None):
    p, args = parse_args(argv)
    G, latent_dim = load_generator(p, args.ckpt)
    grid_mode = args.sweep is None and not args.interpolate and not args.samples_only
    for d in (args.dims if grid_mode else []) + ([args.sweep] if args.sweep is not None else []):
        if not 0 <= d < latent_dim:
            p.error(f"dimension {d} is outside [0, {latent_dim}) for this generator")
    if args.vectors is not None:
        z = read_vectors(p, args.vectors, latent_dim)
    else:
        z = torch.randn(args.n_samples, latent_dim, generator=torch.Generator().manual_seed(args.seed))
    if args.interpolate and z.size(0) < 2:
        p.error("argument --interpolate: needs at least 2 base vectors")
    if args.interpolate and z.size(0) % 2:
        print(
            f"note: --interpolate pairs the vectors (1-2, 3-4, ...); vector #{z.size(0)} has no partner and is left out"
        )

    grid, row_labels, col_labels = figure(args, z)
    cell = 28 * args.scale + GAP  # render()'s layout: refused before G draws a picture that would not open
    width, height = LEFT + grid.size(1) * cell + GAP, TOP + grid.size(0) * cell + GAP
    if width * height > Image.MAX_IMAGE_PIXELS:
        p.error(
            f"the figure would be {width} x {height} pixels, past the {Image.MAX_IMAGE_PIXELS} that PIL opens "
            f"without a warning: fewer rows or columns, or a smaller --scale"
        )
    with torch.no_grad():
        images = G(grid.flatten(0, 1)).view(grid.size(0), grid.size(1), 28, 28)
    canvas = render(images, row_labels, col_labels, args.scale)

    if args.samples_only:
        kind = "samples"
    elif args.sweep is not None:
        kind = f"sweep{args.sweep}" + ("-set" if args.mode == "set" else "")
    elif args.interpolate:
        kind = "interpolate" + ("-slerp" if args.slerp else "")
    else:
        kind = "perturb" + ("-set" if args.mode == "set" else "")  # each kind of figure its own name
    name = stem = os.path.splitext(os.path.basename(args.ckpt))[0]
    out = args.out or os.path.join(os.path.dirname(args.ckpt), f"{kind}_{stem}.png")
    if args.out is None:  # the default name never replaces a figure drawn with other flags: it takes _2, _3, ...
        png = io.BytesIO()
        canvas.save(png, format="PNG")
        for k in itertools.count(2):
            if not os.path.exists(out) or open(out, "rb").read() == png.getvalue():
                break
            name = f"{stem}_{k}"  # and its TensorBoard tag with it
            out = os.path.join(os.path.dirname(args.ckpt), f"{kind}_{name}.png")
    replaced = " (replacing the file there)" if args.out is not None and os.path.exists(out) else ""
    try:
        canvas.save(out)
    except OSError as e:  # a full disk or quota: one line (PIL removes the partial file)
        sys.exit(f"Cannot write {out} ({e.strerror or e})")
    print(f"wrote {out}{replaced}: {grid.size(0)} rows x {grid.size(1)} columns")
    if args.logdir:
        from torch.utils.tensorboard import SummaryWriter  # only needed for this option

        with SummaryWriter(args.logdir) as writer:
            writer.add_image(
                f"{kind}/{name}",
                torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8).view(1, canvas.height, canvas.width),
                0,
            )
        print(f"and to TensorBoard in {args.logdir} under {kind}/{name}")


if __name__ == "__main__":
    main()
