"""The mask stage builds a multi-round method's removal ranking only for ``invert``."""

import pytest

from prunelib import stages

from prunelib.config import contracts
from prunelib.methods import masking
from prunelib.foundations.artifacts import load_pt, read_parquet_rows

from cells import run_cell, settings

SETTINGS = settings(score={"per_method": {"synflow": {"rounds": 5}}})


@pytest.fixture(scope="module")
def synflow_init(tmp_path_factory):
    d = tmp_path_factory.mktemp("rank")
    run_cell(d, None, SETTINGS, "lenet300", "synflow", 16, until="score", folder=d)
    return d


def test_synflow_mask_without_invert_never_builds_the_ranking(synflow_init, monkeypatch):
    d = synflow_init

    def refuse(*a, **k):
        raise AssertionError("removal_ranking built without a variant that reads it")

    monkeypatch.setattr(masking, "removal_ranking", refuse)
    stages.run_mask(contracts.mask_contract(SETTINGS, "synflow", 16, 0), d / "init.pt", d / "scores.pt",
                    d / "m.pt", d / "m.parquet")
    meta = load_pt(d / "m.pt")["meta"]
    assert meta["n_kept"] == meta["target_kept"] == masking.kept_count(266_200, 16)
    assert meta["dtype"] == "float32-rescaled"


def test_synflow_invert_keeps_the_weights_the_first_round_removed(synflow_init):
    d = synflow_init
    stages.run_mask(contracts.mask_contract(SETTINGS, "synflow", 16, 0), d / "init.pt", d / "scores.pt",
                    d / "m.pt", d / "m.parquet")
    stages.run_mask(contracts.mask_contract(SETTINGS, "synflow", 16, 0, variant="invert"), d / "init.pt",
                    d / "scores.pt", d / "i.pt", d / "i.parquet")
    method, inverted = load_pt(d / "m.pt")["masks"], load_pt(d / "i.pt")["masks"]
    assert sum(r["kept"] for r in read_parquet_rows(d / "i.parquet")) == masking.kept_count(266_200, 16)
    # round 1 of 5 removes 1 - 16^-0.2 = 43% > the 6.25% invert keeps: all of them pruned by the method
    assert not any(bool((method[n] & inverted[n]).any()) for n in method)
    assert load_pt(d / "i.pt")["meta"]["variant"]["variant"] == "invert"
