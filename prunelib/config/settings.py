"""Typed settings: one frozen dataclass per config section, and their defaults.

The defaults here are the base of every config (``config.resolve`` merges the preset and
the user's file over them); facts about methods, networks and datasets come from
``prunelib.catalogue.registry``.  No torch import.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from prunelib.catalogue import registry
from prunelib.foundations.hparams import Hparams, always, jsonable, unhashed  # noqa: F401 (jsonable: re-exported)

#: The scoring-data keys that ``score`` and ``score.per_method.<method>`` share
#: (``score.labels`` is set for every method at once: ``ScoreSettings``).
DATA_KEYS = ("batch_size", "num_batches", "class_balanced")

#: The allowed ``score.labels`` values: the loss's targets on the scoring data.
SCORE_LABELS = ("data", "uniform")

#: The allowed ``iterative.criterion`` values (prunelib/methods/iterative.py; the config schema's
#: enum is filled in from here): magnitude ranked over all prunable weights (``global``),
#: per tensor at the same density (``layer``), or per tensor at one rate for every tensor
#: but the output layer's, which is pruned at half that rate (``layer_output_half``,
#: Frankle & Carbin, ICLR 2019).
LAYER_OUTPUT_HALF = "layer_output_half"
IMP_CRITERIA = ("global", "layer", LAYER_OUTPUT_HALF)


@dataclass(frozen=True)
class InitSettings:
    """``after_pruning``: the weights training starts from, ``keep`` (the initial weights
    that were scored, masked) or ``redraw`` (a fresh draw of the weights with the same
    scheme and zero biases, masked), as the SNIP code trains ``weights_ap`` after
    scoring ``weights_bp`` (``namhoonlee/snip-public``, ``snip/model.py``), or
    ``approximate_isometry`` (the kept initial weights after AI, Lee et al., ICLR 2020:
    ``isometry_steps`` of SGD at ``isometry_lr`` on the sum of the layers' isometry
    residuals to the power ``isometry_power``; prunelib/nets/isometry.py).

    ``jacobian_spectrum``: record the Jacobian singular values of the network training
    starts from (dense, pruned, and pruned + AI when AI is on) on the first
    ``jacobian_examples`` training images, in the train artifact and the eval row.

    ``arms``: named init arms, so that e.g. variance scaling, orthogonal and orthogonal +
    AI (Lee et al., ICLR 2020) run in one grid as ``snip@vs``, ``snip@orth`` and ``snip``
    (``scheme_for`` and ``after_pruning_for`` answer per grid method)."""

    scheme: str = "pytorch_default"
    per_method: dict = field(default_factory=dict)
    after_pruning: str = "keep"
    isometry_steps: int = 10_000
    isometry_lr: float = 0.1
    isometry_power: int = 1
    jacobian_spectrum: bool = False
    jacobian_examples: int = 1000
    #: With ``jacobian_spectrum``: also the true layer Jacobians ``D_l (C ⊙ W_l)`` of
    #: every measured example (the MLPs only; prunelib/nets/isometry.py
    #: ``layer_jacobian_spectra``), about 6 ms an example for mlp7 on one CPU thread.
    jacobian_layers: bool = True
    #: Named init arms, ``{arm: {scheme: ..., after_pruning: ...}}`` (either key optional,
    #: the section's value otherwise): grid method ``<method>@<arm>`` is ``<method>`` with
    #: that init, in folders of its own, beside the method itself and its other arms.
    arms: dict = field(default_factory=dict)

    def _arm(self, method: str) -> dict:
        _, sep, arm = method.partition(registry.ARM_SEP)
        return self.arms.get(arm, {}) if sep else {}

    def scheme_for(self, method: str) -> str:
        arm = self._arm(method)
        if "scheme" in arm:
            return arm["scheme"]
        return self.per_method.get(method, self.per_method.get(registry.base_method(method), self.scheme))

    def after_pruning_for(self, method: str) -> str:
        return self._arm(method).get("after_pruning", self.after_pruning)


@dataclass(frozen=True)
class PruneSettings(Hparams):
    """What is prunable (``include_bias``, ``include_norm``: the init stage's concern) and
    how a mask's density is allocated over the tensors (``allocation``: the mask stage's;
    null = each method's own scope, prunelib/methods/allocation.py)."""

    include_bias: bool = always(False)
    include_norm: bool = always(False)
    allocation: str | None = None

    def prunable(self) -> "Prunable":
        return Prunable(self.include_bias, self.include_norm)


@dataclass(frozen=True)
class Prunable(Hparams):
    """Which parameters pruning may remove: the init contract's part of ``prune``."""

    include_bias: bool = always(False)
    include_norm: bool = always(False)


@dataclass(frozen=True)
class ScoreSettings:
    """Scoring data, and each method's own settings.  ``per_method.<method>`` overrides
    the data keys (``batch_size``, ``num_batches``, ``class_balanced``) and sets the
    method's settings (its registry entry's ``settings``, e.g. SynFlow's ``rounds``);
    a method's entry may prescribe its own data defaults (GraSP: 10 per class)."""

    batch_size: int = 128
    num_batches: int = 1
    class_balanced: bool = False
    per_method: dict = field(default_factory=dict)
    #: The loss's targets on the scoring data: ``data`` (each example's label) or
    #: ``uniform`` (the uniform distribution over the classes, for every example: the
    #: unsupervised pruning of Lee, Ajanthan, Gould & Torr, ICLR 2020, the
    #: ``fake_uniform`` targets of their code's ``compute_loss``, spp/model.py).  It
    #: enters a method's scoring data, and so its score hash, only when set to ``uniform``.
    labels: str = "data"

    def data_for(self, method: str) -> dict:
        entry = registry.method(method)
        base = {"batch_size": self.batch_size, "num_batches": self.num_batches,
                "class_balanced": self.class_balanced, **entry.data}
        over = self.per_method.get(method, self.per_method.get(registry.base_method(method), {}))
        out = {**base, **{k: v for k, v in over.items() if k in DATA_KEYS}}
        if self.labels != "data":  # (absent by default: no existing score hash moves)
            out["labels"] = self.labels
        return out

    def knobs_for(self, method: str) -> dict:
        """The method's own settings: its entry's defaults < ``per_method.<method>``."""
        entry = registry.method(method)
        over = self.per_method.get(method, self.per_method.get(registry.base_method(method), {}))
        return {**entry.setting_defaults(), **{k: v for k, v in over.items() if k in entry.settings}}


@dataclass(frozen=True)
class TrainSettings(Hparams):
    """The train section, and the ``train`` part of a train job's contract.  Fields in
    ``always(...)`` were in every train hash before default-omission (``foundations.hparams``);
    a new field takes a plain default and changes no hash until someone sets it."""

    optimizer: str = always("sgd")
    lr: float = always(0.05)
    momentum: float = always(0.9)
    nesterov: bool = always(True)
    weight_decay: float = always(0.0)
    batch_size: int = always(128)
    epochs: int = always(1)
    #: Total optimizer steps, replacing ``epochs`` when set (the SNIP code's
    #: ``train_iterations``): the schedule then spans steps / S epochs (S = steps per
    #: epoch) and a last, partial epoch is logged as such.
    steps: int | None = None
    train_subset: int | None = always(None)
    lr_schedule: str = always("constant")
    milestones: tuple = always(())
    gamma: float = always(0.1)
    #: What ``milestones`` count: ``epochs`` (the lr drops from that epoch on) or ``steps``
    #: (it drops once that many optimizer steps are done, e.g. TF's piecewise_constant).
    milestone_unit: str = "epochs"
    eval_batch_size: int = always(256)
    #: Epochs per dataset, overriding ``epochs`` for that dataset (the study: 5 on MNIST,
    #: 25 on CIFAR-10, 50 on CIFAR-100).
    epochs_per_dataset: dict = field(default_factory=dict)
    #: Training augmentation: ``cifar`` (random crop with 4-pixel zero padding, horizontal
    #: flip), ``none``, or ``auto`` = the dataset's default (``cifar`` for the CIFAR sets).
    augment: str = always("auto")
    #: The older name of ``precision: bf16`` (``amp: bf16`` means exactly that; kept so that
    #: configs and hashes made with it stay valid).  ``none`` leaves ``precision`` to decide.
    amp: str = always("none")
    #: Fraction of the training split held out (drawn with the seed) and never trained on;
    #: its accuracy and loss are logged per epoch.
    val_fraction: float = always(0.0)
    #: Minutes of training between resumable checkpoints (0 = none); see
    #: prunelib/train/resume.py.  It changes no result: jobs get it from the environment,
    #: and it is in no contract's hash.
    checkpoint_minutes: float = unhashed(5.0)
    #: Arithmetic of the forward pass and loss: ``fp32``, or ``bf16`` = autocast to bfloat16
    #: on CUDA (weights, gradients and optimizer state stay float32, so masking is exact;
    #: ignored, with a log line, on the CPU).  Supersedes ``amp``.
    precision: str = "fp32"
    #: Train with the network and its 4-D inputs in channels-last (NHWC) memory format,
    #: which tensor-core convolutions prefer; results may differ in the last bits.
    channels_last: bool = False

    @property
    def autocast_dtype(self) -> str | None:
        """``"bfloat16"`` when ``precision`` (or its older name ``amp``) asks for bf16."""
        return "bfloat16" if "bf16" in (self.precision, self.amp) else None

    def for_dataset(self, dataset: str) -> "TrainSettings":
        """These settings as they apply to ``dataset``: its epochs, ``auto`` augmentation
        resolved, and no per-dataset mapping left."""
        from prunelib.data.datasets import info

        augment = info(dataset).augment if self.augment == "auto" else self.augment
        epochs = int(self.epochs_per_dataset.get(dataset, self.epochs))
        return dataclasses.replace(self, epochs=epochs, augment=augment, epochs_per_dataset={})

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps of the whole run: ``steps``, else ``epochs`` full epochs."""
        return int(self.steps) if self.steps is not None else self.epochs * steps_per_epoch


@dataclass(frozen=True)
class EvalSettings(Hparams):
    """Test-set evaluations of checkpoints taken during training (``eval:``), for the
    *best of checkpoints* metric some papers report (SNIP's ``snip/test.py``: the maximum
    test accuracy over the checkpoints kept).  Our headline metric stays the accuracy of
    the final weights; the best-of-checkpoints accuracy is selected on the test set, so
    it is optimistic, and it is recorded beside the headline, never instead of it.

    ``every_steps``: keep the weights after every this many optimizer steps (null = none;
    the final weights count as a checkpoint when the run ends on a multiple);
    ``keep_last``: of those, evaluate only the last this many (null = all), as a
    checkpoint saver that keeps the newest k files."""

    every_steps: int | None = always(None)
    keep_last: int | None = always(None)

    def checkpoint_steps(self, total_steps: int) -> list[int]:
        """The steps (counted from the start of the run) whose weights are evaluated."""
        if not self.every_steps:
            return []
        steps = list(range(self.every_steps, total_steps + 1, self.every_steps))
        return steps[-self.keep_last:] if self.keep_last else steps


@dataclass(frozen=True)
class MeasureSettings(Hparams):
    """How measured speed-ups are timed (``measure:``; prunelib/methods/slimming.py,
    ``paired_speedup``).  Each repeat times the dense and the pruned network back to back
    (alternating which goes first) and keeps their ratio; repeats go on until at least
    ``min_repeats`` are in and the ratios' interquartile range is at most
    ``target_spread`` x their median, or ``max_repeats`` are in.  One timed sample runs
    a network as many times as it takes for a sample of either to last ``min_sample_seconds``; ``warmup`` untimed calls of each
    come first.  The ``measure`` rule takes the measurements alone, after the grid."""

    min_repeats: int = 5
    max_repeats: int = 40
    target_spread: float = 0.05
    min_sample_seconds: float = 0.01
    warmup: int = 2


@dataclass(frozen=True)
class ModelSettings:
    """Network options.  ``shortcut``: the CIFAR ResNets' shortcut, He et al.'s option
    ``A`` (zero-padded identity, no parameters) or ``B`` (1x1 projection where the shape
    changes)."""

    shortcut: str = "A"
    #: BatchNorm momentum and epsilon (PyTorch's defaults); at high sparsity they change
    #: results, so networks with BatchNorm record them in every artifact.
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5

    def options_for(self, arch: str) -> dict:
        """The options ``arch``'s constructor takes (none for the other networks, so their
        init settings, and thus their artifacts, do not depend on these keys)."""
        return {k: getattr(self, k) for k in registry.arch(arch).option_keys()}


@dataclass(frozen=True)
class IterativeSettings:
    """Generalised iterative magnitude pruning (``iterative:``; prunelib/methods/iterative.py).

    ``train_steps`` T: optimizer steps of the first, dense training (null = train.steps,
    else train.epochs epochs).  Each round keeps a fraction ``round_factor`` K of the remaining weights by
    ``criterion`` (``IMP_CRITERIA``: global or layer-wise magnitude, or layer-wise with
    the output layer at half the rate); the rounds land exactly on every ratio of the
    grid.  ``rewind_fraction`` is lth_rewind's rewind step and
    ``gimp_fraction`` gimp's, as fractions of T.  ``per_method`` overrides the general
    parameters of a named method: ``rewind_weights_to`` (a step, or null = keep the
    trained weights), ``rewind_lr`` (restart the schedule each round) and
    ``retrain_steps`` (steps per round).
    """

    round_factor: float = 0.8
    criterion: str = "global"
    train_steps: int | None = None
    rewind_fraction: float = 0.05
    gimp_fraction: float = 0.75
    per_method: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GridSettings:
    archs: tuple = ("lenet300",)
    datasets: tuple = ("mnist",)
    #: The default grid: every built-in foresight method (the iterative ones train ~15x
    #: longer), from the registry.
    methods: tuple = field(default_factory=lambda: tuple(registry.default_grid_methods()))
    ratios: tuple = (1, 4, 16, 64)
    seeds: tuple = (0, 1, 2)
    #: Sanity-check variants of every pruned cell (``none`` = the method itself).
    variants: tuple = ("none",)
    #: [arch, dataset] pairs to run instead of the archs x datasets cross product.
    pairs: tuple | None = None

    def arch_dataset_pairs(self) -> list[tuple[str, str]]:
        if self.pairs is not None:
            return [(str(a), str(d)) for a, d in self.pairs]
        return [(a, d) for d in self.datasets for a in self.archs]


@dataclass(frozen=True)
class ReportSettings:
    """What the aggregate stage's figures and study tables show (``report:`` section).

    ``None`` picks a default from the grid: ``heatmap_ratio`` and ``curves.ratio`` the
    largest pruned ratio; ``curves.method`` snip when in the grid, else the first method;
    ``table_ratios`` r = 32 and 64 when present, else the two largest ratios.
    """

    #: The metric the main tables rank by (and list first): prunelib/foundations/eval_row.py.
    metric: str = "top1"
    heatmap_ratio: float | None = None
    curves: dict = field(default_factory=lambda: {"method": None, "ratio": None})
    table_ratios: tuple | None = None


@dataclass(frozen=True)
class Settings:
    """The whole resolved configuration."""

    preset: str | None = None
    #: Plugin files (relative to the working directory) or module names that register
    #: methods, networks or datasets (prunelib/catalogue/plugins.py); loaded before validation.
    plugins: tuple = ()
    data_dir: str = "data"
    device: str = "auto"
    threads: int = 1
    worker: bool = True
    grid: GridSettings = field(default_factory=GridSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    init: InitSettings = field(default_factory=InitSettings)
    prune: PruneSettings = field(default_factory=PruneSettings)
    score: ScoreSettings = field(default_factory=ScoreSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    iterative: IterativeSettings = field(default_factory=IterativeSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    measure: MeasureSettings = field(default_factory=MeasureSettings)


SECTIONS = {
    "grid": GridSettings,
    "model": ModelSettings,
    "init": InitSettings,
    "prune": PruneSettings,
    "score": ScoreSettings,
    "train": TrainSettings,
    "eval": EvalSettings,
    "iterative": IterativeSettings,
    "report": ReportSettings,
    "measure": MeasureSettings,
}


def defaults_dict() -> dict:
    return jsonable(dataclasses.asdict(Settings()))


def to_settings(config: dict) -> Settings:
    """Typed view of a resolved config dict."""
    kwargs = {k: v for k, v in config.items() if k not in SECTIONS}
    kwargs["plugins"] = tuple(kwargs.get("plugins") or ())
    for name, cls in SECTIONS.items():
        section = dict(config.get(name, {}))
        for key, value in section.items():
            if isinstance(value, list):  # (grid.pairs: a tuple of tuples)
                section[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[name] = cls(**section)
    return Settings(**kwargs)


def format_ratio(r: float) -> str:
    """Ratio as it appears in paths and tables: 16 -> '16', 2.5 -> '2.5'."""
    r = float(r)
    return str(int(r)) if r.is_integer() else repr(r)
