"""Breaks the code on purpose, one realistic bug at a time, and reports whether the test suite notices.

Each mutation replaces text in one file of a temporary copy of the repository, then runs the tests
that exercise that file (pytest -x -k SELECTION) in the copy. A mutation the suite does not fail on
is MISSED: either a test is missing or the bug does not matter (then say why in the note).

    python bench/mutations.py                 # all of them, a table at the end (about 30-40 minutes on 2 cores)
    python bench/mutations.py --only 3 17     # some of them, by number
    python bench/mutations.py --list
    python bench/mutations.py --gpu           # the CUDA-graph path's, on a CUDA machine (bench/gpu_session.sh tests)
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
# The tests that run a file: its own variants, plus the unparametrised tests about it.
SELECT = {
    "gan.py": "not dcgan and not wgan",
    "dcgan.py": "dcgan or one_image or batch_norm",
    "wgan.py": "wgan or gradient_penalty",
    "perturb.py": "perturb and not dcgan and not wgan",
    "evaluate.py": "evaluate",
    "bench/results.py": "results",
}

# (file, what the bug is, [(text, replacement), ...], optional -k selection overriding SELECT)
MUTATIONS = [
    (
        "gan.py",
        "real and fake labels swapped in the D step",
        [
            ("torch.full_like(real_output, real_label))", "torch.zeros_like(real_output))"),
            (
                "loss_func(fake_output, torch.zeros_like(fake_output))",
                "loss_func(fake_output, torch.ones_like(fake_output))",
            ),
        ],
    ),
    (
        "gan.py",
        "G trained with the saturating sign (fakes labelled fake in the G step)",
        [
            (
                "loss_func(fake_output, torch.ones_like(fake_output))",
                "loss_func(fake_output, torch.zeros_like(fake_output))",
            )
        ],
    ),
    ("gan.py", "images scaled to [0, 1]", [("x_uint8.float().div_(127.5).sub_(1)", "x_uint8.float().div_(255)")]),
    ("gan.py", "--label-smoothing ignored", [("real_label = 1.0 - args.label_smoothing", "real_label = 1.0")]),
    (
        "gan.py",
        "the same shuffle every epoch",
        [("manual_seed(seed * 1_000_003 + epoch)", "manual_seed(seed * 1_000_003)")],
    ),
    (
        "gan.py",
        "checkpoint written in place, not atomically",
        [
            (
                'open(tmp, "wb") as f, data.getbuffer() as view:  # the view released however the write ends\n'
                "            f.write(view)\n        replace(tmp, path)",
                'open(path, "wb") as f, data.getbuffer() as view:\n            f.write(view)',
            )
        ],
    ),
    (
        "gan.py",
        "epoch loss sums not restored on resume",
        [('ckpt["epoch"], ckpt["step"], ckpt["sums"]', 'ckpt["epoch"], ckpt["step"], torch.zeros(4)')],
    ),
    ("gan.py", "RNG state not restored on resume", [('torch.set_rng_state(ckpt["rng_cpu"])', "pass")]),
    (
        "gan.py",
        "purge step one too early (a step loss lost per resume)",
        [("global_step + 1 if same", "global_step if same")],
    ),
    (
        "gan.py",
        "epoch scalars at x = epoch, one left of the images",
        [
            (
                'writer.add_scalar("GAN/Loss/Discriminator", mean[0], epoch + 1)',
                'writer.add_scalar("GAN/Loss/Discriminator", mean[0], epoch)',
            )
        ],
    ),
    (
        "gan.py",
        "a copied checkpoint resumes into the original run folder",
        [
            (
                'here = ckpt is not None and ckpt.get("ckpt_path") == os.path.abspath(args.ckpt)',
                "here = ckpt is not None",
            )
        ],
    ),
    (
        "gan.py",
        "stale milestone PNGs kept after a resume with more epochs",
        [("        os.remove(old)  #", "        pass  #")],
    ),
    (
        "gan.py",
        "a live lock treated as stale",
        [("or (pid > 0 and not running(pid))):", "or pid > 0):")],
    ),
    ("gan.py", "no warning when D saturates", [(">= BCE_CLAMP - 1e-3", ">= BCE_CLAMP + 1")]),
    ("gan.py", "output paths not checked before training", [('    check_writable(p, "--ckpt", args.ckpt)\n', "")]),
    ("dcgan.py", "samples drawn with batch norm in train mode", [("G.eval()  # eval mode", "G.train()  # eval mode")]),
    (
        "dcgan.py",
        "a last batch of one image",
        [
            (
                "n // args.batch_size if n % args.batch_size == 1 else math.ceil",
                "math.ceil(n / args.batch_size) if 0 else math.ceil",
            )
        ],
    ),
    ("wgan.py", "generator loss sign flipped", [("loss_G = -D(G(noise)).mean()", "loss_G = D(G(noise)).mean()")]),
    ("wgan.py", "critic loss sign flipped", [("loss_D = -wasserstein + ", "loss_D = wasserstein + ")]),
    ("wgan.py", "gradient penalty without create_graph", [("mixed, create_graph=True)", "mixed, create_graph=False)")]),
    ("wgan.py", "gradient norm over the whole batch, not per sample", [("grad.flatten(1).norm(dim=1)", "grad.norm()")]),
    (
        "wgan.py",
        "only the weights clipped, not the biases",
        [("for param in D.parameters():", "for param in list(D.parameters())[::2]:")],
    ),
    (
        "wgan.py",
        "one critic step per generator step, whatever --n-critic says",
        [("for _ in range(n_critic):", "for _ in range(1):")],
    ),
    (
        "gan.py",
        "a checkpoint's optimiser flags (capturable) win on resume",
        [('own_flags(ckpt[key], part) if key.startswith("optim") else ckpt[key]', "ckpt[key]")],
        "graph_run_resumes and not dcgan and not wgan",
    ),
    (
        "wgan.py",
        "a checkpoint's optimiser flags (capturable) win on resume",
        [('own_flags(ckpt[key], part) if key.startswith("optim") else ckpt[key]', "ckpt[key]")],
        "graph_run_resumes and wgan",
    ),
    (
        "perturb.py",
        "--mode set acts like add",
        [('changed[:, d] = v if args.mode == "set" else changed[:, d] + v', "changed[:, d] = changed[:, d] + v")],
    ),
    ("perturb.py", "generator left in train mode", [("return G.eval(), ", "return G, ")], "perturb"),
    (
        "perturb.py",
        "slerp through a zero vector gives NaN",
        [("if a.norm() < 1e-12 or b.norm() < 1e-12:", "if False:")],
    ),
    (
        "perturb.py",
        "default --dims checked in modes that do not use them",
        [("grid_mode = args.sweep is None and not args.interpolate and not args.samples_only", "grid_mode = True")],
    ),
    (
        "evaluate.py",
        "precision and recall swapped",
        [
            (
                '"precision": coverage(features, ref_features, ref_radii)',
                '"precision": coverage(ref_features, features, knn_radii(features, k))',
            ),
            (
                '"recall": coverage(ref_features, features, knn_radii(features, k))',
                '"recall": coverage(features, ref_features, ref_radii)',
            ),
        ],
    ),
    (
        "evaluate.py",
        "coverage threshold: more than half a fair share",
        [("(counts >= 0.5 * counts.sum() / 10)", "(counts > 0.5 * counts.sum() / 10)")],
    ),
    ("evaluate.py", "KL without the uniform's 1/10", [("(share[share > 0] * 10).log()", "(share[share > 0]).log()")]),
    (
        "evaluate.py",
        "generator sampled in train mode",
        [("G.eval()  # batch-norm running statistics", "G.train()  #")],
        "evaluate",
    ),
    ("evaluate.py", "the shipped classifier's checksum not checked", [("!= CLASSIFIER_SHA256[dataset]", "== 'never'")]),
    ("evaluate.py", "any --k accepted", [("if not 1 <= args.k <= args.n // 20:", "if not 1 <= args.k:")]),
    (
        "gan.py",
        "D not frozen in the G step: its weight gradients computed, then thrown away",
        [("    D.requires_grad_(False)  # gradients", "    D.requires_grad_(True)  # gradients")],
        "multiplies",
    ),
    (
        "gan.py",
        "the D step records G's graph and back-propagates into G (no torch.no_grad)",
        [("with torch.no_grad():  # the handout's .detach()", "with contextlib.nullcontext():  # the handout's")],
        "multiplies",
    ),
    (
        "gan.py",
        "--lr-d ignored (D at --lr)",
        [("lr=args.lr_d or args.lr, **adam", "lr=args.lr, **adam")],
        "lr_d and not dcgan and not wgan",
    ),
    (
        "dcgan.py",
        "--lr-d given to G too",
        [
            (
                "optim_G = torch.optim.Adam(G.parameters(), lr=args.lr,",
                "optim_G = torch.optim.Adam(G.parameters(), lr=args.lr_d or args.lr,",
            )
        ],
        "lr_d and dcgan",
    ),
    (
        "wgan.py",
        "--lr-d ignored by the clipping mode's RMSprop",
        [("lr=args.lr_d or args.lr, capturable", "lr=args.lr, capturable")],
        "lr_d and wgan",
    ),
    (
        "wgan.py",
        "--lr-d ignored with --gp",
        [("lr=args.lr_d or args.lr, **adam", "lr=args.lr, **adam")],
        "lr_d and wgan",
    ),
    (
        "wgan.py",
        "the penalty's interpolation weight drawn per pixel, not per image",
        [
            (
                "eps = torch.rand(real_images.size(0), 1, 1, 1, device=real_images.device)",
                "eps = torch.rand_like(real_images)",
            )
        ],
    ),
    (
        "wgan.py",
        "one interpolation weight for the whole batch",
        [
            (
                "eps = torch.rand(real_images.size(0), 1, 1, 1, device=real_images.device)",
                "eps = torch.rand(1, 1, 1, 1, device=real_images.device)",
            )
        ],
    ),
    (
        "wgan.py",
        "every critic step of a generator step on the same batch (the handout's loop)",
        [
            (
                "    for _ in range(n_critic):\n        real_images = to_unit(images[torch.randint(images.size(0), "
                "(batch_size,), device=images.device)])\n",
                "    real_images = to_unit(images[torch.randint(images.size(0), (batch_size,), "
                "device=images.device)])\n    for _ in range(n_critic):\n",
            )
        ],
    ),
    (
        "evaluate.py",
        "FID's mean term not squared",
        [("(mu_a - mu_b).square().sum()", "(mu_a - mu_b).abs().sum()")],
    ),
    (
        "evaluate.py",
        "FID's cross term from the eigenvalues of cov_a @ cov_b, which is not symmetric",
        [("torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)", "torch.linalg.eigvalsh(cov_a @ cov_b)")],
    ),
    (
        "evaluate.py",
        "k-NN radii that count each point as its own nearest neighbour",
        [("kthvalue(k + 1, dim=1)", "kthvalue(k, dim=1)")],
    ),
    (
        "bench/results.py",
        "the population standard deviation (n) where the table says the spread over seeds (n - 1)",
        [("statistics.stdev(values)", "statistics.pstdev(values)")],
    ),
    (
        "bench/results.py",
        "every seed's cell from the first seed's scores",
        [("scored = [rows[name, s] for s in args.seeds]", "scored = [rows[name, args.seeds[0]] for s in args.seeds]")],
    ),
    (
        "bench/results.py",
        "a finished run trained again",
        [('if stem.with_suffix(".json").exists() and', "if False and")],
    ),
    ("wgan.py", "--clip ignored (always 0.01)", [("param.clamp_(-clip, clip)", "param.clamp_(-0.01, 0.01)")]),
    (
        "wgan.py",
        "--gp's weight ignored (always 10)",
        [("loss_D = -wasserstein + (gp or 0) * penalty", "loss_D = -wasserstein + (10 if gp else 0) * penalty")],
    ),
    ("gan.py", "--beta1/--beta2 ignored", [('"betas": (args.beta1, args.beta2)', '"betas": (0.5, 0.999)')]),
    ("dcgan.py", "--beta1/--beta2 ignored", [('"betas": (args.beta1, args.beta2)', '"betas": (0.5, 0.999)')]),
    ("wgan.py", "--beta1/--beta2 ignored with --gp", [('"betas": (args.beta1, args.beta2)', '"betas": (0.5, 0.9)')]),
    ("dcgan.py", "--label-smoothing ignored", [("real_label = 1.0 - args.label_smoothing", "real_label = 1.0")]),
    (
        "gan.py",
        "the epoch curves of D and G logged under each other's tags",
        [
            ('"GAN/Loss/Discriminator", mean[0]', '"GAN/Loss/Discriminator", mean[1]'),
            ('"GAN/Loss/Generator", mean[1]', '"GAN/Loss/Generator", mean[0]'),
        ],
    ),
    (
        "dcgan.py",
        "D(x) and D(G(z)) logged under each other's tags",
        [
            ('"DCGAN/Output/D_real", mean[2]', '"DCGAN/Output/D_real", mean[3]'),
            ('"DCGAN/Output/D_fake", mean[3]', '"DCGAN/Output/D_fake", mean[2]'),
        ],
    ),
    (
        "wgan.py",
        "the Wasserstein curve logged with the critic loss's sign",
        [('"WGAN/Wasserstein", mean[2]', '"WGAN/Wasserstein", -mean[2]')],
    ),
    (
        "dcgan.py",
        "D's LeakyReLU at the DCGAN paper's slope 0.2, not the handout's 0.1",
        [("nn.Conv2d(1, 32, 5, 1, 2), nn.LeakyReLU(0.1)", "nn.Conv2d(1, 32, 5, 1, 2), nn.LeakyReLU(0.2)")],
    ),
    ("dcgan.py", "no batch norm after G's first transposed convolution", [("nn.BatchNorm2d(64),", "")]),
    (
        "wgan.py",
        "the critic keeps dcgan.py's Sigmoid",
        [("self.fc2 = nn.Linear(1024, 1)", "self.fc2 = nn.Sequential(nn.Linear(1024, 1), nn.Sigmoid())")],
    ),
    (
        "gan.py",
        "each epoch's grid drawn from fresh noise (the handout's way)",
        [
            (
                "history[epoch + 1] = to_uint8(sample(G, fixed_noise))",
                "history[epoch + 1] = to_uint8(sample(G, torch.randn_like(fixed_noise)))",
            )
        ],
    ),
    ("gan.py", "--lr's default 1e-3, not the handout's 2e-4", [("default=2e-4, help=", "default=1e-3, help=")]),
    ("dcgan.py", "--batch-size's default 64, not the handout's 128", [("default=128, help=", "default=64, help=")]),
    ("wgan.py", "--n-critic's default 1, not the handout's 5", [("default=5, help=", "default=1, help=")]),
    (
        "evaluate.py",
        "the classifier left in train mode (its features from batch statistics)",
        [("    model.eval()\n    ref_features", "    ref_features")],
    ),
    (
        "evaluate.py",
        "the training split as the reference set",
        [("ref_features, logits = predict(model, test_x)", "ref_features, logits = predict(model, train_x)")],
    ),
    (
        "perturb.py",
        "the figure's rows and columns mixed up on the way through G",
        [("images = G(grid.flatten(0, 1))", "images = G(grid.transpose(0, 1).flatten(0, 1))")],
        "perturb",  # its cell-by-cell test runs on dcgan.py's batch-norm generator
    ),
    (
        "perturb.py",
        "the TensorBoard copy of the figure with its height and width swapped",
        [(".view(1, canvas.height, canvas.width)", ".view(1, canvas.width, canvas.height)")],
        "perturb",
    ),
    (
        "gan.py",
        "--dataset mnist trains on FashionMNIST",
        [('"mnist": "MNIST"}', '"mnist": "FashionMNIST"}')],
    ),
    (
        "dcgan.py",
        "the test split trained on",
        [("(args.data_root, train=True, download=True)", "(args.data_root, train=False, download=True)")],
    ),
    (
        "gan.py",
        "D's gradients never zeroed (they pile up step after step)",
        [("    optim_D.zero_grad(set_to_none=True)\n", "")],
    ),
    (
        "wgan.py",
        "G's gradients never zeroed (they pile up step after step)",
        [("    optim_G.zero_grad(set_to_none=True)\n", "")],
    ),
    (
        "gan.py",
        "the epoch's last, smaller batch dropped (DataLoader's drop_last)",
        [
            ("if n % args.batch_size == 1 else math.ceil(n / args.batch_size)", "if True else None"),
            ("end = (i + 1) * args.batch_size if i + 1 < steps else n", "end = (i + 1) * args.batch_size"),
        ],
    ),
    (
        "dcgan.py",
        "the last batch filled up with images the epoch has already seen",
        [("batch = order[i * args.batch_size : end]", "batch = order[max(end - args.batch_size, 0) : end]")],
    ),
    (
        "wgan.py",
        "G trained with Adam in the clipping mode",
        [("optim_G = torch.optim.RMSprop(G.parameters()", "optim_G = torch.optim.Adam(G.parameters()")],
    ),
    (
        "gan.py",
        "D at Adam's default rate 1e-3 unless --lr-d is given",
        [("lr=args.lr_d or args.lr, **adam)", "lr=args.lr_d or 1e-3, **adam)")],
    ),
    (
        "wgan.py",
        "--help shows unset defaults as None ('--lr-d (None: same as --lr)', '--resume (default: False)')",
        [("formatter_class=Help", "formatter_class=argparse.ArgumentDefaultsHelpFormatter")],
    ),
    (
        "bench/results.py",
        "a candidate trained at the handout's defaults (its own flags dropped)",
        [('flags = [*flags.split(), "--seed", str(seed)]', 'flags = ["--seed", str(seed)]')],
    ),
    (
        "bench/results.py",
        "a name's own dot eaten by with_suffix (gan_ls0.2's scores written to gan_ls0.json)",
        [('stem = stem.with_name(stem.name + ".x")', "stem = stem")],
    ),
    (
        "dcgan.py",
        "D not frozen in the G step: its weight gradients computed, then thrown away",
        [("    D.requires_grad_(False)  # gradients", "    D.requires_grad_(True)  # gradients")],
        "convolves",
    ),
    (
        "dcgan.py",
        "the D step records G's graph and back-propagates into G (no torch.no_grad)",
        [("with torch.no_grad():  # the handout's .detach()", "with contextlib.nullcontext():  # the handout's")],
        "convolves",
    ),
    (
        "bench/flops.py",
        "convolutions not told apart from matrix multiplies (all held to the fp32 peak on a GPU)",
        [('flops if "conv" in func._overloadpacket.__name__ else 0', "0")],
        "convolves",
    ),
    (
        "evaluate.py",
        "precision's neighbourhoods at k = 5 whatever --k says",
        [("ref_radii = knn_radii(ref_features, args.k)", "ref_radii = knn_radii(ref_features, 5)")],
    ),
    (
        "evaluate.py",
        "recall's neighbourhoods at k = 5 whatever --k says",
        [("knn_radii(features, k)),", "knn_radii(features, 5)),")],
    ),
    (
        "bench/results.py",
        "an unfinished run started afresh instead of resumed",
        [('flags = ["--resume"]  # the run keeps', 'flags = [*flags.split(), "--seed", str(seed), "--overwrite"]  #')],
    ),
    (
        "bench/gpu_session.sh",
        "the kept runs not restored before a results call (the next loan trains them again)",
        [("-exec cp -n {} gpu_results/", "-exec true {} gpu_results/")],
        "loans_results",
    ),
    (
        "bench/gpu_session.sh",
        "the kept runs restored over a carried folder's newer files",
        [("-exec cp -n {}", "-exec cp {}")],
        "loans_results",
    ),
    (
        "wgan.py",
        "a one-sided penalty (only gradient norms above 1 punished)",
        [("((grad.flatten(1).norm(dim=1) - 1) ** 2)", "((grad.flatten(1).norm(dim=1) - 1).clamp(min=0) ** 2)")],
    ),
    (
        "wgan.py",
        "the critic's weights clipped before its optimiser step, not after",
        [
            ("    optim_D.step()\n    if not gp:", "    if not gp:"),
            ("param.clamp_(-clip, clip)\n", "param.clamp_(-clip, clip)\n    optim_D.step()\n"),
        ],
    ),
    (
        "wgan.py",
        "the critic's losses summed over its steps (the handout's five-fold value), not averaged",
        [("critic / n_critic  # means over the critic steps", "critic  # sums over the critic steps")],
    ),
    (
        "wgan.py",
        "D not frozen in the G step: its weight gradients computed, then thrown away",
        [("    D.requires_grad_(False)  # gradients flow", "    # gradients flow")],
    ),
    (
        "wgan.py",
        "the critic step records G's graph and back-propagates into G (no torch.no_grad)",
        [("with torch.no_grad():  # the handout's .detach()", "with contextlib.nullcontext():  # the handout's")],
        "convolves",
    ),
    (
        "dcgan.py",
        "G left in eval mode after a sample (then trained on batch norm's running statistics)",
        [("    G.train(was_training)\n", "")],
    ),
    (
        "perturb.py",
        "--seed ignored (the base vectors always from seed 0)",
        [("manual_seed(args.seed))", "manual_seed(0))")],
        "perturb_draws_in_each_cell",  # the cell test runs on dcgan.py's checkpoint, outside perturb.py's selection
    ),
    (
        "gan.py",
        "Ctrl-C saves the step it finished as not yet done (the resumed run trains it twice)",
        [("save_checkpoint(args.ckpt, state(epoch, i + 1))", "save_checkpoint(args.ckpt, state(epoch, i))")],
    ),
    (
        "gan.py",
        "images per second of a resumed epoch counted over the whole epoch, not the part it ran",
        [
            (
                "seconds, seen = time.perf_counter() - t0, n - first * args.batch_size",
                "seconds, seen = time.perf_counter() - t0, n",
            )
        ],
    ),
    (
        "evaluate.py",
        "confidence from the raw logits, not the softmax probabilities",
        [("probs.max(1).values.mean().item()", "logits.max(1).values.mean().item()")],
    ),
    (
        "gan.py",
        "label smoothing leaks into the G step (G's target 1 - smoothing instead of 1)",
        [
            ("batch_size, latent_dim, device):\n", "batch_size, latent_dim, device, real_label=1.0):\n"),
            (
                "loss_func(fake_output, torch.ones_like(fake_output))",
                "loss_func(fake_output, torch.full_like(fake_output, real_label))",
            ),
            (
                "real_images.size(0), latent_dim, real_images.device)",
                "real_images.size(0), latent_dim, real_images.device, real_label)",
            ),
        ],
    ),
    (
        "gan.py",
        "--seed ignored by the weights and noise (always seed 0)",
        [("torch.manual_seed(args.seed)", "torch.manual_seed(0)")],
    ),
    (
        "gan.py",
        "progress lines print the mean since the last line, not the running mean over the epoch",
        [("mean = sums / (i + 1)", "mean = values.mean(0)")],
    ),
    (
        "wgan.py",
        "the critic clipped once per generator step, after its last step, not after each",
        [
            (
                "    if not gp:\n        with torch.no_grad():  # weight clipping",
                "    if False:\n        with torch.no_grad():  # weight clipping",
            ),
            (
                "    loss_G = train_generator(D, G, optim_G, batch_size",
                "    if not gp:\n        with torch.no_grad():\n            for param in D.parameters():\n"
                "                param.clamp_(-clip, clip)\n    loss_G = train_generator(D, G, optim_G, batch_size",
            ),
        ],
    ),
    (
        "gan.py",
        "TensorBoard's step losses at x = steps done - 1",
        [
            ('"GAN/Step/Loss_D", ld, global_step)', '"GAN/Step/Loss_D", ld, global_step - 1)'),
            ('"GAN/Step/Loss_G", lg, global_step)', '"GAN/Step/Loss_G", lg, global_step - 1)'),
        ],
    ),
    (
        "gan.py",
        "images per second count the epoch's smaller last batch as a full one",
        [("n - first * args.batch_size", "(steps - first) * args.batch_size")],
    ),
    (
        "wgan.py",
        "the critic's random batches drawn from the first batch-size images only",
        [("torch.randint(images.size(0), (batch_size,)", "torch.randint(batch_size, (batch_size,)")],
    ),
    (
        "wgan.py",
        "the generator's weights clipped instead of the critic's",
        [("for param in D.parameters():", "for param in G.parameters():")],
    ),
    (
        "gan.py",
        "the real row of real_vs_generated.png from [0, 1] images (washed out)",
        [("real = to_uint8(to_unit(images[", "real = to_uint8((lambda x: x.float() / 255)(images[")],
    ),
    (
        "gan.py",
        "every grid of progress.png the final epoch's samples",
        [("tiles.append(grid_image(history[epoch]))", "tiles.append(grid_image(history[max(history)]))")],
    ),
    (
        "evaluate.py",
        "--export writes the samples in [-1, 1] (every pixel below mid-grey black)",
        [("torchvision.utils.save_image(image.add(1).div(2), ", "torchvision.utils.save_image(image, ")],
    ),
    (
        "bench/results.py",
        "the figure's rows from the last seed, while its title names the first",
        [('f"{name}_seed{args.seeds[0]}.png"', 'f"{name}_seed{args.seeds[-1]}.png"')],
    ),
    (
        "gan.py",
        "the samples of earlier epochs not restored on resume (progress.png loses its first milestones)",
        [
            (
                'fixed_noise, history = ckpt["fixed_noise"].to(device), ckpt.get("history", {})',
                'fixed_noise, history = ckpt["fixed_noise"].to(device), {}',
            )
        ],
    ),
    ("wgan.py", "the critic's weights clipped in the --gp mode too", [("    if not gp:\n", "    if True:\n")]),
    (
        "wgan.py",
        "the gradient penalty taken at the real images only, not between real and fake",
        [("mixed = (eps * real_images + (1 - eps) * fake_images)", "mixed = (real_images + 0 * eps)")],
    ),
    (
        "wgan.py",
        "the gradient penalty without its - 1 (every gradient pushed to zero, not to norm 1)",
        [("((grad.flatten(1).norm(dim=1) - 1) ** 2)", "((grad.flatten(1).norm(dim=1)) ** 2)")],
    ),
    (
        "gan.py",
        "each batch skips its first image (an off-by-one in the slice)",
        [("batch = order[i * args.batch_size : end]", "batch = order[i * args.batch_size + 1 : end]")],
    ),
    (
        "gan.py",
        "only D's loss looked at for NaN or infinity",
        [("if not torch.isfinite(values).all():", "if not torch.isfinite(values[:, 0]).all():")],
    ),
    (
        "gan.py",
        "the epoch-end checkpoint records its epoch as not done",
        [("save_checkpoint(args.ckpt, state(epoch + 1, 0))", "save_checkpoint(args.ckpt, state(epoch, 0))")],
    ),
    (
        "evaluate.py",
        "the real-data row drawn from the test split (the reference set itself: FID 0)",
        [("real = train_x[torch.randperm(len(train_x)", "real = test_x[torch.randperm(len(test_x)")],
    ),
    ("gan.py", "G without its Tanh", [("            nn.Tanh(),  # pixels in [-1, 1], like the training images\n", "")]),
    (
        "perturb.py",
        "slerp runs from the second vector to the first",
        [
            (
                "return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b)",
                "return (torch.sin(t * omega) * a + torch.sin((1 - t) * omega) * b)",
            )
        ],
    ),
    (
        "perturb.py",
        "--interpolate's pairs overlap (1-2, 2-3, ...)",
        [("pairs = [(i, i + 1) for i in range(0, n - 1, 2)]", "pairs = [(i, i + 1) for i in range(0, n - 1)]")],
    ),
    (
        "perturb.py",
        "--sweep's add mode sets the values",
        [
            (
                'grid[:, :, args.sweep] = values if args.mode == "set" else grid[:, :, args.sweep] + values',
                "grid[:, :, args.sweep] = values",
            )
        ],
    ),
    (
        "perturb.py",
        "the straight-line interpolation runs from the second vector to the first",
        [("lambda a, b, t: (1 - t) * a + t * b", "lambda a, b, t: t * a + (1 - t) * b")],
    ),
    (
        "perturb.py",
        "--range's high end left out of the sweep",
        [
            (
                "values = torch.linspace(args.range[0], args.range[1], args.steps)",
                "values = torch.linspace(args.range[0], args.range[1], args.steps + 1)[:-1]",
            )
        ],
    ),
    (
        "wgan.py",
        "images per second count one critic batch per generator step, not n-critic",
        [("(steps - first) * args.batch_size * args.n_critic", "(steps - first) * args.batch_size")],
    ),
    (
        "gan.py",
        "run folders claimed with exist_ok (two runs started in the same second share one)",
        [("os.makedirs(run_dir)  # atomic", "os.makedirs(run_dir, exist_ok=True)  # atomic")],
    ),
    (
        "gan.py",
        "--label-smoothing 1 accepted (a real label of 0, the fakes' label)",
        [("if not 0 <= args.label_smoothing < 1:", "if not 0 <= args.label_smoothing <= 1:")],
    ),
    ("gan.py", "--lr changed silently on --resume", [('RESUMABLE = ("epochs",', 'RESUMABLE = ("lr", "epochs",')]),
    (
        "gan.py",
        "every epoch after a mid-epoch resume starts at the step it stopped at",
        [
            (
                "first = time.perf_counter(), [], start_step if epoch == start_epoch else 0",
                "first = time.perf_counter(), [], start_step",
            )
        ],
    ),
    (
        "bench/results.py",
        "a resumed run's log started afresh (its first epochs lost to s/epoch)",
        [('with open(log, "a" if flags == ["--resume"] else "w") as f:', 'with open(log, "w") as f:')],
    ),
    (
        "evaluate.py",
        "--seed ignored by the samples (always seed 0's z)",
        [("generator=torch.Generator().manual_seed(seed))", "generator=torch.Generator().manual_seed(0))")],
    ),
    ("dcgan.py", "--lr changed silently on --resume", [('RESUMABLE = ("epochs",', 'RESUMABLE = ("lr", "epochs",')]),
    (
        "wgan.py",
        "--n-critic changed silently on --resume",
        [('RESUMABLE = ("epochs",', 'RESUMABLE = ("n_critic", "epochs",')],
    ),
    (
        "perturb.py",
        "the set mode's figure named like the add mode's (one overwrites the other)",
        [('kind = "perturb" + ("-set" if args.mode == "set" else "")', 'kind = "perturb"')],
    ),
    (
        "gan.py",
        "Ctrl-C saves without logging the steps since the last progress line (lost to TensorBoard and the sums)",
        [
            (
                "if (i + 1) % args.log_every == 0 or i + 1 == steps or stop:",
                "if (i + 1) % args.log_every == 0 or i + 1 == steps:",
            )
        ],
    ),
    (
        "dcgan.py",
        "two-sided label smoothing (the fakes labelled --label-smoothing)",
        [
            (
                "fake_loss = loss_func(fake_output, torch.zeros_like(fake_output))",
                "fake_loss = loss_func(fake_output, torch.full_like(fake_output, 1 - real_label))",
            )
        ],
    ),
    (
        "dcgan.py",
        "D's loss the mean of its two terms, not their sum",
        [("    loss_D = real_loss + fake_loss\n", "    loss_D = (real_loss + fake_loss) / 2\n")],
    ),
    (
        "wgan.py",
        "one critic step too few per generator step",
        [("for _ in range(n_critic):", "for _ in range(n_critic - 1):")],
    ),
    ("evaluate.py", "any --n accepted (a singular covariance below 256)", [("if args.n < 2 * d:", "if args.n < 2:")]),
    (
        "gan.py",
        "the fixed z of the logged grids the same for every seed",
        [
            (
                "generator=torch.Generator().manual_seed(args.seed)).to(device)",
                "generator=torch.Generator().manual_seed(0)).to(device)",
            )
        ],
    ),
    ("gan.py", "the milestone epochs rounded down", [("math.ceil(args.epochs * q / 4)", "args.epochs * q // 4")]),
    (
        "gan.py",
        "epoch orders shared between seeds (seed + epoch: seed 1's epoch 0 is seed 0's epoch 1)",
        [("manual_seed(seed * 1_000_003 + epoch)", "manual_seed(seed + epoch)")],
    ),
    (
        "gan.py",
        "a corrupt .gz not named (its md5 not checked)",
        [("if os.path.exists(gz) and not torchvision.datasets.utils.check_md5(gz, md5):", "if False:")],
    ),
    (
        "gan.py",
        "losses.png drawn upside down (a rising loss falls)",
        [
            (
                "top + h * (hi - min(max(v, lo), hi)) / (hi - lo)",
                "top + h * (min(max(v, lo), hi) - lo) / (hi - lo)",
            )
        ],
    ),
    (
        "gan.py",
        "losses.png's curve starts at epoch 0 whatever steps it lacks",
        [
            (
                "first, chunk = done - len(losses), max(1, len(losses) // 200)",
                "first, chunk = 0, max(1, len(losses) // 200)",
            )
        ],
    ),
    (
        "gan.py",
        "the step losses not restored on --resume (losses.png shows only the resumed part)",
        [('step_losses = ckpt.get("step_losses", step_losses)', "step_losses = step_losses")],
    ),
    (
        "dcgan.py",
        "losses.png's G panel drawn from D(x), not Loss_G",
        [("torch.cat([step_losses, values[:, : len(CURVES)]])", "torch.cat([step_losses, values[:, ::2]])")],
    ),
    (
        "wgan.py",
        "losses.png's bold line the running mean from the start, not the mean of each stretch",
        [("(first + s + len(c) / 2, c.mean().item())", "(first + s + len(c) / 2, values[: s + len(c)].mean().item())")],
    ),
    (
        "gan.py",
        "--device mps off a Mac answered with torch's page-long reason",
        [('if name.startswith("mps") and not torch.backends.mps.is_available():', "if False:")],
    ),
    (
        "perturb.py",
        "a second figure of one kind written over the first (the default name reused)",
        [("if args.out is None:  # the default name never", "if False:  # the default name never")],
    ),
    (
        "perturb.py",
        "the same figure again written to a new name (_2) instead of its own",
        [(' or open(out, "rb").read() == png.getvalue()', "")],
    ),
    (
        "evaluate.py",
        "--export into a folder that holds an earlier export (old and new samples in one FID)",
        [("if os.path.exists(folder) and not (os.path.isdir(folder) and not os.listdir(folder)):", "if False:")],
    ),
    (
        "evaluate.py",
        "--export of two checkpoints of one name into one folder",
        [("if stems.count(stem) > 1:", "if False:")],
    ),
    (
        "wgan.py",
        "SIGTERM (a scheduler's kill) not handled: the epoch so far lost",
        [("for signum in (signal.SIGINT, signal.SIGTERM):", "for signum in (signal.SIGINT,):")],
    ),
    (
        "gan.py",
        "status 130 whatever the signal (a SIGTERM'd job reported as Ctrl-C'd)",
        [("sys.exit(128 + stop[0])", "sys.exit(130)")],
    ),
    (
        "wgan.py",
        "losses.png's Wasserstein panel drawn from the gradient penalty",
        [("torch.cat([step_losses, values[:, : len(CURVES)]])", "torch.cat([step_losses, values[:, [0, 1, 3]]])")],
    ),
    (
        "wgan.py",
        "losses.png without the Wasserstein estimate, the curve to watch",
        [('CURVES = ["Loss_D", "Loss_G", "Wasserstein"]', 'CURVES = ["Loss_D", "Loss_G"]')],
    ),
    (
        "dcgan.py",
        "the NaN stop exits with TensorBoard's writer open (its unwritten events die with the process)",
        [("    writer.close()  # its thread is a daemon", "    pass  # its thread is a daemon")],
    ),
    (
        "wgan.py",
        "Python 3.9 let through (it trains, then fails on zip(strict=True) drawing the figures)",
        [("if sys.version_info < (3, 10):", "if sys.version_info < (3, 9):")],
        "older_python",
    ),
    (
        "bench/gpu_session.sh",
        "RESULTS_JOBS ignored (always two runs side by side)",
        [('--jobs "$jobs"', "--jobs 2")],
        "mps",
    ),
    (
        "bench/gpu_session.sh",
        "the runs sent to MPS's pipes although its daemon did not start (every CUDA call in them would fail)",
        [("        unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY\n", "")],
        "mps",
    ),
    (
        "bench/gpu_session.sh",
        "the MPS daemon left running after the runs",
        [("      timeout 10 sh -c 'echo quit | nvidia-cuda-mps-control' || true\n", "      true\n")],
        "mps",
    ),
    (
        "dcgan.py",
        "no data and no network: the line names the file torchvision tried, not why its download failed",
        [("reason = str(error).strip().splitlines()[-1]", "reason = str(error).strip().splitlines()[0]")],
    ),
    (
        "perturb.py",
        "--seed not range-checked: a seed past 64 bits ends in torch's overflow traceback",
        [("    if not 0 <= args.seed < 2**32:", "    if False:")],
    ),
    (
        "evaluate.py",
        "a negative --classifier-steps accepted: torch's scheduler refuses it in a traceback, after the data loads",
        [("    if args.classifier_steps < 0:", "    if False:")],
    ),
    (
        "bench/results.py",
        "--n left to evaluate.py, which refuses it only after each run's 30 epochs of training",
        [("    if args.n < 2 * evaluate.Classifier.FEATURES:", "    if False:")],
    ),
    (
        "wgan.py",
        "out of memory recognised on a GPU only: the CPU allocator's refusal ends in a traceback",
        [(' and "can\'t allocate memory" not in str(e)', "")],
    ),
    (
        "perturb.py",
        "--n-samples, --steps and --scale without a ceiling: --n-samples 100000 asks for gigabytes of picture",
        [("        if not least <= value <= most:", "        if not least <= value:")],
    ),
    (
        "evaluate.py",
        "--n without a ceiling: more samples than the real row has images, k-NN work growing as n^2 (or a traceback)",
        [("    if args.n > MAX_N:", "    if False:")],
    ),
    (
        "bench/results.py",
        "--n without a ceiling: evaluate.py refuses it only after each run's 30 epochs of training",
        [("    if args.n > evaluate.MAX_N:", "    if False:")],
    ),
    (
        "perturb.py",
        "a figure past PIL's pixel limit drawn anyway (each flag within its ceiling, their product not)",
        [("    if width * height > Image.MAX_IMAGE_PIXELS:", "    if False:")],
    ),
    (
        "wgan.py",
        "no data and no network: the line points to torchvision's lines above, where torchvision printed none",
        [('    if reason.startswith("Error downloading"):', "    if True:")],
    ),
    (
        "gan.py",
        "a Ctrl-C whose exit torch swallowed while loading (torch 2.4) not seen after the imports: the run trains on",
        [('if __name__ == "__main__" and interrupted:', "if False:")],
    ),
    (
        "gan.py",
        "the lock's owner probed with os.kill(pid, 0) on Windows too: a Ctrl-C sent to the whole console",
        [('    if os.name == "nt":\n        import _winapi', "    if False:\n        import _winapi")],
    ),
    (
        "dcgan.py",
        "a lock whose pid another user's process has taken ends in a traceback (PermissionError)",
        [
            (
                "        return True\n    except PermissionError:  # another user's process has the number\n"
                "        return True\n",
                "        return True\n",
            )
        ],
        "lock_owner",
    ),
    (
        "wgan.py",
        "on Windows a running owner taken for ended: its lock is taken over, two runs write one checkpoint",
        [("== _winapi.WAIT_TIMEOUT", "== _winapi.WAIT_OBJECT_0")],
        "lock_owner",
    ),
    (
        "gan.py",
        "a stale lock naming this run's own pid (a container's runs are all pid 1) taken for a live run's, forever",
        [("(pid == os.getpid() or (pid > 0", "((pid > 0")],
    ),
    (
        "gan.py",
        "a lock from another machine sharing the folder (a cluster's home) judged by this machine's pids: taken over",
        [('where = "" if host in ("", socket.gethostname()) else f" on {host}"', 'where = ""')],
    ),
    (
        "dcgan.py",
        "the checkpoint written by torch.save itself: a full disk is 'basic_ios::clear: iostream error' in a traceback",
        [
            (
                '        with open(tmp, "wb") as f, data.getbuffer() as view:'
                "  # the view released however the write ends\n            f.write(view)\n",
                "        torch.save(state, tmp)\n",
            )
        ],
        "full_disk",
    ),
    (
        "wgan.py",
        "a full disk at a checkpoint ends in a traceback, not one line",
        [
            (
                "    except OSError as e:  # a full disk or quota",
                "    except ZeroDivisionError as e:  # a full disk or quota",
            )
        ],
        "full_disk",
    ),
    (
        "dcgan.py",
        "official .gz files that cannot be extracted (a read-only folder) reported as a failed download",
        [("        if os.path.exists(gz) and not os.path.exists(extracted):  # e.g.", "        if False:  # e.g.")],
        "cannot_be_extracted",
    ),
    (
        "wgan.py",
        "the data's files checked past the one torchvision stopped at: a missing first file blamed on the second",
        [
            (
                "            break  # torchvision takes the files in order",
                "            continue  # torchvision takes the files in order",
            )
        ],
        "cannot_be_extracted",
    ),
    (
        "perturb.py",
        "the default figure written beside a checkpoint in a read-only folder: a PIL traceback after drawing",
        [("    if os.path.isdir(folder) and not os.access(folder, os.W_OK):  # e.g.", "    if False:  # e.g.")],
        "read_only_folders",
    ),
    (
        "perturb.py",
        "--logdir in a read-only folder: TensorBoard's makedirs traceback after drawing",
        [("        if not os.access(ancestor, os.W_OK):", "        if False:")],
        "read_only_folders",
    ),
    (
        "perturb.py",
        "a full disk under the figure ends in PIL's traceback",
        [("    except OSError as e:  # a full disk or quota: one line (PIL", "    except ValueError as e:  # (PIL")],
        "read_only_folders",
    ),
    (
        "evaluate.py",
        "--retrain-classifier into a read-only --data-root: refused only after training, by torch.save's traceback",
        [("if not os.access(folder, os.W_OK):", "if False:")],
        "read_only_folders",
    ),
    (
        "evaluate.py",
        "a full disk under --json leaves a half-written JSON behind",
        [("            with contextlib.suppress(OSError):\n                os.remove(args.json)\n", "")],
        "read_only_folders",
    ),
    (
        "evaluate.py",
        "a full disk under --export ends in PIL's traceback",
        [
            (
                "                except OSError as e:  # a full disk or quota: one line",
                "                except ValueError as e:",
            )
        ],
        "read_only_folders",
    ),
    (
        "dcgan.py",
        "main() leaves its Ctrl-C handler installed: a notebook that called it can no longer interrupt anything",
        [
            (
                "                if handler is not None:  # None: a handler",
                "                if False:  # None: a handler",
            )
        ],
    ),
    (
        "gan.py",
        "a lock naming a number no process can have (edited by hand) ends in os.kill's OverflowError",
        [("    if pid >= 2**31:  # no process has such a number", "    if False:  # no process has such a number")],
        "second_run_on_the_same",
    ),
    (
        "gan.py",
        "a lock holding a digit int() cannot read (a superscript two) ends in a ValueError traceback",
        [("int(owner) if owner.isdecimal() else 0", "int(owner) if owner.isdigit() else 0")],
        "second_run_on_the_same",
    ),
    (
        "wgan.py",
        "a checkpoint held open by another process on Windows stops the run at once (no second try)",
        [('            if os.name != "nt":  # on POSIX it means what it says', "            if True:")],
        "held_open",
    ),
    (
        "gan.py",
        "a real permission denial on POSIX waited on for 3 s as if it were Windows' passing one",
        [('            if os.name != "nt":  # on POSIX it means what it says', "            if False:")],
        "held_open",
    ),
    (
        "dcgan.py",
        "a temp file Windows still holds after the last try: its removal's PermissionError replaces the one line",
        [
            (
                "with contextlib.suppress(OSError):  # gone once renamed",
                "with contextlib.suppress(FileNotFoundError):  # gone once renamed",
            )
        ],
        "held_open",
    ),
    (
        "dcgan.py",
        "a full disk under the report's figures ends a finished run in PIL's traceback",
        [
            (
                "    except OSError as e:  # a full disk, or the run's folder",
                "    except ValueError as e:  # a full disk, or the run's folder",
            )
        ],
        "under_the_report_figures",
    ),
    (
        "evaluate.py",
        "the table's flags column leaves out the seed and the betas: two configurations, or three seeds, share a label",
        [
            (
                'skipped = gan.RESUMABLE + ("overwrite", "dataset")',
                'skipped = gan.RESUMABLE + ("overwrite", "dataset", "seed", "beta1", "beta2")',
            )
        ],
        "tells_apart",
    ),
    (
        "evaluate.py",
        "the seed printed as a float in the flags column: 4294967295 becomes 4.29497e+09",
        [("format(v, 'g') if isinstance(v, float) else v", "format(v, 'g')")],
        "tells_apart",
    ),
    (
        "wgan.py",
        "--clip and --gp runs share one name in TensorBoard's run list (wgan_<dataset>_seed<seed>_<time>)",
        [('name = f"{SCRIPT}-gp" if args.gp else SCRIPT', "name = SCRIPT")],
        "tensorboard_holds",
    ),
    (
        "dcgan.py",
        "a flag the resumed run was started without refused as 'this run has None'",
        [('had = f"has {value}" if value is not None else "was started without it"', 'had = f"has {value}"')],
        "resume_refuses_flags",
    ),
    (
        "perturb.py",
        "--steps 1 accepted: a sweep or a walk of one column, which shows neither",
        [('("steps", 2, 1000)', '("steps", 1, 1000)')],
        "perturb_bad_input",
    ),
    (
        "wgan.py",
        "--device gpu answered with torch's list of twenty device types, most of which cannot train",
        [("        torch.device(name)\n", "        pass\n")],
        "bad_output_paths",
    ),
    (
        "bench/results.py",
        "an unwritable --figure found only after every run's training",
        [("    if args.figure is not None and not evaluate.writable_file(args.figure):", "    if False:")],
        "unwritable_out_and_figure",
    ),
    (
        "bench/results.py",
        "an out folder that cannot be made (a file in the way) ends in os.makedirs' traceback",
        [("    except OSError as e:  # a file in the way, a read-only parent", "    except ValueError as e:  # (")],
        "unwritable_out_and_figure",
    ),
    (
        "wgan.py",
        "run folders name a flag without '=': --beta1 0 reads beta10",
        [("f\"_{key.replace('_', '-')}={format(", "f\"_{key.replace('_', '-')}{format(")],
        "run_folders_name",
    ),
    (
        "wgan.py",
        "a --gp run named against clipping's defaults: every WGAN-GP run lists lr, beta1, beta2 and gp",
        [('defaults = vars(parse_args(["--gp", "10"] if args.gp else [])[1])', "defaults = vars(parse_args([])[1])")],
        "run_folders_name",
    ),
    (
        "gan.py",
        "the seed named twice in a run folder (seed=2_seed2)",
        [('RESUMABLE + ("overwrite", "dataset", "seed")', 'RESUMABLE + ("overwrite", "dataset")')],
        "run_folders_name",
    ),
    (
        "gan.py",
        "TensorBoard's write error left to the traceback (run folder deleted, disk full): the epoch's steps lost",
        [
            (
                "    except OSError as e:  # the run's folder deleted",
                "    except ZeroDivisionError as e:  # the run's folder deleted",
            )
        ],
        "tensorboard_folder_is_deleted",
    ),
    (
        "gan.py",
        "the steps booked at a progress line not tracked: a TensorBoard failure saves weights past the step it names",
        [("                    at = (epoch, i + 1)\n", "")],
        "tensorboard_folder_is_deleted",
    ),
    (
        "wgan.py",
        "TensorBoard's writer thread prints its traceback above the one line (the thread's class misnamed)",
        [
            (
                '__name__ == "_AsyncWriterThread" else thread_hook(a)',
                '__name__ == "AsyncWriterThread" else thread_hook(a)',
            )
        ],
        "tensorboard_folder_is_deleted",
    ),
]

# The CUDA-graph path's bugs: only a GPU shows them (python bench/mutations.py --gpu, on a CUDA machine). Each
# edits gan.py's copy alone (the CUDA-graph block test would see that at once, so it is not among the selected).
GRAPH_TESTS = "trains_like_the_eager_path"
GPU_MUTATIONS = [
    ("gan.py", "every replay trains on the captured batch", [("recorded.copy_(x)", "pass")], "graphed_step"),
    (
        "gan.py",
        "a hidden extra step in each warm-up call",
        [
            (
                "return self.on_side_stream(self.step, *inputs)",
                "self.on_side_stream(self.step, *inputs)\n            return self.on_side_stream(self.step, *inputs)",
            )
        ],
        "graphed_step",
    ),
    (
        "gan.py",
        "a replay overwrites the losses of the steps not yet read",
        [("return self.outputs.clone()", "return self.outputs")],
        f"graphed_step or {GRAPH_TESTS}",
    ),
    (
        "gan.py",
        "the G step's z drawn on the CPU (recorded once, then frozen)",
        [
            (
                "noise = torch.randn(batch_size, latent_dim, device=device)",
                "noise = torch.randn(batch_size, latent_dim).to(device)",
            )
        ],
        GRAPH_TESTS,
    ),
    (
        "gan.py",
        "the epoch's smaller last batch sent to the graph",
        [("graphed_step(batch) if batch.size(0) == args.batch_size else step(batch)", "graphed_step(batch)")],
        GRAPH_TESTS,
    ),
    (
        "gan.py",
        "optimisers not capturable on the graph path",
        [('"capturable": graph}', '"capturable": False}')],
        GRAPH_TESTS,
    ),
    (
        "wgan.py",
        "the penalty's interpolation weights drawn on the CPU (frozen)",
        [
            (
                "eps = torch.rand(real_images.size(0), 1, 1, 1, device=real_images.device)",
                "eps = torch.rand(real_images.size(0), 1, 1, 1).to(real_images.device)",
            )
        ],
        f"{GRAPH_TESTS} and wgan-gp",
    ),
    (
        "dcgan.py",
        "a NaN's device-side assert not looked for behind cuDNN's error",
        [("    if not torch.cuda.is_initialized():", "    if True:")],
        "diverging and dcgan",
    ),
]


def copy_repo(dst):
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    # Without git (a copy of the tree on a GPU machine may lack .git): what the tests read.
    code = [str(p.relative_to(ROOT)) for p in [*ROOT.glob("*.py"), *(ROOT / "bench").glob("*")] if p.is_file()]
    files = listed.stdout.split() if listed.returncode == 0 else code
    for name in files + [str(p.relative_to(ROOT)) for p in (ROOT / "classifiers").glob("*.pt")]:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dst / name)


def run(number, mutation):
    file, what, edits, *select = mutation
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        copy_repo(tmp)
        text = (tmp / file).read_text()
        for old, new in edits:
            if text.count(old) != 1:
                sys.exit(f"mutation {number} ({what}): {old!r} occurs {text.count(old)} times in {file}")
            text = text.replace(old, new)
        (tmp / file).write_text(text)
        t0 = time.time()
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            select[0] if select else SELECT[file],
        ]
        result = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=1800)
        failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED") or line.startswith("ERROR")]
        if result.returncode not in (0, 1):
            sys.exit(f"mutation {number}: pytest exited {result.returncode}\n{result.stdout[-2000:]}")
        return result.returncode == 1, time.time() - t0, failed[0][:110] if failed else ""


def numbered():
    """(number, mutation) pairs: the CPU's from 1, the GPU's from 1001, so that a CPU bug added never renumbers them."""
    return list(enumerate(MUTATIONS, 1)) + list(enumerate(GPU_MUTATIONS, 1001))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", type=int, nargs="+", help="mutation numbers to run (from --list)")
    p.add_argument("--list", action="store_true", help="list the mutations and exit")
    p.add_argument("--gpu", action="store_true", help="the CUDA-graph path's mutations instead (needs a CUDA GPU)")
    args = p.parse_args()
    everything = numbered()
    gpu = {k for k, m in everything if m in GPU_MUTATIONS}
    if args.list:
        for k, (file, what, *_) in everything:
            print(f"{k:4d}  {file:16s} {what}{' (GPU)' if k in gpu else ''}")
        return
    chosen = [(k, m) for k, m in everything if k in args.only] if args.only else None
    chosen = chosen or [(k, m) for k, m in everything if (k in gpu) == args.gpu]
    if {k for k, _ in chosen} & gpu and not torch.cuda.is_available():
        p.error("the CUDA-graph mutations need a CUDA GPU: their tests are skipped elsewhere, so none would be caught")
    caught = 0
    print(
        "| # | file | bug | caught | seconds | first failing test |\n| ---: | --- | --- | --- | ---: | --- |",
        flush=True,
    )
    for k, mutation in chosen:
        hit, seconds, failed = run(k, mutation)
        caught += hit
        print(
            f"| {k} | {mutation[0]} | {mutation[1]} | {'yes' if hit else '**MISSED**'} | {seconds:.0f} | {failed} |",
            flush=True,
        )
    print(f"\ncaught {caught} of {len(chosen)} ({caught / len(chosen):.0%})")


if __name__ == "__main__":
    main()
