"""Scores checkpoints of gan.py, dcgan.py and wgan.py side by side: sample quality and mode coverage.

Every metric lives in the feature space of a small CNN classifier trained on the real training
split of the checkpoint's dataset. Its weights ship with this repository (classifiers/*.pt, checked
against the sha256 below), so the numbers have the same scale on every machine and torch build; the
real test split is the reference set. A `real data` row scores 10,000 real training images the same
way: the floor.

- FID: Frechet distance of the classifier's penultimate features (NOT comparable with Inception FIDs)
- precision / recall: k-nearest-neighbour manifolds, k = 5 (Kynkaanniemi et al., NeurIPS 2019)
- classes covered: classes given at least half their fair share of the samples (10 = no collapse)
- KL: KL divergence of the predicted-class histogram from uniform (0 = balanced; log 10 = one class)
- confidence: the classifier's mean top probability; --json also lists each class's share (class_shares)

    python evaluate.py gan.pt dcgan.pt wgan.pt                 # markdown table
    python evaluate.py gan.pt --json scores.json --export samples/
    python evaluate.py gan.pt --retrain-classifier      # your own classifier: numbers on another scale
"""

import sys

if sys.version_info < (3, 10):  # noqa: UP036 (zip(strict=True) and more: one line now, not a traceback later)
    print(f"This script needs Python 3.10 or newer; this is {sys.version.split()[0]}", file=sys.stderr)
    sys.exit(2)

import argparse
import contextlib
import hashlib
import importlib
import io
import json
import math
import os

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import gan  # its data_problem: the same message, naming the file and the fix, as the training scripts'

