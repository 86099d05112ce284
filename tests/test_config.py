import subprocess

import pytest
import yaml

from prunelib import config

from prunelib.catalogue import registry
from prunelib.config import validation
from prunelib.config import ConfigError, contracts, resolve

from cells import settings
from conftest import REPO, SNAKEMAKE


def test_schema_names_come_from_the_registry_and_the_file_names_none():
    schema = config.load_schema()
    grid = schema["properties"]["grid"]["properties"]
    assert grid["archs"]["items"]["enum"] == list(registry.ARCHS)
    assert grid["datasets"]["items"]["enum"] == list(registry.DATASETS)
    assert grid["methods"]["items"]["enum"] == [m for m in registry.METHODS if m != config.DENSE]
    assert grid["variants"]["items"]["enum"] == list(registry.VARIANTS)
    assert schema["properties"]["iterative"]["properties"]["per_method"]["propertyNames"]["enum"] == \
        registry.methods("iterative") == list(config.IMP_METHODS)
    assert schema["properties"]["init"]["properties"]["scheme"]["enum"] == list(registry.INITS)
    per_method = schema["properties"]["score"]["properties"]["per_method"]["properties"]
    assert set(per_method) == set(registry.methods("foresight"))
    assert set(per_method["synflow"]["properties"]) == {"batch_size", "num_batches", "class_balanced", "rounds",
                                                        "precision"}
    # the schema file itself lists no method, network or dataset: nothing there can drift
    lists = [line for line in validation.schema_path().read_text().splitlines() if "enum:" in line]
    names = {*registry.METHODS, *registry.ARCHS, *registry.DATASETS, *registry.INITS} - {"none"}
    assert not [line for line in lists if names & set(line.replace(",", " ").replace("[", " ").split())]


def test_default_config_resolves_to_the_fast_preset():
    s = config.load(REPO / "config.yaml")
    assert s.preset == "fast"
    # every unstructured foresight method is in the default grid (the iterative ones train
    # ~15x longer; the structured ones have their own preset, workflow/presets/structured.yaml)
    structured = {m for m, e in registry.METHODS.items() if e.structured}
    # (nor the second-order ones that update the weights they keep: obs cannot run on
    # LeNet-300-100, woodfisher and lobs cost minutes; workflow/presets/second_order.yaml)
    updating = {m for m, e in registry.METHODS.items() if e.pruning.updates_weights}
    # (nor eigendamage, which rebuilds the network: second_order.yaml)
    rebuilt = {m for m, e in registry.METHODS.items() if e.pruning.trains_from == "mask"}
    assert set(s.grid.methods) == (set(config.known("methods")) - set(config.IMP_METHODS) - structured - updating
                                   - rebuilt)
    assert {1, 4, 16, 64} <= set(s.grid.ratios) and len(s.grid.seeds) >= 3
    # one dense control per (arch, seed), plus every method at every r > 1
    n_pruned = len([r for r in s.grid.ratios if r != 1])
    per_seed = 1 + len(s.grid.methods) * n_pruned
    assert len(config.cells(s)) == len(s.grid.archs) * len(s.grid.seeds) * per_seed


def test_preset_then_config_overrides():
    s = settings({"preset": "thesis", "train": {"epochs": 2}})
    assert s.train.lr == 1e-4 and s.train.nesterov and s.train.batch_size == 128
    assert s.train.epochs == 2                     # the user's key wins over the preset
    assert s.init.scheme_for("snip") == "xavier_normal"
    assert s.init.scheme_for("global_magnitude") == "pytorch_default"
    assert s.grid.seeds == (42, 43, 44)


def test_thesis_preset_matches_the_study_protocol():
    p = yaml.safe_load((REPO / "workflow/presets/thesis.yaml").read_text())
    t = p["train"]
    assert (t["optimizer"], t["momentum"], t["nesterov"], t["lr"], t["batch_size"], t["epochs"]) == \
        ("sgd", 0.9, True, 1e-4, 128, 5)
    assert t["train_subset"] is None
    assert p["grid"]["ratios"] == [1, 2, 4, 8, 16, 32, 64]


def _grid(**over):
    g = {"archs": ["lenet5"], "datasets": ["mnist"], "methods": ["snip"], "ratios": [1, 4], "seeds": [0]}
    g.update(over)
    return {"grid": g}


