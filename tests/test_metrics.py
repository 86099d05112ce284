"""Metrics beyond top-1 on hand-made logits, computed by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch

from prunelib.train import metrics


def test_per_class_recall_balanced_accuracy_and_the_worst_class():
    # 3 classes; class 0: 2 of 2 right, class 1: 1 of 3 right, class 2: 1 of 1 right
    y = torch.tensor([0, 0, 1, 1, 1, 2])
    pred = torch.tensor([0, 0, 1, 0, 2, 2])
    logits = torch.nn.functional.one_hot(pred, 4).double() * 5  # a 4th class with no test example
    out = metrics.beyond_top1(logits, y, 4)
    assert out["min_class_recall"] == 1 / 3 and out["min_recall_class"] == 1
    assert math.isclose(out["balanced_accuracy"], (1 + 1 / 3 + 1) / 3)  # the absent class does not count
    recalls = metrics.class_recalls(pred, y, 4)
    assert recalls[:3].tolist() == [1.0, 1 / 3, 1.0] and math.isnan(recalls[3])


def test_ece_with_fifteen_equal_width_bins_by_hand():
    # confidences 0.95 (right), 0.95 (wrong), 0.55 (right), 0.30 (wrong), on 4 classes
    probs = torch.tensor([[0.95, 0.05 / 3, 0.05 / 3, 0.05 / 3],
                          [0.95, 0.05 / 3, 0.05 / 3, 0.05 / 3],
                          [0.55, 0.15, 0.15, 0.15],
                          [0.30, 0.25, 0.25, 0.20]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 2])
    out = metrics.beyond_top1(probs.log(), y, 4)
    # bins of width 1/15: 0.95 -> bin 15 (14/15, 1]; 0.55 -> bin 9 (8/15, 9/15]; 0.30 -> bin 5 (4/15, 5/15]
    expected = (2 / 4) * abs(0.5 - 0.95) + (1 / 4) * abs(1.0 - 0.55) + (1 / 4) * abs(0.0 - 0.30)
    assert math.isclose(out["ece"], expected, rel_tol=1e-12)
    bins = json.loads(out["calibration_bins"])
    assert len(bins) == 15 and [i for i, b in enumerate(bins) if b[0]] == [4, 8, 14]
    assert bins[14][0] == 2 and bins[14][2] == 1 and math.isclose(bins[14][1], 1.9)
    nll = -(math.log(0.95) + math.log(0.05 / 3) + math.log(0.55) + math.log(0.25)) / 4
    assert math.isclose(out["nll"], nll, rel_tol=1e-12)


def test_a_bin_edge_belongs_to_the_lower_bin_and_zero_to_the_first():
    bins = metrics.calibration_bins(torch.tensor([1 / 15, 0.0, 1.0], dtype=torch.float64),
                                    torch.tensor([True, False, True]))
    assert bins[0][0] == 2 and bins[14][0] == 1


def test_perfectly_calibrated_predictions_have_zero_ece():
    # in one bin, confidence 0.6 and 60% right
    probs = torch.tensor([[0.6, 0.4]] * 5, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1])
    assert metrics.beyond_top1(probs.log(), y, 2)["ece"] < 1e-12


def test_the_beyond_top1_table_and_the_reliability_figure_come_from_eval_rows(tmp_path):
    import pandas as pd

    from prunelib.report import figures as report_figures

    from prunelib.report import tables as report_tables

    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 1])
    cell = metrics.beyond_top1(probs.log(), y, 2)
    rows = [{"dataset": "mnist", "arch": "lenet300", "method": m, "ratio": r, "seed": s, "status": "ok", **cell}
            for m, r in (("dense", 1.0), ("snip", 16.0)) for s in (0, 1)]
    df = pd.DataFrame(rows)
    table = report_tables.beyond_top1_table(df)
    assert list(table.index) == ["dense", "snip"] and list(table.columns) == ["r=1", "r=16"]
    text = table.loc["snip", "r=16"]
    assert text == (f"balanced acc. {100 * cell['balanced_accuracy']:.2f}%; worst-class recall "
                    f"{100 * cell['min_class_recall']:.2f}% (class 1); ECE {100 * cell['ece']:.2f}%; "
                    f"NLL {cell['nll']:.3f} (2)")
    assert table.loc["dense", "r=16"] == "—"
    assert report_tables.beyond_top1_table(df.drop(columns=["ece"])).empty  # rows from before these columns
    report_figures.plot_calibration(df, "t", 16.0, tmp_path / "cal.png")
    assert (tmp_path / "cal.png").stat().st_size > 10_000 and (tmp_path / "cal.svg").exists()


def test_report_metric_ranks_the_main_tables_lower_is_better_for_ece(tmp_path):
    """report.metric = ece: the Blalock tables lead with ECE, the lowest mean is marked best,
    and the workflow's declared outputs include its CSV; top-1 and top-5 tables remain."""
    import pandas as pd

    from prunelib.report import aggregate

    from prunelib.report import layout as report_layout
    from prunelib.foundations.artifacts import record_checksum
    from prunelib.report.stats import cell_stats

    rows = [{"dataset": "mnist", "arch": "lenet300", "method": m, "ratio": 4.0, "seed": s, "status": "ok",
             "top1": t, "top5": 0.99, "ece": e, "collapsed_layers": 0, "collapsed_names": "",
             "empirical_ratio": 4.0, "compression_error": 0.0, "speedup": 4.0}
            for s in (0, 1) for m, t, e in (("snip", 0.95, 0.08 + 0.01 * s), ("grasp", 0.90, 0.02 + 0.01 * s))]
    stats = cell_stats(pd.DataFrame(rows), "ece").set_index("method")
    assert stats.loc["grasp", "best"] and not stats.loc["snip", "best"]        # 2.5% < 8.5%
    assert stats.loc["grasp", "mean"] == pytest.approx(2.5)
    assert cell_stats(pd.DataFrame(rows), "top1").set_index("method").loc["snip", "best"]
    names = report_layout.output_names([("mnist", "lenet300")], ["lenet300"], {"metric": "ece"},
                                       ["dense", "snip", "grasp"], [1, 4])
    assert "tables/mnist_lenet300_ece.csv" in names["csv"] and "tables/mnist_lenet300_top1.csv" in names["csv"]
    paths = []
    for i, row in enumerate(rows):
        p = tmp_path / f"e{i}.parquet"
        pd.DataFrame([row]).to_parquet(p)
        record_checksum(p)
        paths.append(str(p))
    aggregate.run(paths, str(tmp_path / "all.parquet"), str(tmp_path / "reports"), report={"metric": "ece"})
    md = (tmp_path / "reports/tables/mnist_lenet300.md").read_text()
    assert md.index("Expected calibration error") < md.index("Top-1 accuracy")
    assert "| grasp | **2.50 ± 0.71 (2)** |" in md
    assert (tmp_path / "reports/tables/mnist_lenet300_ece.csv").exists()
