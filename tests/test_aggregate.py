"""Tables checked against values computed by hand from small eval rows."""


import pandas as pd
import pytest

from prunelib.report import aggregate
from prunelib.foundations.artifacts import record_checksum


def _rows():
    rows = []
    for seed, (d, s4, s16) in enumerate([(0.98, 0.90, 0.50), (0.96, 0.92, 0.70), (0.97, 0.94, 0.60)]):
        rows.append({"dataset": "mnist", "arch": "lenet5", "method": "dense", "ratio": 1.0, "seed": seed,
                     "top1": d, "top5": 1.0})
        rows.append({"dataset": "mnist", "arch": "lenet5", "method": "snip", "ratio": 4.0, "seed": seed,
                     "top1": s4, "top5": 0.99})
        rows.append({"dataset": "mnist", "arch": "lenet5", "method": "snip", "ratio": 16.0, "seed": seed,
                     "top1": s16, "top5": 0.95})
    rows.append({"dataset": "mnist", "arch": "lenet5", "method": "random", "ratio": 4.0, "seed": 0,
                 "top1": 0.8, "top5": 0.97})
    return pd.DataFrame(rows)


def test_cell_is_mean_sample_std_and_n():
    assert aggregate.fmt_cell([0.90, 0.92, 0.94]) == "92.00 ± 2.00 (3)"      # std with n - 1
    assert aggregate.fmt_cell([0.50, 0.70, 0.60]) == "60.00 ± 10.00 (3)"
    assert aggregate.fmt_cell([0.8]) == "80.00 ± – (1)"
    assert aggregate.fmt_cell([]) == ""


def test_blalock_table_layout():
    t = aggregate.blalock_table(_rows(), "top1")
    assert list(t.index) == ["dense", "random", "snip"]          # dense first, then registry order
    assert list(t.columns) == ["r=1", "r=4", "r=16"]
    assert t.loc["dense", "r=1"] == "97.00 ± 1.00 (3)"
    assert t.loc["snip", "r=4"] == "92.00 ± 2.00 (3)"
    assert t.loc["random", "r=4"] == "80.00 ± – (1)"
    assert t.loc["random", "r=16"] == "—"


def test_run_writes_tables_and_figures(tmp_path):
    paths = []
    for i, row in _rows().iterrows():
        p = tmp_path / f"e{i}.parquet"
        pd.DataFrame([row]).to_parquet(p)
        record_checksum(p)
        paths.append(str(p))
    aggregate.run(paths, str(tmp_path / "all.parquet"), str(tmp_path / "reports"))
    assert len(pd.read_parquet(tmp_path / "all.parquet")) == 10
    md = (tmp_path / "reports/tables/mnist_lenet5.md").read_text()
    # r=4: snip's 92 (3 seeds) beats random's 80, but random has one seed: not separable, so
    # both are "tied for best" (italics); r=16: snip alone, 3 seeds, above chance: bold
    assert "| snip | — | *92.00 ± 2.00 (3)* | **60.00 ± 10.00 (3)** |" in md
    assert "| random | — | *80.00 ± – (1)* | — |" in md
    csv = pd.read_csv(tmp_path / "reports/tables/mnist_lenet5_top1.csv", index_col=0)
    assert csv.loc["snip", "r=4"] == "92.00 ± 2.00 (3)"          # wide CSV: plain cells
    tex = (tmp_path / "reports/tables/mnist_lenet5_top1.tex").read_text()
    assert r"\textit{92.00 $\pm$ 2.00 (3)}" in tex and r"\textbf{60.00 $\pm$ 10.00 (3)}" in tex
    assert r"\begin{tabular}{lrrr}" in tex
    assert (tmp_path / "reports/figures/mnist_lenet5_accuracy.png").stat().st_size > 10_000
    assert (tmp_path / "reports/figures/mnist_lenet5_accuracy.svg").exists()


# --- marks, collapse flags, the study layout, compression and collapse tables -------------

