"""The stage contracts: hashes of existing results unchanged, a new option reruns nothing,
the JSON boundary round-trips, and the method's kind is asked in one place."""

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from prunelib import config
from prunelib.catalogue import pruning, registry
from prunelib.config import contracts
from prunelib.config.settings import TrainSettings
from prunelib.foundations.hparams import Hparams, always, settings_hash, unhashed

from conftest import REPO

#: Every stage's hash for every cell of every preset, config.yaml and one config that
#: sets the optional keys (threads, variants, after_pruning, per-method settings, a
#: network with options), made by the per-key dict builders these contracts replaced
#: (prunelib/stage_settings.py at commit f1bc1d1).  A preset edited on purpose changes
#: its digest: regenerate this file then, and say why in the commit.
FIXTURE = json.loads((Path(__file__).parent / "data" / "stage_hashes.json").read_text())
OPTIONAL_KEYS = {"preset": "fast", "threads": 2, "train": {"epochs_per_dataset": {"mnist": 2}},
                 "grid": {"archs": ["lenet5", "resnet20"], "datasets": ["synthetic_cifar10"],
                          "variants": ["none", "shuffle_layer", "reinit", "shuffle_weights", "invert"],
                          "methods": ["snip", "synflow", "grasp", "global_l1_filter", "lth", "lrr", "random"],
                          "seeds": [0]},
                 "init": {"after_pruning": "redraw", "per_method": {"snip": "xavier_normal"}},
                 "score": {"per_method": {"synflow": {"rounds": 10}}}}


def _configs():
    yield from ((p, {"preset": p}) for p in config.available_presets())
    yield "config.yaml", yaml.safe_load((REPO / "config.yaml").read_text())
    yield "extra_variants", OPTIONAL_KEYS


def stage_hashes(s) -> dict:
    """{cell: {stage: hash}} of every cell and IMP round of the grid ``s``."""
    rows = {}
    for c in config.cells(s):
        m, r, seed, ds, arch, v = c.method, float(c.ratio), int(c.seed), c.dataset, c.arch, c.variant
        h = {"init": contracts.init_contract(s, arch, ds, seed, s.init.scheme_for(m)).hash(),
             "mask": contracts.mask_contract(s, m, r, seed, v, arch, ds).hash(),
             "train": contracts.train_contract(s, m, r, seed, ds, v, arch).hash(),
             "eval": contracts.eval_contract(s, arch, ds, m, r, seed, v).hash()}
        if registry.method(m).pruning.scored:
            h["score"] = contracts.score_contract(s, m, seed, arch, ds).hash()
        rows[f"{ds}/{arch}/{seed}/{m}/{r}/{v}"] = h
    for d, a, sd, m, n in config.imp_chains(s):
        for j in range(n + 1):
            rows[f"{d}/{a}/{sd}/{m}/round{j}"] = {
                "imp_round": contracts.imp_round_contract(s, m, int(sd), d, j, a).hash()}
    return rows


@pytest.mark.parametrize("name,user", list(_configs()), ids=[n for n, _ in _configs()])
def test_every_stage_hash_of_every_preset_is_what_the_dict_builders_made(name, user):
    rows = stage_hashes(config.to_settings(config.resolve(user)))
    if name == "config.yaml":  # the default grid, cell by cell (a mismatch names the cell)
        assert rows == FIXTURE["config.yaml"]
    blob = json.dumps(rows, sort_keys=True, separators=(",", ":"))
    assert {"cells": len(rows), "sha256": hashlib.sha256(blob.encode()).hexdigest()} == FIXTURE["digests"][name]


def test_a_new_field_with_a_default_changes_no_hash_until_it_is_set():
    @dataclasses.dataclass(frozen=True)
    class Before(Hparams):
        seed: int
        lr: float = always(0.1)
        label: str = unhashed("x")

    @dataclasses.dataclass(frozen=True)
    class After(Hparams):
        seed: int
        lr: float = always(0.1)
        label: str = unhashed("x")
        warmup: int = 0  # the new option

    assert Before(3).to_dict() == {"seed": 3, "lr": 0.1}  # always: at its default too; unhashed: never
    assert After(3).hash() == Before(3).hash() == settings_hash({"seed": 3, "lr": 0.1})
    assert After(3, warmup=5).hash() != Before(3).hash()
    assert After(3, label="y").hash() == After(3).hash()


