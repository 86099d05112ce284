"""What the signal-propagation diagnostic (``init.jacobian_spectrum``) costs, piece by
piece, at one point (dense, pruned or pruned + AI; a train job measures two or three):

* ``io``: the input-output Jacobian's singular values (the SPP code's ``--check_jsv``),
  one backward pass per output unit and batch, then a small SVD per example;
* ``layers``: the SVD of every masked weight matrix ``C ⊙ W`` (no data);
* ``layer_jacobians``: the true layer-wise Jacobians ``D_l (C ⊙ W_l)`` of every example
  (the MLPs only; ``prunelib.nets.isometry.layer_jacobian_spectra``).

For a convolutional network ``layer_jacobians`` does not exist: the true layer Jacobian
of a convolution is an operator on the whole feature map, ``(c_out H W) x (c_in H W)``
per example.  The script prints that size for VGG-16's layers (CIFAR shapes) and the
memory one dense float32 copy of it would take, instead of a time.

    python benchmarks/sigprop_cost.py                       # mlp7_tanh (MNIST), vgg16 (CIFAR-10)
    python benchmarks/sigprop_cost.py --examples 100 --threads 2

Prints one Markdown table per network (seconds per point, median of ``--repeats``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from prunelib.nets import init_schemes, isometry, models  # noqa: E402


def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _masked_copy(model: nn.Module, density: float) -> nn.Module:
    import copy

    net = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for w in isometry.layer_weights(net).values():
            w.mul_((torch.rand(w.shape, generator=g) < density).to(w.dtype))
    return net


def conv_operator_sizes(model: nn.Module, shape) -> list[tuple[str, int, int, float]]:
    """(layer, rows, columns, GiB as dense float32) of each convolution's true Jacobian at
    its input's spatial size, for one example."""
    out, hooks = [], []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, o, name=name: out.append((name, o[0].numel(), inp[0][0].numel(),
                                                           o[0].numel() * inp[0][0].numel() * 4 / 2**30))))
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return out


def bench(arch: str, shape, examples: int, repeats: int) -> None:
    torch.manual_seed(0)
    model = init_schemes.apply(models.build(arch, 10, shape[0], shape[1]), "orthogonal")
    net = _masked_copy(model, 0.1)  # (90% pruned, at random: the cost does not depend on which)
    x = torch.randn(examples, *shape)
    rows = [("io (input-output, --check_jsv)", _timed(lambda: isometry.io_jacobian_singular_values(net, x), repeats)),
            ("layers (SVD of C ⊙ W)", _timed(lambda: isometry.layer_spectra(net), repeats))]
    if isometry.layer_jacobian_spectra(net, x[:1]) is not None:
        rows.append(("layer_jacobians (D_l (C ⊙ W_l) per example)",
                     _timed(lambda: isometry.layer_jacobian_spectra(net, x), repeats)))
    print(f"\n### {arch}, input {tuple(shape)}, {examples} examples, {torch.get_num_threads()} threads\n")
    print("| piece | seconds per point | per example |")
    print("|---|---|---|")
    for name, sec in rows:
        per = f"{sec / examples * 1000:.2f} ms" if not name.startswith("layers ") else "—"
        print(f"| {name} | {sec:.3f} | {per} |")
    convs = conv_operator_sizes(model, shape)
    if convs:
        print("\nlayer_jacobians: not computed (convolutions). The true layer Jacobian per example:\n")
        print("| layer | rows | columns | dense float32 |")
        print("|---|---|---|---|")
        for name, r, c, gib in convs:
            print(f"| {name} | {r:,} | {c:,} | {gib:,.1f} GiB |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=100, help="images per point (init.jacobian_examples)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--archs", nargs="+", default=["mlp7_tanh", "vgg16"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = {"vgg16": (3, 32), "resnet20": (3, 32), "resnet32": (3, 32)}
    for arch in args.archs:
        c, side = shapes.get(arch, (1, 28))
        bench(arch, (c, side, side), args.examples, args.repeats)


if __name__ == "__main__":
    main()