def _marked_rows():
    """r=4: global_magnitude (mean 90, s 2, n 3), layer_magnitude (88.5, s 0, n 2), snip
    (87.9, n 2), random (95, one seed).  r=16: snip collapses fc3 in one of its two seeds."""
    rows = []
    def add(method, ratio, seed, top1, collapsed=""):
        rows.append({"dataset": "mnist", "arch": "lenet5", "method": method, "ratio": ratio, "seed": seed,
                     "top1": top1, "top5": 0.99, "collapsed_layers": len(collapsed.split(",")) if collapsed else 0,
                     "collapsed_names": collapsed, "empirical_ratio": ratio * (1 + 0.01 * seed),
                     "compression_error": 0.01 * seed, "speedup": ratio * 1.5})
    for seed, v in enumerate([0.88, 0.90, 0.92]):
        add("global_magnitude", 4.0, seed, v)
    for seed, v in enumerate([0.885, 0.885]):
        add("layer_magnitude", 4.0, seed, v)
    for seed, v in enumerate([0.878, 0.880]):
        add("snip", 4.0, seed, v)
    add("random", 4.0, 0, 0.95)  # one seed, best mean: no std, so only exact ties count
    add("dense", 1.0, 0, 0.99)
    add("snip", 16.0, 0, 0.5, "fc3.weight")
    add("snip", 16.0, 1, 0.7)
    add("global_magnitude", 16.0, 0, 0.4)
    return pd.DataFrame(rows)


def _stat(stats, method, ratio):
    return stats[(stats.method == method) & (stats.ratio == ratio)].iloc[0]


def test_best_is_bold_only_where_separable_by_the_combined_standard_error():
    df = _marked_rows()
    df = df[df.method != "random"]
    stats = aggregate.cell_stats(df, "top1")
    best = _stat(stats, "global_magnitude", 4.0)
    assert (best["mean"], best["std"], best["n"]) == pytest.approx((90.0, 2.0, 3))   # sample std, n - 1
    # 90 - 88.5 = 1.5 > sqrt(2^2/3 + 0^2/2) = 1.155; 90 - 87.9 = 2.1 > sqrt(4/3 + 0.0002/2)
    assert best["best"] and not best["tied_best"]
    for m in ("layer_magnitude", "snip"):
        assert not _stat(stats, m, 4.0)["best"] and not _stat(stats, m, 4.0)["tied_best"]
    assert not _stat(stats, "dense", 1.0)["best"]             # the reference is never marked
    t = aggregate.blalock_table(df, "top1", "md")
    assert t.loc["global_magnitude", "r=4"] == "**90.00 ± 2.00 (3)**"
    assert t.loc["layer_magnitude", "r=4"] == "88.50 ± 0.00 (2)"
    assert t.loc["snip", "r=4"] == "87.90 ± 0.14 (2)"
    assert t.loc["dense", "r=1"] == "99.00 ± – (1)"
    # a leader within the combined standard error of the runner-up is not separable
    close = df.copy()
    close.loc[close.method == "layer_magnitude", "top1"] = [0.89, 0.89]     # 90 - 89 = 1 < 1.155
    stats = aggregate.cell_stats(close, "top1")
    assert not stats["best"].any()
    assert _stat(stats, "global_magnitude", 4.0)["tied_best"] and _stat(stats, "layer_magnitude", 4.0)["tied_best"]
    assert not _stat(stats, "snip", 4.0)["tied_best"]                       # 90 - 87.9 = 2.1 > 1.155
    assert aggregate.blalock_table(close, "top1", "md").loc["layer_magnitude", "r=4"] == "*89.00 ± 0.00 (2)*"


def test_single_seed_is_never_bold():
    stats = aggregate.cell_stats(_marked_rows(), "top1")
    r4 = stats[stats.ratio == 4.0].set_index("method")
    assert not r4["best"].any()                                  # random's 95 rests on one seed
    assert r4.loc[["random", "global_magnitude", "layer_magnitude", "snip"], "tied_best"].all()
    alone = aggregate.cell_stats(_marked_rows().query("method == 'random' or method == 'dense'"), "top1")
    assert not alone["best"].any() and not alone["tied_best"].any()   # one method, one seed: nothing to mark