def test_a_new_train_option_reruns_no_train_job():
    s = config.to_settings(config.resolve({}))
    before = contracts.train_contract(s, "snip", 16, 0, "mnist").hash()
    # train options added after the hashes were fixed appear only when set
    for key, value in (("steps", 100), ("milestone_unit", "steps")):
        assert key not in contracts.train_contract(s, "snip", 16, 0, "mnist").to_dict()["train"]
        changed = dataclasses.replace(s, train=dataclasses.replace(s.train, **{key: value}))
        assert contracts.train_contract(changed, "snip", 16, 0, "mnist").hash() != before
    minutes = dataclasses.replace(s, train=dataclasses.replace(s.train, checkpoint_minutes=1.0))
    assert contracts.train_contract(minutes, "snip", 16, 0, "mnist").hash() == before  # changes no result


@pytest.mark.parametrize("method,variant", [("snip", "none"), ("synflow", "invert"), ("dense", "none"),
                                            ("lth", "none"), ("lth", "reinit"), ("global_l1_filter", "none")])
def test_every_contract_round_trips_through_its_json(method, variant):
    grid = {"methods": [method]} if registry.method(method).pruning.pruned else {}
    s = config.to_settings(config.resolve({"threads": 2, "eval": {"every_steps": 5}, "grid": grid}))
    ratio = 1 if method == "dense" else 16
    built = [contracts.init_contract(s, "lenet300", "mnist", 0, "pytorch_default"),
             contracts.mask_contract(s, method, ratio, 0, variant, "lenet300", "mnist"),
             contracts.train_contract(s, method, ratio, 0, "mnist", variant, "lenet300"),
             contracts.eval_contract(s, "lenet300", "mnist", method, ratio, 0, variant),
             contracts.data_contract("mnist")]
    if registry.method(method).pruning.scored:
        built.append(contracts.score_contract(s, method, 0, "lenet300", "mnist"))
    if registry.method(method).pruning.chain:
        built.append(contracts.imp_round_contract(s, method, 0, "mnist", 2, "lenet300"))
    for c in built:
        back = type(c).from_json(c.to_json())
        assert back == c and back.hash() == c.hash(), type(c).__name__


def test_a_contract_refuses_a_field_it_does_not_have():
    with pytest.raises(ValueError, match="unknown field.*epoch.*allowed"):
        contracts.TrainContract.from_dict({"seed": 0, "train": {}, "device": "cpu", "epoch": 3})


def test_the_train_settings_are_resolved_once_for_the_dataset():
    s = config.to_settings(config.resolve({"train": {"epochs_per_dataset": {"mnist": 3}, "augment": "auto"}}))
    c = contracts.train_contract(s, "snip", 16, 0, "mnist")
    assert isinstance(c.train, TrainSettings)
    assert (c.train.epochs, c.train.augment, c.train.epochs_per_dataset) == (3, "none", {})


def test_each_method_has_one_pruning_and_the_registered_facts_agree_with_it():
    kinds = {m: e.pruning for m, e in registry.METHODS.items()}
    assert set(kinds.values()) <= set(pruning.ALL)
    assert kinds["dense"] is pruning.DENSE and kinds["synflow"] is pruning.RESCORED
    assert kinds["snip"] is pruning.SINGLE_PASS and kinds["lth"] is pruning.CHAIN
    assert kinds["snip_filter"] is pruning.STRUCTURED
    for m, e in registry.METHODS.items():
        assert e.pruning.chain == (e.kind == "iterative") and e.pruning.pruned == (e.kind != "dense"), m
        assert (e.scorer is not None) == e.pruning.scored, m  # a score stage exactly where there is a scorer
    assert list(config.IMP_METHODS) == registry.chain_methods() == registry.methods("iterative")