BAD = [
    (_grid(archs=["vgg99"]), 'grid.archs[0] = "vgg99" is not allowed; allowed: lenet300, lenet5'),
    (_grid(datasets=["imagenet"]), 'grid.datasets[0] = "imagenet" is not allowed; allowed: mnist'),
    (_grid(methods=["snip", "snipp"]),
     'grid.methods[1] = "snipp" is not allowed; allowed: random, global_magnitude, layer_magnitude, '
     'global_gradient, layer_gradient, global_activation, layer_activation, global_lap, layer_lap, lamp, '
     'snip, grasp, synflow, obd, obs, woodfisher, lobs, global_l1_filter, layer_l1_filter, snip_filter, '
     'grasp_filter, synflow_filter, kron_obd, kron_obs, eigendamage, imp_finetune, lth, lth_rewind, lrr, gimp, '
     'woodfisher_imp'),
    (_grid(ratios=[4, 0.5]), "grid.ratios[1] = 0.5 is not allowed; allowed: numbers >= 1"),
    (_grid(seeds=[1.5]), "grid.seeds[0] = 1.5 is not allowed; allowed: integers >= 0"),
    (_grid(seeds=[-1]), "grid.seeds[0] = -1 is not allowed; allowed: integers >= 0"),
    (_grid(methods=[]), "grid.methods = [] is not allowed; allowed: a non-empty list"),
    (_grid(seeds=[]), "grid.seeds = [] is not allowed; allowed: a non-empty list"),
    ({"train": {"epochs": 0}}, "train.epochs = 0 is not allowed; allowed: integers >= 1"),
    ({"train": {"batch_size": 0}}, "train.batch_size = 0 is not allowed; allowed: integers >= 1"),
    ({"score": {"batch_size": -3}}, "score.batch_size = -3 is not allowed; allowed: integers >= 1"),
    ({"preset": "fastest"}, 'preset = "fastest" is not allowed; allowed: fast, imp_mnist, imp_mnist_obs, lth_mnist, '
     'second_order, second_order_structured, sigprop, snip, standard, structured, thesis'),
    ({"model": {"shortcut": "C"}}, 'model.shortcut = "C" is not allowed; allowed: A, B'),
    ({"train": {"augment": "yes"}}, 'train.augment = "yes" is not allowed; allowed: auto, none, cifar'),
    ({"train": {"amp": "fp16"}}, 'train.amp = "fp16" is not allowed; allowed: none, bf16'),
    ({"train": {"val_fraction": 1}}, "train.val_fraction = 1 is not allowed; allowed: numbers >= 0 and < 1"),
    ({"train": {"epochs_per_dataset": {"cifar10": 0}}},
     "train.epochs_per_dataset.cifar10 = 0 is not allowed; allowed: integers >= 1"),
    ({"train": {"epochs_per_dataset": {"cifar": 3}}},
     "allowed: mnist, fashion_mnist, cifar10, cifar100, synthetic_cifar10"),
    (_grid(pairs=[["lenet5", "cifar1"]]),
     'grid.pairs[0][1] = "cifar1" is not allowed; allowed: mnist, fashion_mnist, cifar10, cifar100, '
     'synthetic_cifar10'),
    (_grid(pairs=[["vgg99", "mnist"]]), 'grid.pairs[0][0] = "vgg99" is not allowed; allowed: '
     + ", ".join(registry.ARCHS)),
    # an arch that cannot take a dataset's images, named with both, when the config is read
    (_grid(pairs=[["lenet5", "cifar10"], ["vgg16", "mnist"]]),
     'grid.pairs[1] = ["vgg16", "mnist"] is not allowed: vgg16 needs images of at least 32x32 pixels and '
     'mnist has 28x28; allowed datasets for vgg16: cifar10, cifar100, synthetic_cifar10'),
    (_grid(archs=["lenet5", "vgg16"], datasets=["cifar10", "fashion_mnist"]),
     'grid.archs x grid.datasets includes ["vgg16", "fashion_mnist"], which is not allowed: vgg16 needs'),
    ({"train": {"epoch": 3}}, "unknown key train.epoch; allowed keys amp, augment, batch_size, channels_last, checkpoint_minutes, epochs,"),
    ({"device": "tpu"}, 'device = "tpu" is not allowed; allowed: auto, cpu, cuda'),
    (_grid(variants=["none", "shuffle"]), 'grid.variants[1] = "shuffle" is not allowed; allowed: none, '
     'shuffle_layer, reinit, shuffle_weights, invert'),
    ({"iterative": {"criterion": "lamp"}},
     'iterative.criterion = "lamp" is not allowed; allowed: global, layer, layer_output_half'),
    ({"iterative": {"round_factor": 1}}, "iterative.round_factor = 1 is not allowed; allowed: numbers > 0 and < 1"),
    ({"iterative": {"per_method": {"lth": {"rewind_lr": "yes"}}}},
     'iterative.per_method.lth.rewind_lr = "yes" is not allowed; allowed: true or false'),
    ({"iterative": {"per_method": {"snip": {}}}},
     'iterative.per_method = "snip" is not allowed; allowed: imp_finetune, lth, lth_rewind, lrr, gimp'),
    ({"iterative": {"train_steps": 100, "per_method": {"lth_rewind": {"rewind_weights_to": 200}}}},
     "iterative.per_method.lth_rewind.rewind_weights_to = 200 is not allowed; allowed: steps 0..99 "
     "(iterative.train_steps)"),
    ({"iterative": {"train_steps": 100, "per_method": {"lth_rewind": {"rewind_weights_to": 100}}}},
     "iterative.per_method.lth_rewind.rewind_weights_to = 100 is not allowed; allowed: steps 0..99"),
    ({"iterative": {"train_steps": 100, "per_method": {"lrr": {"retrain_steps": 101}}}},
     "iterative.per_method.lrr.retrain_steps = 101 is not allowed; allowed: steps 1..100 "
     "(iterative.train_steps, as the round replays the schedule's last retrain_steps)"),
    ({"model": {"bn_momentum": 2}}, "model.bn_momentum = 2 is not allowed; allowed: numbers >= 0 and <= 1"),
]


