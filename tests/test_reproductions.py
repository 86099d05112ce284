"""docs/reproductions.md: made by `prunelib reproductions write` from eval rows on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prunelib import config

from prunelib.foundations import paths
from prunelib.foundations.artifacts import read_parquet_rows

from prunelib.report import reproductions

from cells import run_cell

REPO = Path(__file__).resolve().parents[1]

SHORT = (("train", {"steps": 6, "train_subset": 300}), ("eval", {"every_steps": 3, "keep_last": 2}))


def _run_cell(root: Path, rep, s, method: str, ratio: float, seed: int, data_path) -> dict:
    """One cell through the stage functions, its eval row at the path Snakemake would use."""
    folder = root / paths.CELL.format(dataset=rep.dataset, arch=rep.arch, seed=seed, method=method,
                                      ratio=config.format_ratio(ratio), variant="")
    cell = run_cell(root, data_path, s, rep.arch, method, ratio, seed, dataset=rep.dataset, folder=folder)
    return read_parquet_rows(cell.eval)[0]


def test_the_table_reports_final_and_best_of_checkpoints_errors_from_the_eval_rows_and_names_what_is_missing(
        tmp_path, mnist_pt):
    rep = reproductions.Reproduction("snip_short", "snip", "lenet300", "snip", (20,), (0, 1), dense_seeds=(0,),
                                     paper="SNIP", paper_key="snip", overrides=SHORT)
    s = reproductions.settings_of(rep)
    assert s.init.scheme == "variance_scaling" and s.train.steps == 6  # the preset, shortened
    snip = _run_cell(tmp_path, rep, s, "snip", 20, 0, mnist_pt)
    dense = _run_cell(tmp_path, rep, s, "dense", 1, 0, mnist_pt)
    table = reproductions.rows(tmp_path, [rep])
    by_r = {}
    for row in table:
        by_r.setdefault(row["r (sparsity)"], []).append(row)
    # r = 10 is Table 3's (two inits), not run by this reproduction: shown, not run
    assert set(by_r) == {"1 (0%)", "20 (95%)", "10 (90%)", "50 (98%)"}
    assert by_r["50 (98%)"][0]["verdict"] == "not run (not among this reproduction's ratios)"
    assert all(r["verdict"].startswith("not run: κ = 90 %") for r in by_r["10 (90%)"])
    (row,) = by_r["20 (95%)"]
    assert row["seeds (time per seed)"].startswith("0 (n = 1); seed 1 not run")
    assert row["ours: final error %"] == f"{100 * (1 - snip['top1']):.2f} (n = 1)"
    best = 100 * (1 - snip['best_test_top1'])
    assert row["ours, paper's metric"] == f"{best:.2f} (n = 1)"
    assert row["paper"] == "1.6" and row["Δ"] == f"{best - 1.6:+.2f}"
    assert row["verdict"] == "no verdict (n = 1 < 3)"
    (d,) = by_r["1 (0%)"]
    assert d["method"] == "dense" and d["paper"] == "1.7"
    assert d["ours: final error %"].startswith(f"{100 * (1 - dense['top1']):.2f}")
    text = reproductions.write(tmp_path, tmp_path / "reproductions.md", [rep], study=False)
    assert (tmp_path / "reproductions.md").read_text() == text
    assert "| lenet300 | snip | 20 (95%) | snip Table 1 · test error % · runs not stated | 1.6 |" in text
    assert "`prunelib reproductions run snip_short`" in text and "**Verdict rule.**" in text
    assert f"* **snip_short** — SNIP, preset `snip`: {reproductions.protocol(rep)}." in text
    assert "checkpoints every 3 steps, last 2" in text


def test_a_row_made_with_other_settings_than_the_preset_now_states_is_shown_stale_not_counted(tmp_path, mnist_pt):
    made = reproductions.Reproduction("x", "snip", "lenet300", "snip", (20,), (0,), overrides=SHORT)
    _run_cell(tmp_path, made, reproductions.settings_of(made), "snip", 20, 0, mnist_pt)
    now = reproductions.Reproduction("x", "snip", "lenet300", "snip", (20,), (0,),
                                     overrides=(("train", {"steps": 7, "train_subset": 300}),) + SHORT[1:])
    (row,) = reproductions.rows(tmp_path, [now])
    assert row["ours: final error %"] == "—" and "seed 0 stale" in row["seeds (time per seed)"]


@pytest.mark.parametrize("paper, ours, std, runs, expected", [
    # one number: inside our range once read as its rounding interval (1.6 -> 1.55..1.65)
    (1.6, [1.56, 1.70, 1.80], None, None, "reproduced (inside our range 1.56–1.80)"),
    (1.6, [1.66, 1.70, 1.80], None, None, "not reproduced (ours higher: our range 1.66–1.80)"),
    (1.6, [1.64, 1.70, 1.80], None, None, "reproduced (inside our range 1.64–1.80)"),
    (2.4, [2.0, 2.1, 2.2], None, None, "not reproduced (ours lower: our range 2.00–2.20)"),
    # mean ± std over N runs: |m - paper| <= 2 sqrt(s²/n + s_p²/N)
    (1.91, [1.90, 2.00, 2.10], 0.10, 20, "reproduced (|Δ| ≤ 2 SE = 0.12)"),
    (1.91, [2.10, 2.20, 2.30], 0.10, 20, "not reproduced (ours higher; |Δ| > 2 SE = 0.12)"),
    # too few seeds, none, no paper value
    (1.6, [1.6, 1.6], None, None, "no verdict (n = 2 < 3)"),
    (1.6, [], None, None, "not run"),
    (None, [1.0, 1.1, 1.2], None, None, "no paper value"),
])
def test_the_verdict_rule_on_hand_made_rows(paper, ours, std, runs, expected):
    assert reproductions.verdict(paper, ours, std, runs) == expected


def test_the_rule_the_page_states_is_the_rule_the_rows_use():
    rule = reproductions.VERDICT_RULE
    assert "2 SE" in rule and "√(s²/n + s_p²/N)" in rule and "1.55 to\n  1.65" in rule and "n < 3" in rule


def test_the_paper_column_is_the_paper_values_file(tmp_path):
    """Every value of paper_values.yaml for a reproduction appears in its row, as typed
    there; and a changed file changes the table (nothing else holds a paper's number)."""
    book = reproductions.paper_values()
    table = reproductions.rows(tmp_path)  # no results: every row "not run", the paper column still there
    shown = [(r["_rep"], r["method"].partition("@")[0], r["r (sparsity)"].split()[0], r["paper"])
             for r in table]  # (an init arm's row is compared with its method's values)
    for v in book["values"]:
        reps = [rep for rep in reproductions.RUNS if v in reproductions.papers_for(rep, book["values"])]
        assert reps, v  # every typed value is shown by some reproduction
        cells = [p for name, m, r, p in shown
                 if (name, m, r) == (reps[0].name, v["method"], config.format_ratio(v["ratio"]))]
        if v["value"] is None:
            assert "— (" + v["missing"] + ")" in cells, v
        else:
            numbers = [[float(x) for x in c.split(" ± ")] for c in cells]
            assert [v["value"]] + ([v["std"]] if v.get("std") is not None else []) in numbers, (v, cells)
        assert v["value"] is not None or v.get("missing"), v  # an empty value says why
    edited = yaml.safe_load(reproductions.PAPER_VALUES.read_text())
    edited["values"][1]["value"] = 9.99
    other = tmp_path / "values.yaml"
    other.write_text(yaml.safe_dump(edited, allow_unicode=True))
    rows = reproductions.rows(tmp_path, [reproductions.get("snip_lenet300")], values_path=other)
    assert [r["paper"] for r in rows if r["r (sparsity)"] == "20 (95%)"] == ["9.99"]


def test_the_checked_in_page_matches_the_runs_and_presets_as_they_are_now():
    """docs/reproductions.md is regenerated from results; its protocols and commands must
    be those the runs and presets give now (a preset edited after the runs makes this
    fail until the page is regenerated)."""
    text = (REPO / reproductions.DOC).read_text()
    groups = reproductions.protocol_groups()
    for (paper, preset, proto, _), reps in groups.items():
        names = ", ".join(f"**{rep.name}**" for rep in reps)
        assert f"* {names} — {paper}, preset `{preset}`: {proto}." in text
        for rep in reps:
            assert f"`{rep.command()}`" in text
    # runs that differ only in network or dataset share an entry; the protocols do not
    assert len(groups) < len(reproductions.RUNS)
    assert len({(paper, preset, proto) for paper, preset, proto, _ in groups}) == len(groups)
    assert reproductions.VERDICT_RULE in text and "## The 2022 foresight-pruning study" in text


def test_every_reproduction_is_a_valid_config_and_names_cells_of_its_grid():
    for rep in reproductions.RUNS:
        s = reproductions.settings_of(rep)
        grid_cells = {(c.arch, c.method, float(c.ratio), int(c.seed)) for c in config.cells(s)}
        for ratio, seed, path in rep.cells():
            cell = paths.parse_cell(Path(path).parent)
            assert (cell["arch"], cell["method"], float(cell["ratio"]), int(cell["seed"])) in grid_cells, path


def test_unknown_reproduction_is_one_line():
    with pytest.raises(SystemExit, match="unknown run 'nope'; allowed: snip_lenet300"):
        reproductions.get("nope")


def test_the_time_per_seed_is_the_sum_of_a_seeds_benchmarks_averaged_over_seeds(tmp_path):
    rep = reproductions.get("snip_lenet300")
    header = "s\th:m:s\tmax_rss\n"
    for seed, (score, train) in {0: (2.0, 100.0), 1: (4.0, 200.0)}.items():
        for stage, ident, secs in (("score", f"mnist/lenet300/seed{seed}/snip", score),
                                   ("mask", f"mnist/lenet300/seed{seed}/snip/r20", 1.0),
                                   ("train", f"mnist/lenet300/seed{seed}/snip/r20", train),
                                   ("eval", f"mnist/lenet300/seed{seed}/snip/r20", 3.0)):
            f = tmp_path / paths.benchmark(stage, ident)
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(header + f"{secs}\t0:00:00\t1\n")
    assert reproductions.seconds_per_seed(tmp_path, rep, "snip", 20, [0, 1]) == pytest.approx((106 + 208) / 2)
    assert reproductions.seconds_per_seed(tmp_path, rep, "snip", 20, [2]) is None  # no benchmark: no time


def _bench(root, stage, ident, secs):
    f = root / paths.benchmark(stage, ident)
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(f"s\th:m:s\tmax_rss\n{secs}\t0:00:00\t1\n")


def test_an_imp_chains_seed_costs_its_rounds_and_a_variant_row_only_its_own_jobs(tmp_path):
    """lth_mnist's chain reaches r = 25 in round 15: the lth row's time is rounds 0..15 plus
    the cell's mask, train and eval; a variant's row is its own three jobs."""
    rep = reproductions.get("lth_mnist")
    chain = "mnist/mlp400x3/seed0/lth"
    for j in range(17):  # a round 16 on disk (another grid's) is not this row's
        _bench(tmp_path, "imp", f"{chain}/round{j}", 10.0)
    for stage in ("mask", "train", "eval"):
        _bench(tmp_path, stage, f"{chain}/r25", 1.0)
        _bench(tmp_path, stage, f"{chain}/r25-reinit", 2.0)
    assert reproductions.seconds_per_seed(tmp_path, rep, "lth", 25, [0]) == pytest.approx(16 * 10 + 3)
    assert reproductions.seconds_per_seed(tmp_path, rep, "lth", 25, [0], "reinit") == pytest.approx(6)
    kept = reproductions.page_paths([rep], with_study=False)
    assert paths.benchmark("imp", f"{chain}/round15") in kept
    assert paths.benchmark("imp", f"{chain}/round16") not in kept


def test_the_variant_checks_pair_by_seed_and_class_by_two_standard_errors(monkeypatch):
    rep = reproductions.get("lth_mnist")
    top1 = {"none": [0.98, 0.97, 0.98], "reinit": [0.97, 0.96, 0.97],  # +1.00 points every seed
            "shuffle_layer": [0.99, 0.96, 0.98], "shuffle_weights": [0.98], "invert": []}

    def fake(root, rep_, s, ratio, variant):
        return [{"seed": k, "top1": v} for k, v in enumerate(top1[variant])], [], [], []

    monkeypatch.setattr(reproductions, "_cells_of", fake)
    text = "\n".join(reproductions.variant_checks(Path("."), [rep]))  # _cells_of faked: no root read
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "+1.00 ± 0.00 | higher error |" in rows["reinit"] and rows["reinit"].endswith(": agrees |")
    assert "| tie |" in rows["shuffle_layer"]  # +0.00 on average, spread both ways
    assert "n = 1 < 3: no class" in rows["shuffle_weights"]
    assert "| not run |" in rows["invert"]


def test_a_row_whose_seeds_all_failed_says_so_once_and_gives_no_verdict(tmp_path, mnist_pt):
    """A protocol that diverges (as SNIP's lr 0.1 does for the dense LeNet-5-Caffe) is a
    result to show: its seeds failed, with the reason once, never "not run"."""
    rep = reproductions.Reproduction("diverges", "snip", "lenet300", "snip", (20,), (), dense_seeds=(0, 1),
                                     paper="SNIP", paper_key="snip",
                                     overrides=(("train", {"steps": 6, "train_subset": 300, "lr": 1e6}),) + SHORT[1:])
    s = reproductions.settings_of(rep)
    rows = [_run_cell(tmp_path, rep, s, "dense", 1, seed, mnist_pt) for seed in (0, 1)]
    assert [r["status"] for r in rows] == ["failed", "failed"] and rows[0]["reason"] == rows[1]["reason"]
    (dense,) = [r for r in reproductions.rows(tmp_path, [rep]) if r["method"] == "dense"]
    assert dense["verdict"] == "no verdict: seeds 0, 1 failed"
    assert dense["seeds (time per seed)"].startswith(f"none; seeds 0, 1 failed: {rows[0]['reason']}")
    assert dense["ours: final error %"] == "—"


def test_an_init_arm_is_compared_with_its_paired_reproduction_seed_by_seed(tmp_path, mnist_pt, monkeypatch):
    """The arm (SNIP's first-release biases) and the reproduction it is paired with: the
    page's difference is the mean over shared seeds of their errors' difference, and the
    arm's rows are compared with the method's Table 1 values."""
    arm = {"init": {"arms": {"b": {"scheme": "variance_scaling_with_biases"}}}}
    base = reproductions.Reproduction("base", "snip", "lenet300", "snip", (20,), (0, 1), paper="SNIP",
                                      paper_key="snip", overrides=SHORT, tables=("Table 1",))
    with_arm = reproductions.Reproduction("armed", "snip", "lenet300", "snip@b", (20,), (0, 1), paper="SNIP",
                                          paper_key="snip", overrides=SHORT + tuple(arm.items()),
                                          tables=("Table 1",), paired_with="base")
    monkeypatch.setattr(reproductions, "RUNS", (base, with_arm))
    got = {}
    for rep in (base, with_arm):
        s = reproductions.settings_of(rep)
        got[rep.name] = [_run_cell(tmp_path, rep, s, rep.method, 20, seed, mnist_pt) for seed in (0, 1)]
    assert got["armed"][0]["init_scheme"] == "variance_scaling_with_biases"
    d = [100 * (b["top1"] - a["top1"]) for a, b in zip(got["armed"], got["base"])]
    assert abs(sum(d)) >= 0.01  # (else a flipped sign would pass unseen)
    se = (sum((x - sum(d) / 2) ** 2 for x in d) / 1) ** 0.5 / 2 ** 0.5
    lines = reproductions.paired_checks(tmp_path, (base, with_arm))
    assert "| 20 | final | 2 | " + f"{sum(d) / 2:+.2f} ± {se:.2f} | n = 2 < 3: no class |" in lines
    best = [100 * (b["best_test_top1"] - a["best_test_top1"]) for a, b in zip(got["armed"], got["base"])]
    assert any(line.startswith(f"| 20 | paper's metric | 2 | {sum(best) / 2:+.2f} ± ") for line in lines)
    # an arm differs in its init only: pairing it with another protocol is refused
    other = reproductions.Reproduction("other", "snip", "lenet300", "snip@b", (20,), (0, 1), paper="SNIP",
                                       paper_key="snip", overrides=SHORT + tuple(arm.items())
                                       + (("train", {"steps": 7, "train_subset": 300}),), paired_with="base")
    with pytest.raises(ValueError, match="must differ from it in init only"):
        reproductions.paired_checks(tmp_path, (base, other))
    rows = reproductions.rows(tmp_path, [with_arm])
    assert {(r["method"], r["r (sparsity)"], r["paper"]) for r in rows} == {
        ("snip@b", "20 (95%)", "1.6"), ("snip@b", "50 (98%)", "2.4")}


def test_the_dense_lenet5_caffe_note_says_what_its_benchmark_output_says():
    """The page's reason for the failed LeNet-5-Caffe dense control is typed in
    reproductions.py; it must agree with the output of the script it cites, line by line
    (lr, momentum, seed: diverged or finite)."""
    note = reproductions.get("snip_lenet5_caffe").note
    assert reproductions.DENSE_LR_OUTPUT in note
    text = (REPO / reproductions.DENSE_LR_OUTPUT).read_text()
    outcome = {}
    for line in text.splitlines():
        if line.startswith("lenet5_caffe lr "):
            head, result = line.split(": ", 1)
            _, _, lr, _, momentum, _, seed = head.split()
            outcome.setdefault((float(lr), float(momentum)), set()).add(result.split(":")[0])
    assert all(len(seeds) == 1 for seeds in outcome.values())  # every seed alike, as the note says
    said = {(0.1, 0.9): "diverged", (0.1, 0.0): "diverged", (0.05, 0.9): "diverged",
            (0.02, 0.9): "finite", (0.01, 0.9): "finite"}
    assert {k: v.pop() for k, v in outcome.items()} == said
    assert text.count("lenet5_caffe lr ") == 3 * len(said)  # the 3 seeds the note names
    for said_in_note in ("diverges at lr 0.1 with momentum 0.9", "and without momentum", "and at 0.05;",
                         "it trains at 0.02 and 0.01", "3 seeds"):
        assert said_in_note in note


def test_each_reproduction_is_compared_with_the_paper_values_of_its_own_protocol():
    """Table 1's LeNet-300-100 run is not compared with Table 3's VS-X row (its own run
    is), an init arm of SNIP with SNIP's Table 1, and the signal-propagation arms (not the
    paper's protocol) with no value at all."""
    values = reproductions.paper_values()["values"]

    def where(name):
        return {(v["where"], v["method"], v["ratio"]) for v in reproductions.papers_for(reproductions.get(name), values)}

    assert ("Table 3, VS-X", "snip", 10) not in where("snip_lenet300")
    assert where("snip_lenet300_table3") == {("Table 3, VS-X", "snip", 10)}
    assert where("snip_lenet300_bias_init") == {("Table 1", "snip", 20), ("Table 1", "snip", 50)}
    for arm in ("orth", "vs"):
        assert where(f"sigprop_mnist_mlp7_linear_{arm}") == set()
