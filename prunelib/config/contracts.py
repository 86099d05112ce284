"""The stage contracts: what each job's output depends on, besides its input files.

One frozen dataclass per stage (``InitContract``, ``ScoreContract``, ``MaskContract``,
``TrainContract``, ``ImpRoundContract``, ``EvalContract``, ``DataContract``), built once
from the resolved ``Settings`` by the ``*_contract`` functions below and taken by the
stage functions (``prunelib/stages/``).  At the process boundary a contract is JSON
(``to_json`` in the rule's ``params:``, ``from_json`` in the command), so a change to
what a contract holds reruns exactly that stage and everything downstream of it.

Hashes follow ``prunelib/foundations/hparams.py``: a field with a default appears only
when set to something else, so a new option with a default reruns nothing, and no
builder here has a per-key exception.  A job that uses a plugin's method, network or
dataset carries the plugin's path and SHA-256 in ``plugins`` (the job imports it
first), so editing a plugin reruns exactly its jobs.  What a method's kind changes is
asked of its ``Pruning`` (``prunelib/catalogue/pruning.py``).  No torch import.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from prunelib.catalogue import registry
from prunelib.config.grid import imp_densities, imp_round_of
from prunelib.config.settings import EvalSettings, Prunable, Settings, TrainSettings
from prunelib.foundations.hparams import Hparams, settings_hash  # noqa: F401 (settings_hash: re-exported)


# --- the contracts ------------------------------------------------------------------------

@dataclass(frozen=True)
class DataContract(Hparams):
    """A prepared dataset: its name and its loader's plugin."""

    dataset: str
    plugins: tuple = ()


@dataclass(frozen=True)
class InitContract(Hparams):
    arch: str
    dataset: str
    seed: int
    init_scheme: str
    prune: Prunable
    #: The network's options (``ModelSettings.options_for``), for networks that have any.
    model: dict = field(default_factory=dict)
    plugins: tuple = ()


@dataclass(frozen=True)
class ScoreContract(Hparams):
    method: str
    seed: int
    #: The scoring data (``ScoreSettings.data_for``) and the method's own settings.
    data: dict
    knobs: dict
    device: str
    #: CPU threads when not 1 (torch's CPU kernels reduce in a thread-count-dependent
    #: order, so results differ in the last bits: a changed ``threads`` reruns the jobs).
    threads: int = 1
    plugins: tuple = ()


@dataclass(frozen=True)
class VariantContract(Hparams):
    """A sanity-check transformation of a cell (prunelib/methods/variants.py)."""

    variant: str
    seed: int


@dataclass(frozen=True)
class MaskContract(Hparams):
    method: str
    ratio: float
    seed: int
    #: A method that re-scores per ratio: its settings and where it computes.
    knobs: dict | None = None
    device: str | None = None
    threads: int = 1
    #: An iterative method: the chain round whose mask this is, and the chain's criterion.
    imp_round: int | None = None
    criterion: str | None = None
    variant: VariantContract | None = None
    #: ``prune.allocation``: the kept count of each tensor, apart from the scores (null =
    #: the method's own scope).
    allocation: str | None = None
    plugins: tuple = ()
    #: A method that updates the weights it keeps (``Pruning.updates_weights``): the
    #: scoring data its Hessian or Fisher is estimated on (``ScoreSettings.data_for``).
    data: dict | None = None


@dataclass(frozen=True)
class ImpSpec(Hparams):
    """A method's generalised-IMP parameters (preset < ``iterative.per_method``), with
    fractions of T unresolved (T depends on the data: ``iterative.resolve_plan``)."""

    round_factor: float
    criterion: str
    train_steps: int | None
    #: A step, None (keep the trained weights) or ``{"fraction": f}`` of T.
    rewind_weights_to: int | dict | None
    rewind_lr: bool
    #: A number of steps, ``"train_steps"`` (T) or ``"after_rewind"`` (T - k).
    retrain_steps: int | str
    #: The pruning step when it is not magnitude: a method that updates the weights it
    #: keeps (``{"method", "knobs", "data"}``: its settings and scoring data), e.g.
    #: ``woodfisher_imp`` (prunelib/methods/iterative.py).
    pruner: dict | None = None