def _tie_rows(values, ratio=64.0):
    """Four methods on MNIST (10 classes), three seeds each, every seed of a method at
    ``values[method]`` (top-1 and top-5 alike)."""
    return pd.DataFrame([{"dataset": "mnist", "arch": "lenet300", "method": m, "ratio": ratio, "seed": s,
                          "top1": v, "top5": v, "status": "ok"}
                         for m, v in values.items() for s in range(3)])


def test_best_is_not_marked_on_a_tie():
    tie = _tie_rows({"snip": 0.95, "grasp": 0.95, "synflow": 0.95, "random": 0.90})
    stats = aggregate.cell_stats(tie, "top1").set_index("method")
    assert not stats["best"].any()
    assert sorted(stats.index[stats["tied_best"]]) == ["grasp", "snip", "synflow"]
    t = aggregate.blalock_table(tie, "top1", "md")
    assert not any(c.startswith("**") for c in t.to_numpy().ravel())
    assert t.loc["snip", "r=64"] == "*95.00 ± 0.00 (3)*" and t.loc["random", "r=64"] == "90.00 ± 0.00 (3)"
    assert "[best]" not in "".join(aggregate.blalock_table(tie, "top1", "csv").to_numpy().ravel())
    assert "<b>" not in "".join(aggregate.blalock_table(tie, "top1", "html").to_numpy().ravel())
    # the same with one method ahead by more than the combined standard error: bold again
    ahead = _tie_rows({"snip": 0.96, "grasp": 0.95, "synflow": 0.95, "random": 0.90})
    assert aggregate.blalock_table(ahead, "top1", "md").loc["snip", "r=64"] == "**96.00 ± 0.00 (3)**"


def test_best_is_not_marked_at_chance():
    # the case: a four-way tie at 7.78 ± 0.00 on a 10-class dataset
    chance = _tie_rows({"snip": 0.0778, "grasp": 0.0778, "synflow": 0.0778, "random": 0.0778})
    for metric in ("top1", "top5"):
        stats = aggregate.cell_stats(chance, metric)
        assert not stats["best"].any() and not stats["tied_best"].any()
    # separable, but within 1/C of chance (top-1 chance 10%, ceiling 20% on MNIST): no mark
    near = _tie_rows({"snip": 0.19, "grasp": 0.1135, "synflow": 0.1135, "random": 0.098})
    stats = aggregate.cell_stats(near, "top1")
    assert not stats["best"].any() and not stats["tied_best"].any()
    assert not any("*" in c for c in aggregate.blalock_table(near, "top1", "md").to_numpy().ravel())
    # top-5 chance on MNIST is 50%, its ceiling 60%: 0.19 is at chance there too
    assert not aggregate.cell_stats(near, "top5")["best"].any()
    # above the ceiling the same separable leader is bold
    above = _tie_rows({"snip": 0.21, "grasp": 0.1135, "synflow": 0.1135, "random": 0.098})
    assert aggregate.cell_stats(above, "top1").set_index("method").loc["snip", "best"]
    from prunelib.report import stats as report_stats

    assert report_stats.chance_ceiling("top1", 10) == pytest.approx(20.0)
    assert report_stats.chance_ceiling("top5", 10) == pytest.approx(60.0)
    assert report_stats.chance_ceiling("top1", 100) == pytest.approx(2.0)
    assert report_stats.chance_ceiling("ece", 10) is None
    assert report_stats.chance_ceiling("top1", None) is None


def test_separable_is_the_welch_type_rule():
    from prunelib.report.stats import separable

    assert separable(90.0, 2.0, 3, 88.5, 0.0, 2)                # 1.5 > 1.1547
    assert not separable(90.0, 2.0, 3, 89.0, 0.0, 2)            # 1.0 < 1.1547
    assert not separable(90.0, 0.0, 3, 90.0, 0.0, 3)            # a tie never separates
    assert not separable(99.0, 0.0, 1, 10.0, 0.0, 3)            # one seed: no standard error
    assert separable(90.0, 0.0, 2, 89.99, 0.0, 2)               # zero spread: any difference


