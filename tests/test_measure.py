"""Measured speed-ups that mean something (issue 27): the repeat-and-stop rule and what
the row records, on a fake clock (no timed assertion anywhere); the seeds-disagree mark;
the merge into the eval rows; and that the workflow times them with no other job left to
run (the job graph)."""

from __future__ import annotations

import math
import re
import statistics

import numpy as np
import pandas as pd
import pytest

from prunelib.foundations import eval_row
from prunelib.methods import slimming
from prunelib.report.aggregate import merge_speedups

from conftest import REPO, run


class FakeClock:
    """Seconds that pass only when a fake network runs."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_net(clock, costs, log, name):
    """A callable that advances ``clock`` by the next of ``costs`` (a number: always that)."""
    it = iter(costs) if not isinstance(costs, (int, float)) else None

    def f():
        clock.now += next(it) if it is not None else costs
        log.append(name)
    return f


def timing(**kw):
    return slimming.Timing(**{"min_repeats": 5, "max_repeats": 12, "target_spread": 0.1,
                              "min_sample_seconds": 0.5, "warmup": 0, **kw})


def speedup_of(dense_costs, pruned_costs, **kw):
    clock, log = FakeClock(), []
    out = slimming.paired_speedup(fake_net(clock, dense_costs, log, "D"), fake_net(clock, pruned_costs, log, "P"),
                                  timing(**kw), clock=clock)
    return out, log


def test_a_steady_ratio_stops_at_the_minimum_repeats_with_no_spread():
    out, _ = speedup_of(3.0, 1.0)
    assert out == {"median": 3.0, "iqr": 0.0, "repeats": 5}


def test_dense_and_pruned_alternate_which_goes_first():
    _, log = speedup_of(3.0, 1.0, warmup=1)
    # warm-up D P, one calibration sample of each, then repeats D P | P D | D P ...
    assert log[:4] == ["D", "P", "D", "P"]
    assert log[4:] == ["D", "P", "P", "D", "D", "P", "P", "D", "D", "P"]


def test_a_spread_that_never_comes_down_stops_at_the_cap_and_records_median_and_iqr():
    ratios = [1.0, 3.0] * 6
    out, _ = speedup_of([1.0, *ratios], 1.0)  # (the first dense call calibrates)
    assert out["repeats"] == 12
    q1, q3 = np.percentile(ratios, [25, 75])
    assert out["median"] == pytest.approx(statistics.median(ratios))
    assert out["iqr"] == pytest.approx(q3 - q1) and out["iqr"] > 0.1 * out["median"]


def test_repeats_stop_at_the_first_count_whose_iqr_is_small_enough():
    ratios = [5.0, 1.0, 3.0] + [2.0] * 20
    out, _ = speedup_of([1.0, *ratios], 1.0)
    iqr = [np.subtract(*np.percentile(ratios[:k], [75, 25])) for k in range(5, 12)]
    first = next(k for k, q in zip(range(5, 12), iqr) if q <= 0.1 * np.median(ratios[:k]))
    assert first == 9  # (the sequence was built for this: IQR 1, .75, .5, .25, then 0)
    assert out == {"median": 2.0, "iqr": 0.0, "repeats": 9}


def test_one_sample_runs_each_network_until_it_lasts_min_sample_seconds():
    _, log = speedup_of(0.001, 0.0005, min_sample_seconds=0.01, max_repeats=5)
    # calibration: n = 1, 2, ..., 32 calls of each (the pruned network's 32 x 0.5 ms is the
    # first sample of both to reach 10 ms); then 32 calls per sample
    calib = [name for n in (1, 2, 4, 8, 16, 32) for name in ["D"] * n + ["P"] * n]
    assert log[:len(calib)] == calib
    assert log[len(calib):len(calib) + 64] == ["D"] * 32 + ["P"] * 32
    assert len(log) == len(calib) + 5 * 64


def test_the_row_records_median_iqr_and_repeats_per_speedup(monkeypatch):
    import torch

    nn = torch.nn
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10))
    g = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(p.shape, generator=g) < 0.05 for n, p in model.named_parameters() if n.endswith("weight")}
    monkeypatch.setattr(slimming, "paired_speedup", lambda *a, **k: {"median": 2.5, "iqr": 0.25, "repeats": 7})
    data = {"test_x": torch.randint(0, 255, (8, 28, 28), dtype=torch.uint8), "test_y": torch.arange(8)}
    row = slimming.measure(model, masks, data, "mnist", "cpu", structured=False, timing=slimming.Timing())
    assert (row["measured_speedup_infer_sparse"], row["measured_speedup_infer_sparse_iqr"],
            row["measured_speedup_infer_sparse_repeats"]) == (2.5, 0.25, 7)
    untimed = slimming.measure(model, masks, data, "mnist", "cpu", structured=False)  # the eval stage's call
    assert all(math.isnan(untimed[c]) for c in eval_row.speedup_columns())
    assert untimed["sparse_layers"] == row["sparse_layers"] == "1,3"
    assert set(eval_row.speedup_columns()) <= set(eval_row.TIMING_COLUMNS)


@pytest.mark.parametrize("medians,iqrs,marked", [
    ([2.0, 2.1, 2.15], [0.1, 0.1, 0.1], False),    # every two bands overlap
    ([2.3, 10.07, 5.0], [0.2, 0.3, 0.2], True),    # issue 27's snip r=64 spread, with small IQRs
    ([2.0, 2.5], [0.25, 0.25], False),             # |Δ| = 0.5 = IQR_a + IQR_b: touching counts as agreeing
    ([2.0, 2.51], [0.25, 0.25], True),
    ([2.0, float("nan"), 9.0], [0.1, 0.1, float("nan")], False),  # NaN entries ignored
])
def test_seeds_disagree_when_their_median_plus_minus_iqr_bands_do_not_overlap(medians, iqrs, marked):
    assert eval_row.seeds_disagree(medians, iqrs) is marked


def test_aggregate_takes_the_speedups_of_the_measure_rule():
    key = {"dataset": "mnist", "arch": "lenet300", "method": "snip", "variant": "none"}
    rows = pd.DataFrame([{**key, "ratio": 4.0, "seed": s, "top1": 0.9, "measured_speedup_infer_sparse": math.nan,
                          "measure_device": "cpu (x, 1 threads)"} for s in (0, 1)])
    speed = pd.DataFrame([{**key, "ratio": 4.0, "seed": 1, "measured_speedup_infer_sparse": 3.0,
                           "measured_speedup_infer_sparse_iqr": 0.1, "measured_speedup_infer_sparse_repeats": 5,
                           "measure_device": "cpu (y, 1 threads)"}])
    out = merge_speedups(rows, speed).set_index("seed")
    assert out.loc[1, "measured_speedup_infer_sparse"] == 3.0 and out.loc[1, "measure_device"] == "cpu (y, 1 threads)"
    assert math.isnan(out.loc[0, "measured_speedup_infer_sparse"]) and out.loc[0, "top1"] == 0.9
    with pytest.raises(ValueError, match="measured twice"):
        merge_speedups(rows, pd.concat([speed, speed]))


def _graph(dot: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    nodes = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)', dot, re.M))
    edges = set(re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M))
    return nodes, edges


def test_the_workflow_leaves_no_job_to_run_beside_the_measure_job(tmp_path, snakemake_bin):
    """On the job graph of a grid with a foresight method, an IMP chain (whose round
    table only aggregate reads) and the dense control: every job is an ancestor of the
    one measure job or a descendant of it (aggregate, all), so none can be running while
    it runs; and it holds every core Snakemake has."""
    (tmp_path / "config.yaml").write_text(
        "preset: fast\ndevice: cpu\n"
        "grid: {archs: [lenet300], datasets: [mnist], methods: [snip, lth], ratios: [1, 4], seeds: [0]}\n")
    base = [snakemake_bin, "-s", REPO / "Snakefile", "--directory", tmp_path, "--cores", "3"]
    nodes, edges = _graph(run([*base, "--dag"]).stdout)
    (measure,) = [n for n, rule in nodes.items() if rule == "measure"]

    def closure(start, forward):
        seen, todo = set(), [start]
        while todo:
            n = todo.pop()
            for a, b in edges:
                nxt = b if forward else a
                if (a if forward else b) == n and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    before, after = closure(measure, False), closure(measure, True)
    assert {nodes[n] for n in after} == {"aggregate", "all"}
    assert {"eval", "train", "imp_rounds", "data"} <= {nodes[n] for n in before}
    assert before | after | {measure} == set(nodes)  # nothing runs beside it
    dry = run([*base, "-n"]).stdout
    block = dry[dry.index("rule measure:"):].split("\n\n")[0]
    assert re.search(r"^\s*threads: 3$", block, re.M)  # all of --cores


def test_a_table_cell_shows_the_median_with_its_spread_and_marks_disagreeing_seeds():
    from prunelib.report.tables import SEEDS_DISAGREE, measured_cell

    col = "measured_speedup_infer_sparse"
    agree = pd.DataFrame({col: [2.0, 2.1, 2.15], col + "_iqr": [0.1, 0.2, 0.1]})
    assert measured_cell(agree, col) == "2.10× (IQR 0.10)"
    apart = pd.DataFrame({col: [2.30, 10.07, 5.0], col + "_iqr": [0.2, 0.3, 0.2]})
    assert measured_cell(apart, col) == f"5.00× (IQR 0.20) {SEEDS_DISAGREE} [2.30–10.07]"
    assert measured_cell(pd.DataFrame({col: [2.0, 4.0]}), col) == "3.00×"  # rows without an IQR
    assert measured_cell(pd.DataFrame({col: [math.nan]}), col) == "—"