DATASETS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}
SCRIPTS = ("gan", "dcgan", "wgan")
MAX_N = 60_000  # the training split's size: the real row cannot score more, and the k-NN work grows as n^2
CLASSIFIERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "classifiers")
# The shipped weights (python evaluate.py --retrain-classifier, then copied into classifiers/) and their sha256.
CLASSIFIER_SHA256 = {
    "fashion-mnist": "11059be43b591245f23d9fcfe7e6a9ab1cb098b7f37f224894821410dbe2bd1a",
    "mnist": "182790dc1def2ae33049a9aa9f9924da408c88709b33d32fb82772bb7b8c1810",
}


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """--help with every default, except a flag that is off (False) or unset (None): its text says what that means."""

    def _get_help_string(self, action):
        return action.help if action.default is None or action.default is False else super()._get_help_string(action)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=Help)
    p.add_argument("ckpts", nargs="+", help="checkpoints written by gan.py, dcgan.py or wgan.py")
    p.add_argument(
        "--n", type=int, default=10_000, help="samples drawn from each generator (and real images scored), 256 to 60000"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the latent vectors, in [0, 2^32)")
    p.add_argument("--data-root", default="./data", help="holds <Name>/raw/*.gz")
    p.add_argument("--k", type=int, default=5, help="neighbours for precision and recall")
    p.add_argument("--json", help="also write the numbers to this JSON file")
    p.add_argument("--export", help="write every sample as PNG under DIR/<ckpt stem>/ (for Inception-based FID tools)")
    p.add_argument(
        "--retrain-classifier",
        action="store_true",
        help="train the classifier afresh, not the shipped one (saved as <data-root>/<Name>/classifier.pt)",
    )
    p.add_argument(
        "--classifier-steps", type=int, default=0, help="with --retrain-classifier: steps, 0 or more (0: 3 epochs)"
    )
    args = p.parse_args(argv)
    if not 0 <= args.seed < 2**32:  # torch takes 64 bits; the training scripts' range, one line and not a traceback
        p.error(f"argument --seed: must be in [0, 2^32), got {args.seed}")
    if args.classifier_steps < 0:
        p.error(f"argument --classifier-steps: must be 0 (3 epochs) or more, got {args.classifier_steps}")
    if args.classifier_steps and not args.retrain_classifier:
        p.error("argument --classifier-steps: only with --retrain-classifier")
    d = Classifier.FEATURES
    if args.n < 2 * d:  # fewer samples than features leave the covariance singular
        p.error(f"argument --n: {args.n} samples are too few for a {d}-d covariance (at least {2 * d})")
    if args.n > MAX_N:  # more samples than real images to score them against: a traceback or hours, not a table
        p.error(f"argument --n: at most {MAX_N}, the training images of the real row, got {args.n}")
    if not 1 <= args.k <= args.n // 20:  # a large k grows every ball over the whole set: precision = recall = 1
        p.error(f"argument --k: must be in [1, n/20 = {args.n // 20}], got {args.k}")
    if args.json is not None and not writable_file(args.json):
        p.error(f"argument --json: cannot write {args.json!r} (its folder must exist, and it must not be a folder)")
    if args.export is not None and os.path.exists(args.export) and not os.path.isdir(args.export):
        p.error(f"argument --export: {args.export!r} is a file, not a folder")
    if args.export is not None and not os.access(nearest_folder(args.export), os.W_OK):
        p.error(f"argument --export: cannot create folders under {args.export!r}")
    stems = [os.path.splitext(os.path.basename(path))[0] for path in args.ckpts]
    for stem in stems if args.export is not None else []:  # an FID tool reads every PNG of the folder
        folder = os.path.join(args.export, stem)
        if stems.count(stem) > 1:
            p.error(f"argument --export: two checkpoints named {stem} would share {folder}: rename one")
        if os.path.exists(folder) and not (os.path.isdir(folder) and not os.listdir(folder)):
            p.error(
                f"argument --export: {folder} is not empty (new samples would mix with old): delete it or pick another"
            )
    return p, args


def writable_file(path):
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.isdir(folder) and not os.path.isdir(path) and os.access(folder, os.W_OK)


def nearest_folder(path):
    """The first existing ancestor of path (the folder --export would be created in), or '' if that is a file."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path if os.path.isdir(path) else ""


# ===== The feature extractor =====
class Classifier(nn.Module):
    FEATURES = 128

    def __init__(self):
        super().__init__()
        block = lambda cin, cout: [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]  # noqa: E731
        self.features = nn.Sequential(  # (N, 1, 28, 28) -> (N, 32, 14, 14) -> (N, 64, 7, 7) -> (N, 128, 3, 3)
            *block(1, 32),
            *block(32, 64),
            *block(64, 128),
            nn.Flatten(),
            nn.Linear(128 * 3 * 3, self.FEATURES),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(self.FEATURES, 10))

    def forward(self, x):
        return self.head(self.features(x))


def load_split(p, root, dataset, train):
    name = DATASETS[dataset]
    try:
        ds = getattr(torchvision.datasets, name)(root, train=train, download=True)
    except Exception as e:  # noqa: BLE001 (whatever broke, the answer names the file and the fix)
        p.error(gan.data_problem(root, name, e))  # gan.py's message: which file, and the fix
    return ds.data.unsqueeze(1).float().div(127.5).sub(1), ds.targets  # [-1, 1], like the generators' output


def get_classifier(p, args, dataset, train_x, train_y, test_x, test_y):
    """The shipped classifier, verified against its sha256 (with --retrain-classifier, a new one), its test accuracy,
    and the test split's features: the reference set of every metric."""
    torch.manual_seed(0)  # the same weights every time the classifier is retrained on the same build
    model = Classifier()
    if args.retrain_classifier:
        train_classifier(model, args, train_x, train_y)
        path = os.path.join(args.data_root, DATASETS[dataset], "classifier.pt")
        torch.save(model.state_dict(), path)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        print(f"classifier: retrained, saved as {path} (sha256 {digest}); NOT the shipped scale", file=sys.stderr)
    else:
        path = os.path.join(CLASSIFIERS, f"{dataset}.pt")
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except OSError as e:
            p.error(
                f"the shipped classifier {path} is missing ({e.strerror}): restore it with git, or --retrain-classifier"
            )
        if hashlib.sha256(blob).hexdigest() != CLASSIFIER_SHA256[dataset]:
            p.error(
                f"the shipped classifier {path} does not match its sha256 (corrupt or changed): restore it with "
                f"git checkout, or pass --retrain-classifier for your own (its numbers are on another scale)"
            )
        model.load_state_dict(torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True))
    model.eval()
    ref_features, logits = predict(model, test_x)  # one pass over the test split gives both
    accuracy = (logits.argmax(1) == test_y).float().mean().item()
    print(f"classifier on {dataset}: test accuracy {accuracy:.2%}", file=sys.stderr)
    return model, accuracy, ref_features


