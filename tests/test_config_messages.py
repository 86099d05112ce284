"""Every kind of schema constraint renders as the bound that was violated, in one line
(key, value, what is allowed); command-line strings are coerced to the schema's types."""

from __future__ import annotations

import pytest
import yaml

from prunelib.config import ConfigError, resolve

from cells import settings
from conftest import REPO, run

KINDS = [
    # (kind, user config, the whole message after "config error: ")
    ("minimum", {"grid": {"seeds": [-1]}}, "grid.seeds[0] = -1 is not allowed; allowed: integers >= 0"),
    ("maximum", {"model": {"bn_momentum": 1.5}},
     "model.bn_momentum = 1.5 is not allowed; allowed: numbers >= 0 and <= 1"),
    ("exclusiveMinimum", {"train": {"lr": 0}}, "train.lr = 0 is not allowed; allowed: numbers > 0"),
    ("exclusiveMaximum", {"iterative": {"round_factor": 1.0}},
     "iterative.round_factor = 1.0 is not allowed; allowed: numbers > 0 and < 1"),
    ("exclusiveMaximum with a minimum", {"train": {"val_fraction": 1.0}},
     "train.val_fraction = 1.0 is not allowed; allowed: numbers >= 0 and < 1"),
    ("enum", {"device": "tpu"}, 'device = "tpu" is not allowed; allowed: auto, cpu, cuda'),
    ("type", {"train": {"nesterov": "sometimes"}},
     'train.nesterov = "sometimes" is not allowed; allowed: true or false (it arrived as a string: '
     "`snakemake --config` passes nested values as text, and YAML reads e.g. 1e12 as text; write it in a "
     "YAML file, e.g. 1.0e+12, and pass it with --configfile)"),
    ("type, not a string", {"train": {"epochs": 2.5}}, "train.epochs = 2.5 is not allowed; allowed: integers >= 1"),
    ("minItems", {"grid": {"seeds": []}}, "grid.seeds = [] is not allowed; allowed: a non-empty list"),
    ("maxItems", {"grid": {"pairs": [["lenet300", "mnist", "extra"]]}},
     'grid.pairs[0] = ["lenet300", "mnist", "extra"] is not allowed; allowed: a list of exactly 2 items'),
    ("uniqueItems", {"grid": {"seeds": [0, 0]}},
     "grid.seeds = [0, 0] is not allowed; allowed: a list without repeated entries"),
    ("minLength", {"data_dir": ""}, 'data_dir = "" is not allowed; allowed: strings of at least 1 characters'),
    ("additionalProperties", {"train": {"epoch": 3}},
     "unknown key train.epoch; allowed keys amp, augment, batch_size, channels_last, checkpoint_minutes, epochs, epochs_per_dataset, "
     "eval_batch_size, "
     "gamma, lr, lr_schedule, milestone_unit, milestones, momentum, nesterov, optimizer, precision, steps, train_subset, "
     "val_fraction, weight_decay"),
    ("a method's own setting", {"score": {"per_method": {"synflow": {"rounds": 0}}}},
     "score.per_method.synflow.rounds = 0 is not allowed; allowed: integers >= 1"),
    ("a method's own enum", {"score": {"per_method": {"obd": {"estimator": "lanczos"}}}},
     'score.per_method.obd.estimator = "lanczos" is not allowed; allowed: auto, exact, hutchinson'),
    ("a ratio too large to be finite", {"grid": {"ratios": [1, float("inf")]}},
     "grid.ratios[1] = inf is not allowed; allowed: finite numbers >= 1"),
]


@pytest.mark.parametrize("kind, user, message", KINDS, ids=[k[0] for k in KINDS])
def test_each_constraint_kind_names_the_violated_bound(kind, user, message):
    with pytest.raises(ConfigError) as exc:
        resolve(user)
    assert str(exc.value) == "config error: " + message
    assert "\n" not in str(exc.value)


def test_command_line_strings_are_coerced_to_the_schemas_types():
    s = settings(train={"epochs": "2", "nesterov": "false", "lr": "0.1", "train_subset": "null"},
                 grid={"ratios": ["1", "16", "1e12"], "seeds": ["3"]})
    assert (s.train.epochs, s.train.nesterov, s.train.lr, s.train.train_subset) == (2, False, 0.1, None)
    assert s.grid.ratios == (1.0, 16.0, 1e12) and s.grid.seeds == (3,)
    # strings stay strings where the schema asks for one, and enums are not touched
    assert settings(device="cpu", data_dir="123").data_dir == "123"


def test_a_nested_override_on_snakemakes_command_line_works(tmp_path, snakemake_bin):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(
        {"grid": {"archs": ["lenet300"], "methods": ["snip"], "ratios": [1, 4], "seeds": [0]}}))
    base = [snakemake_bin, "-s", REPO / "Snakefile", "--directory", tmp_path, "-n", "--quiet", "rules"]
    run(base + ["--config", 'train={"epochs": 2, "nesterov": false}'])
    bad = run(base + ["--config", 'train={"epochs": "two"}'], check=False)
    assert bad.returncode != 0
    assert 'config error: train.epochs = "two" is not allowed; allowed: integers >= 1 (it arrived as a string' \
        in bad.stdout + bad.stderr
