"""Ratios a network can take, checked before any job: a compression ratio r keeps
round(n / r) of n weights, so r > 2n keeps none.

For every (network, dataset) of the grid, a ratio that would keep no prunable weight of
the network (global scope), or no weight of one of its tensors under layer scope (a
``layer_*`` method, or IMP's layer criteria), is refused with one line naming the ratio,
the network, its prunable count and the largest ratio it can take.  Such a ratio would
otherwise train a network with no weights and report it ``ok``.  The networks are built
on PyTorch's ``meta`` device (shapes only, no memory, no data), once per process; the
Snakefile runs this in Snakemake's main process only, so cluster jobs do not pay for it.
"""

from __future__ import annotations

import functools

from prunelib.catalogue import registry
from prunelib.config.settings import Settings, format_ratio
from prunelib.config.validation import ConfigError
from prunelib.data import datasets
from prunelib.methods.masking import kept_count


@functools.lru_cache(maxsize=None)
def prunable_sizes(arch: str, dataset: str, options: tuple, include_bias: bool,
                   include_norm: bool) -> dict[str, int]:
    """{prunable tensor: number of weights} of ``arch`` shaped for ``dataset``."""
    import torch

    from prunelib.nets import models

    d = datasets.info(dataset)
    with torch.device("meta"):
        model = models.build(arch, d.num_classes, d.in_channels, d.image_size, **dict(options))
    params = dict(model.named_parameters())
    return {n: params[n].numel() for n in models.prunable_names(model, include_bias, include_norm)}


def _layer_scoped(s: Settings) -> list[str]:
    """The grid's methods that keep round(n_l / r) of every tensor l."""
    out = []
    for m in s.grid.methods:
        e = registry.method(m)
        if (e.pruning.chain and s.iterative.criterion != "global") or (e.pruning.scored and e.scope == "layer"):
            out.append(m)
    return out


def check_limits(s: Settings) -> None:
    """Refuse, before any job, a method whose ``max_weights`` setting (``obs``: its full
    inverse Fisher holds n² numbers) a network of the grid exceeds; one line naming the
    limit and pointing to ``woodfisher``."""
    limited = [m for m in s.grid.methods if "max_weights" in registry.method(m).settings]
    for m in limited:
        limit = int(s.score.knobs_for(m)["max_weights"])
        for arch, dataset in s.grid.arch_dataset_pairs():
            options = tuple(sorted(s.model.options_for(arch).items()))
            n = sum(prunable_sizes(arch, dataset, options, s.prune.include_bias, s.prune.include_norm).values())
            if n > limit:
                raise ConfigError(f"config error: {m} on {arch}/{dataset}: {n:,} prunable weights exceed "
                                  f"score.per_method.{m}.max_weights = {limit:,}; allowed: networks up to that "
                                  "limit (use woodfisher, block-diagonal OBS, for larger ones)")


def check_ratios(s: Settings) -> None:
    """Refuse a ratio of the grid that would empty a network, or a tensor under layer scope
    (and a network over a method's weight limit: ``check_limits``)."""
    check_limits(s)
    ratios = sorted({float(r) for r in s.grid.ratios if float(r) > 1.0})
    if not ratios:
        return
    layer_methods = _layer_scoped(s)
    for arch, dataset in s.grid.arch_dataset_pairs():
        options = tuple(sorted(s.model.options_for(arch).items()))
        sizes = prunable_sizes(arch, dataset, options, s.prune.include_bias, s.prune.include_norm)
        n = sum(sizes.values())
        smallest = min(sizes, key=sizes.get)
        for r in ratios:
            index = [float(x) for x in s.grid.ratios].index(r)
            if kept_count(n, r) == 0:
                raise ConfigError(f"config error: grid.ratios[{index}] = {format_ratio(r)} keeps no weight of {arch} on "
                                  f"{dataset} ({n:,} prunable weights, round(n / r) = 0); allowed: ratios up to "
                                  f"{2 * n:,}")
            if layer_methods and kept_count(sizes[smallest], r) == 0:
                raise ConfigError(f"config error: grid.ratios[{index}] = {format_ratio(r)} empties {smallest} of "
                                  f"{arch} on {dataset} ({sizes[smallest]:,} weights) under layer scope "
                                  f"({', '.join(layer_methods)}); allowed: ratios up to {2 * sizes[smallest]:,} "
                                  "with layer-scope methods")