@dataclass(frozen=True)
class ImpRoundContract(Hparams):
    """Round ``round`` of an IMP chain (round 0: the dense training; round j >= 1 prunes
    to ``density`` and retrains)."""

    method: str
    seed: int
    round: int
    imp: ImpSpec
    train: TrainSettings
    device: str
    threads: int = 1
    #: The round's kept fraction as an exact rational ``"n/d"`` (rounds >= 1).
    density: str | None = None
    plugins: tuple = ()


@dataclass(frozen=True)
class IsometrySpec(Hparams):
    """Approximate isometry's optimiser (prunelib/nets/isometry.py)."""

    steps: int
    lr: float
    power: int


@dataclass(frozen=True)
class TrainContract(Hparams):
    """A cell's training: plain training (foresight methods, the dense control) or, for an
    IMP cell, its chain round's result (``mode: imp_result``) or the retraining of a
    variant with the round's schedule (``imp_retrain``)."""

    seed: int
    #: The train settings as they apply to the cell's dataset (``for_dataset``).
    train: TrainSettings
    device: str
    threads: int = 1
    #: ``init.after_pruning``: keep the initial weights, ``redraw`` them, or restore their
    #: isometry (``approximate_isometry``).
    after_pruning: str = "keep"
    #: AI's optimiser (``approximate_isometry`` only): steps, learning rate, power.
    isometry: IsometrySpec | None = None
    #: ``init.jacobian_spectrum``: the number of training images it is measured on.
    jacobian_examples: int | None = None
    #: ``eval.every_steps`` / ``keep_last``: weights kept for best-of-checkpoints.
    test_checkpoints: EvalSettings | None = None
    imp: ImpRoundContract | None = None
    mode: str = "train"
    variant: VariantContract | None = None
    plugins: tuple = ()


@dataclass(frozen=True)
class EvalContract(Hparams):
    """Eval carries the hash of everything upstream (the cell's provenance)."""

    method: str
    ratio: float
    seed: int
    eval_batch_size: int
    device: str
    cell_hash: str
    threads: int = 1
    variant: str = "none"
    plugins: tuple = ()


#: The contract each stage command reads from ``--settings`` (prunelib/cli/main.py).
BY_STAGE = {"data": DataContract, "init": InitContract, "score": ScoreContract, "mask": MaskContract,
            "train": TrainContract, "imp-round": ImpRoundContract, "eval": EvalContract}


# --- building them from the resolved settings ------------------------------------------------

def _plugins(*entries) -> tuple:
    """The plugins ``entries`` came from (empty for built-ins, so their hashes do not
    depend on plugins existing)."""
    return tuple(registry.plugin_records(*entries))


def _network(arch: str | None, dataset: str | None) -> tuple:
    return (registry.arch(arch), registry.dataset(dataset)) if arch else ()


def _compute(s: Settings) -> dict:
    return {"device": s.device, "threads": int(s.threads)}


def data_contract(dataset: str) -> DataContract:
    return DataContract(dataset, _plugins(registry.dataset(dataset)))


def init_contract(s: Settings, arch: str, dataset: str, seed: int, scheme: str) -> InitContract:
    return InitContract(arch, dataset, int(seed), scheme, s.prune.prunable(), s.model.options_for(arch),
                        _plugins(*_network(arch, dataset), registry.get("init scheme", scheme)))


def imp_spec(s: Settings, method: str) -> ImpSpec:
    """The generalised-IMP parameters of ``method`` (its preset < ``iterative.per_method``)."""
    it = s.iterative
    spec = {**registry.method(method).imp, **it.per_method.get(method, {})}
    if isinstance(spec["rewind_weights_to"], str):  # the name of an `iterative` fraction of T
        spec["rewind_weights_to"] = {"fraction": getattr(it, spec["rewind_weights_to"])}
    if spec.get("pruner"):  # (its settings and data enter the chain's hashes)
        name = spec["pruner"]
        spec["pruner"] = {"method": name, "knobs": s.score.knobs_for(name), "data": s.score.data_for(name)}
    return ImpSpec(round_factor=it.round_factor, criterion=it.criterion, train_steps=it.train_steps, **spec)