def test_collapse_flag_in_every_format():
    df = _marked_rows()
    stats = aggregate.cell_stats(df, "top1")
    sn = _stat(stats, "snip", 16.0)
    assert (sn["collapsed_seeds"], sn["seeds"]) == (1, 2)
    # snip 60 (2 seeds) against global_magnitude's single seed: not separable, tied for best
    assert aggregate.render(sn, "md") == "*60.00 ± 14.14 (2)* †"
    assert aggregate.render(sn, "csv") == "60.00 ± 14.14 (2) [tied best] [collapsed 1/2]"
    assert aggregate.render(sn, "tex").endswith(r"$^\dagger$")
    gm = _stat(stats, "global_magnitude", 16.0)
    assert aggregate.render(gm, "md") == "*40.00 ± – (1)*"     # one seed: not separable from 60


def test_study_layout_compression_and_collapse_tables():
    df = _marked_rows()
    assert aggregate.default_table_ratios([1, 4, 16, 32, 64]) == [32.0, 64.0]
    assert aggregate.default_table_ratios([1, 4, 16]) == [4.0, 16.0]
    t = aggregate.study_table(df, [4.0, 16.0], "plain")
    assert list(t.columns) == ["r=4 mnist top-5", "r=4 mnist top-1", "r=16 mnist top-5", "r=16 mnist top-1"]
    assert list(t.index)[0] == "dense" and t.loc["dense", "r=16 mnist top-1"] == "99.00 ± – (1)"
    assert t.loc["snip", "r=16 mnist top-1"] == "60.00 ± 14.14 (2)"
    comp = aggregate.compression_table(df)
    row = comp[(comp.index == "snip") & (comp["r"] == "16")].iloc[0]
    assert row["r_e"] == f"{(16 + 16 * 1.01) / 2:.3f}" and row["error % (mean)"] == "+0.500"
    assert row["max abs error %"] == "1.000" and row["speed-up (MACs)"] == "24.00×"
    coll = aggregate.collapse_table(df)
    assert coll.reset_index().to_dict("records") == [
        {"method": "snip", "r": "16", "layer": "fc3.weight", "seeds collapsed": "1/2"}]


def test_report_choices_defaults_and_overrides():
    ch = aggregate.report_choices(None, ["dense", "random", "snip"], [1, 4, 16])
    assert ch == {"metric": "top1", "heatmap_ratio": 16.0, "curves": {"method": "snip", "ratio": 16.0},
                  "table_ratios": [4.0, 16.0]}
    ch = aggregate.report_choices({"heatmap_ratio": 4, "curves": {"method": None, "ratio": 4}},
                                  ["dense", "random", "lamp"], [1, 4, 16, 32, 64])
    assert ch["heatmap_ratio"] == 4.0 and ch["curves"] == {"method": "random", "ratio": 4.0}
    assert ch["table_ratios"] == [32.0, 64.0]


def test_run_writes_exactly_the_declared_outputs(tmp_path):
    df = _marked_rows()
    paths = []
    for i, row in df.iterrows():
        cell = tmp_path / f"c{i}"
        cell.mkdir()
        pd.DataFrame([row]).to_parquet(cell / "eval.parquet")
        kept = 0 if row["collapsed_names"] else 10
        pd.DataFrame({"name": ["conv1.weight", "fc3.weight"], "numel": [100, 40],
                      "kept": [25, kept]}).to_parquet(cell / "mask.parquet")
        pd.DataFrame({"epoch": [1, 2], "train_loss": [0.5, 0.3], "train_top1": [0.8, 0.9]}).to_parquet(
            cell / "train_log.parquet")
        for name in ("eval.parquet", "mask.parquet", "train_log.parquet"):  # aggregate reads only verified bytes
            record_checksum(cell / name)
        paths.append(str(cell / "eval.parquet"))
    aggregate.run(paths, str(tmp_path / "all.parquet"), str(tmp_path / "reports"), config={"report": {}})
    expected = aggregate.output_names([("mnist", "lenet5")], ["lenet5"], {},
                                      df["method"].unique(), df["ratio"].unique())
    for kind, names in expected.items():
        for name in names:
            assert (tmp_path / "reports" / name).stat().st_size > 0, name
    assert (tmp_path / "reports/config.yaml").exists()
    assert (tmp_path / "reports/figures/mnist_lenet5_density_r16.png").stat().st_size > 10_000
    cells = pd.read_csv(tmp_path / "reports/tables/mnist_lenet5_cells.csv")
    snip16 = cells[(cells.method == "snip") & (cells.ratio == 16) & (cells.metric == "top1")].iloc[0]
    assert snip16["tied_best"] and not snip16["best"] and snip16["collapsed_seeds"] == 1
    md = (tmp_path / "reports/tables/mnist_lenet5.md").read_text()
    assert "| snip | 16 | fc3.weight | 1/2 |" in md
    html = (tmp_path / "reports/tables/mnist_lenet5.html").read_text()
    assert "<i>95.00 ± – (1)</i>" in html and "<b>" not in html    # random's 95 rests on one seed
    assert "<div class='scroll'><table>" in html                    # wide tables scroll inside the page


