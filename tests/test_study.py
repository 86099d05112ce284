"""The 2022 study's four findings (prunelib/report/study.py): their computations on
hand-made eval and mask rows, and the tie experiment behind finding (ii) on real scores."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from prunelib.methods.masking import kept_count, select_masks
from prunelib.report import reproductions, study

from cells import run_cell


#: The methods finding (i) counts in these hand-made rows (the page takes them from paper_values.yaml).
MAG = ("global_magnitude", "layer_magnitude", "other_magnitude")


def _ev(rows):
    return pd.DataFrame([{"method": m, "ratio": float(r), "seed": s, "top1": t, "top5": None}
                         for m, r, s, t in rows], columns=["method", "ratio", "seed", "top1", "top5"])


def test_finding_i_counts_magnitude_cells_worse_than_random_by_the_paired_rule():
    ev = _ev([("random", 16, s, t) for s, t in ((42, .90), (43, .91), (44, .92))]
             + [("global_magnitude", 16, s, t) for s, t in ((42, .80), (43, .81), (44, .82))]  # 10 points worse
             + [("layer_magnitude", 16, s, t) for s, t in ((42, .95), (43, .90), (44, .92))]  # +5, -1, 0: tie
             + [("other_magnitude", 16, 42, .50)]  # one seed: its sign only
             + [("global_magnitude", 64, 42, .10)])  # no random cell at r = 64: not compared
    t = study.worse_than_random(ev, MAG, "random").set_index(["method", "ratio"])
    assert len(t) == 3
    assert t.loc[("global_magnitude", 16.0), "class"] == "worse"
    assert t.loc[("global_magnitude", 16.0), "diff"] == pytest.approx(-10.0)
    assert t.loc[("layer_magnitude", 16.0), "class"] == "tie"
    assert t.loc[("other_magnitude", 16.0), "class"] == "worse (n = 1 < 3: sign only)"
    verdict, summary = study.finding_i(t.reset_index())
    assert verdict == "reproduced"  # 1 sure of 3 >= a quarter
    assert summary.startswith("2 of 3 (method, r) cells worse than random (1 beyond 2 SE with n ≥ 3)")
    only_one_seed = study.worse_than_random(_ev([("random", 2, 42, .9), ("global_magnitude", 2, 42, .8)]), MAG,
                                            "random")
    assert study.finding_i(only_one_seed)[0] == "not testable yet (n < 3 everywhere)"
    assert study.finding_i(study.worse_than_random(_ev([]), MAG, "random"))[0] == "not testable yet"


def _mk(rows):
    return pd.DataFrame([{"method": m, "ratio": float(r), "seed": s, "name": n, "numel": numel, "kept": kept,
                          "collapsed": kept == 0, "tied": tied, "tied_kept": tk}
                         for m, r, s, n, numel, kept, tied, tk in rows])


def test_finding_ii_counts_what_a_ge_or_gt_threshold_would_have_kept_from_the_mask_tables():
    mk = _mk([("grasp", 2, 42, "a", 100, 50, 30, 20), ("grasp", 2, 42, "b", 100, 50, 10, 5),
              ("snip", 2, 42, "a", 100, 50, 1, 1), ("snip", 2, 42, "b", 100, 50, 0, 0)])
    ce = study.compression_errors(mk).set_index("method")
    assert ce.loc["grasp", "err"] == 0.0 and ce.loc["snip", "err"] == 0.0  # ours: exact
    # >=: every tied weight kept: 100 + (40 - 25) = 115 kept of 200 -> r_e 1.739, -13.04 %
    assert ce.loc["grasp", "err_ge"] == pytest.approx(100 * (200 / 115 - 2) / 2)
    # >: every tied weight dropped: 100 - 25 = 75 kept -> r_e 2.667, +33.3 %
    assert ce.loc["grasp", "err_gt"] == pytest.approx(100 * (200 / 75 - 2) / 2)
    assert ce.loc["snip", "err_ge"] == 0.0  # one weight at the threshold: the k-th itself
    verdict, summary = study.finding_ii(ce.reset_index(), {"grasp": (30, 50), "obd": (20, 50)})
    assert verdict == "corrected"
    assert "-13.0 % at worst (grasp, r = 2)" in summary and "explain only part" in summary
    ce_big = study.compression_errors(_mk([("obd", 4, 42, "a", 100, 25, 40, 5)]))  # >=: 60 kept, r_e 1.67
    assert "reproduce the study's size" in study.finding_ii(ce_big, {"obd": (20, 50)})[1]


def test_finding_iii_ranks_only_complete_ratio_seed_groups_and_averages_ties():
    ev = _ev([("a", 2, 1, .9), ("b", 2, 1, .5), ("c", 2, 1, .5),
              ("a", 4, 1, .9), ("b", 4, 1, .8), ("c", 4, 1, .7),
              ("a", 2, 2, .9), ("b", 2, 2, .7), ("c", 2, 2, .8),
              ("a", 8, 1, .1), ("b", 8, 1, .9)])  # r = 8: c missing -> not ranked
    rk, used = study.ranks(ev, ["a", "b", "c"])
    assert used == [2.0, 4.0]
    rk = rk.set_index("method")
    assert rk.loc["a", "mean"] == 1.0 and rk.loc["a", "std"] == 0.0 and rk.loc["a", "n"] == 2
    # b: seed 1 ranks 2.5 (tie) and 2 -> 2.25; seed 2 rank 3 -> mean 2.625
    assert rk.loc["b", "mean"] == pytest.approx((2.25 + 3) / 2)
    assert rk.loc["c", "r2"] == pytest.approx((2.5 + 2) / 2)
    assert list(rk.index) == ["a", "c", "b"] or list(rk.index) == ["a", "b", "c"]
    stated = {"most_consistent": "snip", "mnist_top4": ["snip"]}
    assert study.finding_iii(rk.reset_index(), stated)[0] == "not testable yet (n < 3 seeds)"
    three = _ev([(m, 2, s, t) for s in (1, 2, 3) for m, t in (("snip", .9), ("grasp", .8))])
    rk3, _ = study.ranks(three, ["snip", "grasp"])
    assert study.finding_iii(rk3, stated)[0] == "reproduced"
    assert study.finding_iii(rk3, {**stated, "most_consistent": "grasp"})[0] == "corrected"


def test_finding_iv_lists_collapsed_layers_per_method_ratio_with_seed_counts():
    methods = ["snip", "grasp", "synflow"]
    rows = []
    for m in methods:
        for r in (2, 64):
            for s in (42, 43, 44):
                collapsed = m == "synflow" and r == 64 and s != 44
                rows += [(m, r, s, "conv1.weight", 500, 0 if collapsed else 10, 0, 0),
                         (m, r, s, "fc2.weight", 5000, 100, 0, 0)]
    mk = _mk(rows)
    col = study.collapses(mk)
    assert col[["method", "ratio", "name", "collapsed", "seeds"]].values.tolist() == [
        ["synflow", 64.0, "conv1.weight", 2, 3]]
    assert study.finding_iv(col, mk, {"survive_r64": ["snip", "grasp"]}, methods)[0] == "reproduced"
    assert study.finding_iv(col, mk, {"survive_r64": ["snip"]}, methods)[0] == "corrected"
    assert study.finding_iv(col, mk[mk.ratio < 64], {"survive_r64": ["snip"]}, methods)[0].startswith(
        "not testable yet")
    assert study.provisional("corrected", {"mask_found": 5, "mask_expected": 6}) == \
        "corrected, provisional (5 of 6 mask tables)"
    assert study.provisional("corrected", {"mask_found": 6, "mask_expected": 6}) == "corrected"


def test_at_chance_counts_seeds_at_or_below_the_most_frequent_class():
    ev = _ev([("synflow", 64, 42, .1135), ("synflow", 64, 43, .98), ("snip", 64, 42, .97), ("dense", 1, 42, .05)])
    assert study.at_chance(ev).values.tolist() == [["synflow", 64.0, 1, 2]]


def test_the_section_on_an_empty_results_folder_says_what_is_missing_and_tests_nothing(tmp_path):
    text = study.section(tmp_path, tmp_path / "docs")
    assert "**Found** (in `results/` and the ledger): 0 of 255 trained cells (r = none so far), 0 of 252 mask tables" in text
    assert text.count("**Verdict: not testable yet") == 4
    assert "`prunelib reproductions study`" in text and "CIFAR parts (VGG-16, ResNet-56) are not testable" in text


def test_a_ge_threshold_on_grasp_scores_at_init_under_prunes(tmp_path, mnist_pt):
    """Finding (ii)'s experiment on real scores: GraSP at the thesis preset's init on
    lenet5.  Many of its scores are exactly 0 (fc1 weights whose input feature is 0 for
    the whole scoring batch); at r = 2 the cut falls among them.  Our masks keep exactly
    round(n / r); a ``score >= threshold`` rule (ties kept, as a kthvalue-threshold mask
    does) keeps every zero and under-prunes; the mask table's tie columns count exactly
    that mask, which is what the study section reads."""
    s = reproductions.settings_of(reproductions.Reproduction("t", "thesis", "lenet5", "grasp", (2,), (42,)))
    cell = run_cell(tmp_path, mnist_pt, s, "lenet5", "grasp", 2, 42, until="score")
    scores = torch.load(cell.scores, weights_only=False)["scores"]
    flat = torch.cat([v.flatten() for v in scores.values()])
    n = flat.numel()
    masks, rows = select_masks(scores, 2, "global", 42, "grasp")
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == kept_count(n, 2)  # ours: exact
    threshold = rows[0]["threshold"]
    assert threshold == 0.0 and int((flat == 0).sum()) > 0.05 * n  # the cut falls among the zero scores
    ge = int((flat >= threshold).sum())
    r_e = n / ge
    assert ge > kept and (r_e - 2) / 2 < -0.05  # under-prunes by more than 5 %
    mk = pd.DataFrame([{"method": "grasp", "ratio": 2.0, "seed": 42, "name": r["name"], "numel": r["numel"],
                        "kept": r["kept"], "collapsed": r["collapsed"], "tied": r["tied_at_threshold"],
                        "tied_kept": r["tied_kept"]} for r in rows])
    ce = study.compression_errors(mk).iloc[0]
    assert ce["err"] == 0.0
    assert ce["err_ge"] == pytest.approx(100 * (r_e - 2) / 2)  # the table counts the >= mask exactly
    assert ce["err_gt"] == pytest.approx(100 * (n / int((flat > threshold).sum()) - 2) / 2)
    assert not math.isnan(ce["err_ge"])