def train_classifier(model, args, x, y, batch=256, epochs=3):
    steps = args.classifier_steps or epochs * math.ceil(len(x) / batch)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    model.train()
    order = torch.cat([torch.randperm(len(x)) for _ in range(math.ceil(steps * batch / len(x)))])
    for step in range(steps):
        idx = order[step * batch : (step + 1) * batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 200 == 0:
            print(f"classifier step {step + 1} / {steps} | loss {loss.item():.4f}", file=sys.stderr)


@torch.no_grad()
def predict(model, x, batch=250):  # 250: activations that stay in a CPU's cache, twice as fast as 1000
    outs = [(model.features(x[i : i + batch])) for i in range(0, len(x), batch)]
    features = torch.cat(outs)
    return features, model.head(features)


# ===== Metrics =====
def frechet_distance(a, b):
    mu_a, mu_b = a.double().mean(0), b.double().mean(0)
    cov_a, cov_b = torch.cov(a.double().T), torch.cov(b.double().T)
    vals, vecs = torch.linalg.eigh(cov_a)
    sqrt_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    # tr sqrt(cov_a cov_b) = sum of sqrt eigenvalues of sqrt(cov_a) cov_b sqrt(cov_a), which is symmetric PSD
    cross = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    return ((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross).item()


def knn_radii(x, k, chunk=250):  # 250 rows of distances at a time: a third faster on a CPU than 1000
    return torch.cat([torch.cdist(x[i : i + chunk], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), chunk)])


def coverage(query, support, radii, chunk=1000):
    """Fraction of query points inside at least one support ball (the k-NN manifold of the support)."""
    inside = [(torch.cdist(query[i : i + chunk], support) <= radii).any(1) for i in range(0, len(query), chunk)]
    return torch.cat(inside).float().mean().item()


def scores(features, logits, ref_features, ref_radii, k):
    """The metrics of one set of samples; ref_radii = knn_radii(ref_features, k), the same for every row."""
    probs = logits.softmax(1)
    counts = torch.bincount(probs.argmax(1), minlength=10).double()
    share = counts / counts.sum()
    kl = (share[share > 0] * (share[share > 0] * 10).log()).sum().item()
    return {
        "fid": frechet_distance(features, ref_features),
        "precision": coverage(features, ref_features, ref_radii),
        "recall": coverage(ref_features, features, knn_radii(features, k)),
        "classes_covered": int((counts >= 0.5 * counts.sum() / 10).sum()),
        "kl_uniform": kl,
        "confidence": probs.max(1).values.mean().item(),
        "class_shares": share.tolist(),  # which classes are missing, and by how much (JSON only)
    }


# ===== Generators =====
def load_checkpoint(p, path):
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        p.error(f"no checkpoint at {path}")
    except Exception as e:  # noqa: BLE001 (any unreadable file gets the same one-line answer)
        p.error(f"{path} is not a checkpoint of ours ({type(e).__name__})")
    needed = {"script", "args", "generator_kwargs", "G", "epoch", "step"}
    if not isinstance(ckpt, dict) or ckpt.get("script") not in SCRIPTS or needed - ckpt.keys():
        p.error(f"{path} is not a checkpoint of gan.py, dcgan.py or wgan.py")
    if not isinstance(ckpt["args"], dict) or ckpt["args"].get("dataset") not in DATASETS:
        p.error(f"{path} does not say which dataset it was trained on")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        G = importlib.import_module(ckpt["script"]).Generator(**ckpt["generator_kwargs"])
        G.load_state_dict(ckpt["G"])
    except (TypeError, RuntimeError, ValueError, KeyError, AttributeError) as e:
        p.error(f"{path}: its generator_kwargs do not fit its weights ({str(e).splitlines()[0]})")
    return ckpt, G


@torch.no_grad()
def generate(G, latent_dim, n, seed, batch=1000):
    G.eval()  # batch-norm running statistics: each sample independent of its batch
    z = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))
    return torch.cat([G(z[i : i + batch]).view(-1, 1, 28, 28) for i in range(0, n, batch)])