def imp_round_contract(s: Settings, method: str, seed: int, dataset: str, round_: int,
                       arch: str | None = None) -> ImpRoundContract:
    density = None
    if round_ > 0:
        d = imp_densities(s.grid.ratios, s.iterative.round_factor)[round_ - 1]
        density = f"{d.numerator}/{d.denominator}"
    return ImpRoundContract(method, int(seed), int(round_), imp_spec(s, method), s.train.for_dataset(dataset),
                            **_compute(s), density=density, plugins=_plugins(*_network(arch, dataset)))


def variant_contract(variant: str, seed: int) -> VariantContract | None:
    """The sanity-check transformation of a cell (None for ``none``)."""
    return None if variant == "none" else VariantContract(variant, int(seed))


def score_contract(s: Settings, method: str, seed: int, arch: str | None = None,
                   dataset: str | None = None) -> ScoreContract:
    """Only what this method's scores depend on, so other methods' knobs never rerun it."""
    return ScoreContract(method, int(seed), s.score.data_for(method), s.score.knobs_for(method), **_compute(s),
                         plugins=_plugins(registry.method(method), *_network(arch, dataset)))


def mask_contract(s: Settings, method: str, ratio: float, seed: int, variant: str = "none",
                  arch: str | None = None, dataset: str | None = None) -> MaskContract:
    entry = registry.method(method)
    how = entry.pruning
    extra = {}
    if how.rescores:
        extra.update(knobs=s.score.knobs_for(method), **_compute(s))
    if how.chain:
        extra.update(imp_round=imp_round_of(s.grid.ratios, s.iterative.round_factor, ratio),
                     criterion=s.iterative.criterion)
    if how.updates_weights:
        extra["data"] = s.score.data_for(method)
    if how.scored and s.prune.allocation is not None:
        extra["allocation"] = s.prune.allocation
    allocation = registry.get("allocation", extra["allocation"]) if "allocation" in extra else None
    return MaskContract(method, float(ratio), int(seed), **extra, variant=variant_contract(variant, seed),
                        plugins=_plugins(entry, allocation, *_network(arch, dataset)))


def train_contract(s: Settings, method: str, ratio: float, seed: int, dataset: str, variant: str = "none",
                   arch: str | None = None) -> TrainContract:
    how = registry.method(method).pruning
    extra = {}
    if how.trains_from == "chain":
        j = imp_round_of(s.grid.ratios, s.iterative.round_factor, ratio)
        extra.update(imp=imp_round_contract(s, method, seed, dataset, j, arch),
                     mode="imp_result" if variant == "none" else "imp_retrain")
    else:
        extra["after_pruning"] = s.init.after_pruning
        if s.init.after_pruning == "approximate_isometry":
            extra["isometry"] = IsometrySpec(int(s.init.isometry_steps), float(s.init.isometry_lr),
                                             int(s.init.isometry_power))
        if s.init.jacobian_spectrum:
            extra["jacobian_examples"] = int(s.init.jacobian_examples)
        if s.eval.every_steps:
            extra["test_checkpoints"] = s.eval
    return TrainContract(int(seed), s.train.for_dataset(dataset), **_compute(s), **extra,
                         variant=variant_contract(variant, seed), plugins=_plugins(*_network(arch, dataset)))


def eval_contract(s: Settings, arch: str, dataset: str, method: str, ratio: float, seed: int,
                  variant: str = "none") -> EvalContract:
    how = registry.method(method).pruning
    upstream = {
        "init": init_contract(s, arch, dataset, seed, s.init.scheme_for(method)),
        "score": score_contract(s, method, seed, arch, dataset) if how.scored else None,
        "mask": mask_contract(s, method, ratio, seed, variant, arch, dataset),
        "train": train_contract(s, method, ratio, seed, dataset, variant, arch),
    }
    if how.chain:  # every round of the chain up to this cell's
        j = imp_round_of(s.grid.ratios, s.iterative.round_factor, ratio)
        upstream["chain"] = [imp_round_contract(s, method, seed, dataset, i, arch) for i in range(j + 1)]
    return EvalContract(method, float(ratio), int(seed), s.train.eval_batch_size, **_compute(s),
                        cell_hash=settings_hash(upstream), variant=variant,
                        plugins=_plugins(*_network(arch, dataset)))


def replace(contract: Hparams, **changes) -> Hparams:
    """A copy of ``contract`` with ``changes`` (tests and tools; contracts are frozen)."""
    return dataclasses.replace(contract, **changes)
