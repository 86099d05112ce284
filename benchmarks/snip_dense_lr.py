"""Why the dense LeNet-5-Caffe control fails under SNIP's training protocol: the first
epochs of dense training at the ``snip`` preset's settings and at a few others.

    python benchmarks/snip_dense_lr.py [--data results/data/mnist.pt] [--seeds 0 1 2] [--epochs 1]
        [--archs lenet5_caffe] [--out docs/reproductions/snip_dense_lr.txt]

The ``snip`` preset trains with SGD, momentum 0.9, lr 0.1 (the paper's Sec. 5), weight
decay 0.0005, batch 100.  Its pruned networks train at those settings; the dense
LeNet-5-Caffe control (r = 1) stops with a NaN loss in epoch 1 in every seed run so far
(``docs/reproductions.md``).  This script trains the dense networks of the preset for
``--epochs`` epochs with the workflow's own training loop (``prunelib.train.loop.train``,
the preset's settings but for the lr and momentum of each line) and prints, per seed,
whether the loss stayed finite and the last epoch's training loss and validation top-1
(also written to ``--out``: docs/reproductions/snip_dense_lr.txt is what the page cites):

* lr 0.1, momentum 0.9: the preset (the paper's optimiser);
* lr 0.1, momentum 0: the released code's default optimiser (plain SGD, ``main.py``);
* lr 0.05, 0.02, 0.01 with momentum 0.9: how far the lr must drop.

The initial weights are the preset's scheme (TF's variance scaling, zero biases) drawn
after ``torch.manual_seed(seed)``, not the workflow's seeded streams: the script shows the
mechanism, not the runs' exact numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from prunelib import config
from prunelib.data.datasets import load_prepared
from prunelib.nets import init_schemes, models
from prunelib.train import loop

#: (lr, momentum) per line; the first is the preset's (checked against it below).
SETTINGS = ((0.1, 0.9), (0.1, 0.0), (0.05, 0.9), (0.02, 0.9), (0.01, 0.9))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="results/data/mnist.pt")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--archs", nargs="+", default=None, help="default: the snip preset's networks")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: as a workflow job)")
    ap.add_argument("--out", default=None, help="also write the lines to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_prepared(args.data)
    s = config.to_settings(config.resolve({"preset": "snip"}))
    if (s.train.lr, s.train.momentum) != SETTINGS[0]:
        raise SystemExit(f"the snip preset now trains at lr {s.train.lr}, momentum {s.train.momentum}: "
                         f"update SETTINGS")
    per_epoch = loop.steps_per_epoch(loop.training_examples(data, s.train, 0), s.train.batch_size)
    lines = [f"dense training, {args.epochs} epoch(s) of {per_epoch} steps; the snip preset's settings "
             f"(batch {s.train.batch_size}, weight decay {s.train.weight_decay:g}) but lr and momentum"]
    print(lines[-1], flush=True)
    for arch in args.archs or s.grid.archs:
        for lr, momentum in SETTINGS:
            train = dataclasses.replace(s.train, lr=lr, momentum=momentum, steps=args.epochs * per_epoch,
                                        lr_schedule="constant", milestones=())
            for seed in args.seeds:
                torch.manual_seed(seed)
                net = init_schemes.apply(models.build(arch, 10, 1, 28), s.init.scheme)
                masks = {n: torch.ones_like(p) for n, p in net.named_parameters()}
                try:
                    rows = loop.train(net, masks, data, "mnist", train, seed, torch.device("cpu"))
                    last = rows[-1]
                    outcome = (f"finite: train loss {last['train_loss']:.4f}, "
                               f"val top-1 {100 * last['val_top1']:.2f}%")
                except loop.TrainingDiverged as err:
                    outcome = f"diverged: {err}"
                lines.append(f"{arch} lr {lr:g} momentum {momentum:g} seed {seed}: {outcome}")
                print(lines[-1], flush=True)
    if args.out:
        from prunelib.foundations.artifacts import write_text

        write_text("# python benchmarks/snip_dense_lr.py " + " ".join(sys.argv[1:]) + "\n" + "\n".join(lines) + "\n",
                   Path(args.out))


if __name__ == "__main__":
    main()