def describe(ckpt):
    """Every hyper-parameter of the run, the seed and betas included: rows that differ in one are told apart."""
    skipped = gan.RESUMABLE + ("overwrite", "dataset")  # paths, devices and lengths; the dataset has its column
    own = {key: value for key, value in ckpt["args"].items() if key not in skipped and value is not None}
    return ", ".join(
        f"{key.replace('_', '-')} {format(v, 'g') if isinstance(v, float) else v}" for key, v in own.items()
    )


def main(argv=None):
    p, args = parse_args(argv)
    ckpts = [(path, *load_checkpoint(p, path)) for path in args.ckpts]
    for dataset in {c["args"]["dataset"] for _, c, _ in ckpts} if args.retrain_classifier else ():
        folder = nearest_folder(os.path.join(args.data_root, DATASETS[dataset]))  # refused now, not after training
        if not os.access(folder, os.W_OK):
            p.error(
                f"argument --retrain-classifier: cannot save it in {folder} (not writable): use another --data-root"
            )
    rows, accuracies = [], {}
    for dataset in sorted({c["args"]["dataset"] for _, c, _ in ckpts}):
        train_x, train_y = load_split(p, args.data_root, dataset, train=True)
        test_x, test_y = load_split(p, args.data_root, dataset, train=False)
        model, accuracies[dataset], ref_features = get_classifier(p, args, dataset, train_x, train_y, test_x, test_y)
        ref_radii = knn_radii(ref_features, args.k)
        real = train_x[torch.randperm(len(train_x), generator=torch.Generator().manual_seed(args.seed))[: args.n]]
        rows.append({"name": "real data", "dataset": dataset, "epochs": None, "flags": "", "n": len(real)})
        rows[-1].update(scores(*predict(model, real), ref_features, ref_radii, args.k))
        for path, ckpt, G in [row for row in ckpts if row[1]["args"]["dataset"] == dataset]:
            samples = generate(G, ckpt["generator_kwargs"]["latent_dim"], args.n, args.seed)
            epochs = f"{ckpt['epoch']} + {ckpt['step']} steps" if ckpt["step"] else ckpt["epoch"]  # Ctrl-C'd runs
            rows.append({"name": path, "dataset": dataset, "epochs": epochs, "flags": describe(ckpt), "n": args.n})
            rows[-1].update(scores(*predict(model, samples), ref_features, ref_radii, args.k))
            if args.export:
                out = os.path.join(args.export, os.path.splitext(os.path.basename(path))[0])
                try:
                    os.makedirs(out, exist_ok=True)
                    for i, image in enumerate(samples):
                        torchvision.utils.save_image(image.add(1).div(2), os.path.join(out, f"{i:05d}.png"))
                except OSError as e:  # a full disk or quota: one line
                    sys.exit(f"Cannot write the samples of {path} in {out} ({e.strerror or e})")

    columns = (
        "checkpoint | dataset | epochs | flags | FID (clf) | precision | recall | classes covered | KL | confidence"
    )
    print(f"| {columns} |\n| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        epochs = "" if r["epochs"] is None else r["epochs"]
        print(
            f"| {r['name']} | {r['dataset']} | {epochs} | {r['flags']} | {r['fid']:.2f} | {r['precision']:.3f} | "
            f"{r['recall']:.3f} | {r['classes_covered']}/10 | {r['kl_uniform']:.3f} | {r['confidence']:.3f} |"
        )
    if args.json:
        text = json.dumps({"classifier_test_accuracy": accuracies, "rows": rows}, indent=2)
        try:
            with open(args.json, "w") as f:
                f.write(text)
        except OSError as e:  # a full disk or quota: one line, and no half-written JSON left behind
            with contextlib.suppress(OSError):
                os.remove(args.json)
            sys.exit(f"Cannot write {args.json} ({e.strerror or e}): the table above has the numbers")


if __name__ == "__main__":
    main()