@pytest.mark.parametrize("user, message", BAD, ids=[b[1].split(" ")[0] for b in BAD])
def test_bad_input_is_one_line_naming_key_value_and_allowed(user, message):
    with pytest.raises(ConfigError) as err:
        resolve(user)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("config error: ")
    assert message in text


def test_snakemake_rejects_bad_config_before_any_job(tmp_path):
    """Through the real command line: one line on stderr, non-zero exit, nothing written."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"preset": "fast", **_grid(ratios=[0.5])}))
    proc = subprocess.run([SNAKEMAKE, "-s", REPO / "Snakefile", "--directory", tmp_path, "--cores", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1] == "config error: grid.ratios[0] = 0.5 is not allowed; allowed: numbers >= 1"
    assert not (tmp_path / "results").exists()


def test_format_ratio():
    assert config.format_ratio(16) == "16"
    assert config.format_ratio(16.0) == "16"
    assert config.format_ratio(2.5) == "2.5"


def test_settings_hash_is_stable_and_sensitive():
    a = {"x": 1, "y": [1, 2]}
    assert config.settings_hash(a) == config.settings_hash({"y": [1, 2], "x": 1})
    assert config.settings_hash(a) != config.settings_hash({"x": 2, "y": [1, 2]})


def test_grid_pairs_replace_the_cross_product():
    s = settings(_grid(archs=["lenet5", "resnet20"], datasets=["mnist", "cifar10"],
                       pairs=[["resnet20", "cifar10"], ["lenet5", "mnist"]]))
    assert sorted({(c.arch, c.dataset) for c in config.cells(s)}) == [("lenet5", "mnist"), ("resnet20", "cifar10")]
    cross = settings(_grid(archs=["lenet5", "resnet20"], datasets=["mnist", "cifar10"]))
    assert len({(c.arch, c.dataset) for c in config.cells(cross)}) == 4   # lenet5 fits CIFAR: allowed


def test_thesis_preset_is_the_whole_study_grid():
    s = settings({"preset": "thesis"})
    assert set(s.grid.arch_dataset_pairs()) == {("lenet5", "mnist"), ("vgg16", "cifar10"), ("resnet56", "cifar10"),
                                               ("vgg16", "cifar100"), ("resnet56", "cifar100")}
    assert len(config.cells(s)) == 5 * 3 * (1 + 14 * 6)
    epochs = {d: contracts.train_contract(s, "dense", 1, 42, d).train.epochs for d in ("mnist", "cifar10", "cifar100")}
    assert epochs == {"mnist": 5, "cifar10": 25, "cifar100": 50}


def test_epochs_per_dataset_changes_only_that_datasets_train_settings():
    base = settings({"preset": "thesis"})
    more = settings({"preset": "thesis", "train": {"epochs_per_dataset": {"cifar100": 60}}})
    def train(s, d):
        return contracts.train_contract(s, "dense", 1, 42, d)

    for d in ("mnist", "cifar10"):
        assert train(base, d) == train(more, d) and train(base, d).hash() == train(more, d).hash()
    assert train(base, "cifar100") != train(more, "cifar100")
    assert train(base, "cifar100").hash() != train(more, "cifar100").hash()
    assert train(base, "cifar10").train.epochs_per_dataset == {}
    assert "epochs_per_dataset" not in train(base, "cifar10").to_dict()["train"]


def test_augment_auto_resolves_per_dataset_and_model_options_only_for_resnets():
    s = settings({"model": {"shortcut": "B"}})
    assert contracts.train_contract(s, "dense", 1, 0, "cifar10").train.augment == "cifar"
    assert contracts.train_contract(s, "dense", 1, 0, "synthetic_cifar10").train.augment == "cifar"
    assert contracts.train_contract(s, "dense", 1, 0, "mnist").train.augment == "none"
    assert contracts.init_contract(s, "resnet20", "cifar10", 0, "pytorch_default").model == \
        {"shortcut": "B", "bn_momentum": 0.1, "bn_eps": 1e-5}
    assert contracts.init_contract(s, "vgg16", "cifar10", 0, "pytorch_default").model == \
        {"bn_momentum": 0.1, "bn_eps": 1e-5}
    lenet5 = contracts.init_contract(s, "lenet5", "mnist", 0, "pytorch_default")
    assert lenet5.model == {} and "model" not in lenet5.to_dict()


def test_batchnorm_settings_reach_every_batchnorm_layer_and_the_init_artifact(tmp_path):
    import torch

    from prunelib import stages

    from prunelib.nets import models

    assert {a for a, e in registry.ARCHS.items() if e.batchnorm} == {
        a for a in registry.ARCHS
        if any(isinstance(m, torch.nn.BatchNorm2d) for m in models.build(a, 10, 3, 32).modules())}
    s = settings({"model": {"bn_momentum": 0.01, "bn_eps": 1e-3}})
    init = contracts.init_contract(s, "resnet20", "synthetic_cifar10", 0, "pytorch_default")
    stages.run_init(init, tmp_path / "i.pt", tmp_path / "i.parquet")
    model, meta = stages.load_model(tmp_path / "i.pt")
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.01 and m.eps == 1e-3 for m in bns)
    assert meta["model"] == {"shortcut": "A", "bn_momentum": 0.01, "bn_eps": 1e-3}


@pytest.mark.parametrize("preset", ["standard", "snip"])
def test_new_presets_resolve(preset):
    s = settings({"preset": preset})
    assert config.cells(s)
    if preset == "snip":
        assert (s.train.lr, s.train.batch_size, s.train.weight_decay, s.train.val_fraction) == (0.1, 100, 5e-4, 0.1)
        assert s.init.scheme == "variance_scaling" and s.score.batch_size == 100  # the authors' code
        assert sorted(s.grid.ratios) == [1, 20, 50, 100]
    else:
        assert (s.train.lr, s.train.momentum, s.train.milestones, s.train.epochs) == (0.1, 0.9, (80, 120), 160)


def test_lth_mnist_preset_is_the_issue_experiment():
    s = config.load(REPO / "workflow/presets/lth_mnist.yaml")
    assert (s.grid.archs, s.grid.datasets, s.grid.methods) == (("mlp400x3",), ("mnist",), ("lth",))
    assert 25 in s.grid.ratios and len(s.grid.seeds) >= 5 and set(s.grid.variants) == set(config.VARIANTS)
    assert len(config.imp_densities(s.grid.ratios, s.iterative.round_factor)) == 15
    assert len(config.cells(s)) == 5 * (1 + len(config.VARIANTS))


def test_imp_mnist_preset_has_every_iterative_method():
    s = config.load(REPO / "workflow/presets/imp_mnist.yaml")
    # the family: imp_mnist and imp_mnist_obs (its chain pruned by WoodFisher), same training
    obs = config.load(REPO / "workflow/presets/imp_mnist_obs.yaml")
    assert set(config.IMP_METHODS) <= set(s.grid.methods) | set(obs.grid.methods)
    assert s.train.lr_schedule == "step" and s.train.milestones == (2,)
    assert obs.train == s.train and obs.iterative == s.iterative and "imp_finetune" in obs.grid.methods


def test_a_thread_count_other_than_one_enters_every_computing_jobs_settings():
    one, two = (settings(threads=t) for t in (1, 2))
    for make in (lambda s: contracts.score_contract(s, "snip", 0),
                 lambda s: contracts.train_contract(s, "dense", 1, 0, "mnist"),
                 lambda s: contracts.mask_contract(s, "synflow", 4, 0),
                 lambda s: contracts.imp_round_contract(s, "lth", 0, "mnist", 0)):
        assert make(one).threads == 1 and make(two).threads == 2
        assert "threads" not in make(one).to_dict() and make(two).to_dict()["threads"] == 2
        assert make(one).hash() != make(two).hash()
    cell = ("lenet300", "mnist", "snip", 4, 0)
    assert contracts.eval_contract(one, *cell).cell_hash != contracts.eval_contract(two, *cell).cell_hash
