"""Multiply-accumulates of one forward pass, dense and masked: the theoretical speed-up."""

from __future__ import annotations

import torch

from prunelib.data import datasets


def multiply_accumulates(model: torch.nn.Module, masks: dict[str, torch.Tensor],
                         dataset: str) -> tuple[int, int]:
    """Dense and masked multiply-accumulates (MACs) of one forward pass of one example.

    Per Conv/Linear layer l, with k_l the weights the mask keeps (all of them where the
    layer's weight is not prunable) and n_l its number of weights:

        Conv:   MACs_l = out_h * out_w * k_l      (each kept weight, once per output pixel)
        Linear: MACs_l = k_l

    Dense MACs use n_l instead of k_l; the theoretical speed-up (Blalock et al. 2020) is
    sum_l dense MACs_l / sum_l masked MACs_l.  Output sizes come from forward hooks on a
    zero input of the dataset's shape, so any network of Conv and Linear layers works.
    Biases, activations and pooling are not counted (as in ShrinkBench).
    """
    d = datasets.info(dataset)
    kept_by_module = {}
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)):
            key = f"{name}.weight" if name else "weight"
            n = module.weight.numel()
            kept_by_module[module] = (n, int(masks[key].sum()) if key in masks else n)
    totals = [0, 0]

    def hook(module, _inputs, output):
        n, k = kept_by_module[module]
        # Conv: one MAC per kept weight per output position; Linear: per example
        positions = output[0, 0].numel() if isinstance(module, torch.nn.modules.conv._ConvNd) else 1
        totals[0] += positions * n
        totals[1] += positions * k

    handles = [m.register_forward_hook(hook) for m in kept_by_module]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, d.in_channels, d.image_size, d.image_size,
                              device=next(model.parameters()).device))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return totals[0], totals[1]