def test_variants_sit_under_their_method_are_never_best_and_show_their_difference():
    rows = _rows().assign(variant="none")
    extra = []
    for seed, (sl, inv) in enumerate([(0.95, 0.2), (0.97, 0.3), (0.96, 0.1)]):
        extra += [{"dataset": "mnist", "arch": "lenet5", "method": "snip", "variant": "shuffle_layer",
                   "ratio": 4.0, "seed": seed, "top1": sl, "top5": 1.0},
                  {"dataset": "mnist", "arch": "lenet5", "method": "snip", "variant": "invert",
                   "ratio": 4.0, "seed": seed, "top1": inv, "top5": 0.5}]
    df = pd.concat([rows, pd.DataFrame(extra)], ignore_index=True)
    df["method"] = [aggregate.method_label(m, v) for m, v in zip(df["method"], df["variant"])]
    t = aggregate.blalock_table(df, "top1")
    assert list(t.index) == ["dense", "random", "snip", "snip (shuffle_layer)", "snip (invert)"]
    stats = aggregate.cell_stats(df, "top1")
    r4 = stats[stats["ratio"] == 4.0].set_index("method")
    # shuffle_layer's 96% beats snip's 92%, but a variant is a reference, not a contender (snip is
    # tied with random's single seed)
    assert r4.loc["snip", "tied_best"] and r4.loc["random", "tied_best"]
    assert not r4.loc[["snip (shuffle_layer)", "snip (invert)"], ["best", "tied_best"]].any().any()
    v = aggregate.variants_table(df, "top1")
    assert list(v.index) == ["snip"] and list(v.columns) == ["r=4 none", "r=4 shuffle_layer", "r=4 invert"]
    assert v.loc["snip", "r=4 none"] == "92.00 ± 2.00 (3)"
    assert v.loc["snip", "r=4 shuffle_layer"] == "96.00 ± 1.00 (3) [+4.00]"
    assert v.loc["snip", "r=4 invert"] == "20.00 ± 10.00 (3) [-72.00]"


def test_imp_rounds_table_is_mean_std_n_per_round_with_failures_counted():
    rows = []
    for seed, accs in enumerate([(0.97, 0.98, 0.96), (0.99, 0.96, None)]):
        for j, (d, acc) in enumerate(zip((1.0, 0.8, 0.64), accs)):
            rows.append({"dataset": "mnist", "arch": "mlp400x3", "method": "lth", "seed": seed, "round": j,
                         "density": d, "ratio": 1 / d, "top1": acc if acc is not None else float("nan"),
                         "top5": 1.0, "status": "ok" if acc is not None else "failed"})
    t = aggregate.imp_rounds_table(pd.DataFrame(rows))
    assert list(t["round"]) == [0, 1, 2] and list(t["weights remaining (%)"]) == ["100.00", "80.00", "64.00"]
    assert list(t["r"]) == ["1", "1.25", "1.5625"]
    assert t["top-1"].iloc[0] == "98.00 ± 1.41 (2)"
    assert t["top-1"].iloc[2] == "96.00 ± – (1) [failed 1/2]"
