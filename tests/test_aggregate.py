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
    # snip is the best pruning method at r=4 (92 > 80) and the only one at r=16
    assert "| snip | — | **92.00 ± 2.00 (3)** | **60.00 ± 10.00 (3)** |" in md
    csv = pd.read_csv(tmp_path / "reports/tables/mnist_lenet5_top1.csv", index_col=0)
    assert csv.loc["snip", "r=4"] == "92.00 ± 2.00 (3)"          # wide CSV: plain cells
    tex = (tmp_path / "reports/tables/mnist_lenet5_top1.tex").read_text()
    assert r"\textbf{92.00 $\pm$ 2.00 (3)}" in tex and r"\begin{tabular}{lrrr}" in tex
    assert (tmp_path / "reports/figures/mnist_lenet5_accuracy.png").stat().st_size > 10_000
    assert (tmp_path / "reports/figures/mnist_lenet5_accuracy.svg").exists()


# --- marks, collapse flags, the study layout, compression and collapse tables -------------

def _marked_rows():
    """r=4: a (mean 90, s 2, n 3) best; b (88.5) within 2 of it; c (87.9) outside; d one seed.
    r=16: c collapses fc3 in one of its two seeds."""
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


def test_best_and_within_one_std_of_the_best():
    df = _marked_rows()
    df = df[df.method != "random"]
    stats = aggregate.cell_stats(df, "top1")
    best = _stat(stats, "global_magnitude", 4.0)
    assert (best["mean"], best["std"], best["n"]) == pytest.approx((90.0, 2.0, 3))   # sample std, n - 1
    assert best["best"] and not best["within_one_std"]
    lm = _stat(stats, "layer_magnitude", 4.0)
    assert lm["within_one_std"] and not lm["best"]            # 88.5 >= 90 - 2
    sn = _stat(stats, "snip", 4.0)
    assert sn["mean"] == pytest.approx(87.9) and not sn["within_one_std"] and not sn["best"]   # 87.9 < 88
    assert not _stat(stats, "dense", 1.0)["best"]             # the reference is never marked
    t = aggregate.blalock_table(df, "top1", "md")
    assert t.loc["global_magnitude", "r=4"] == "**90.00 ± 2.00 (3)**"
    assert t.loc["layer_magnitude", "r=4"] == "*88.50 ± 0.00 (2)*"
    assert t.loc["snip", "r=4"] == "87.90 ± 0.14 (2)"
    assert t.loc["dense", "r=1"] == "99.00 ± – (1)"


def test_single_seed_best_has_no_band():
    stats = aggregate.cell_stats(_marked_rows(), "top1")
    assert _stat(stats, "random", 4.0)["best"]
    assert not stats[(stats.ratio == 4.0)]["within_one_std"].any()   # band 0: only exact ties


def test_collapse_flag_in_every_format():
    df = _marked_rows()
    stats = aggregate.cell_stats(df, "top1")
    sn = _stat(stats, "snip", 16.0)
    assert (sn["collapsed_seeds"], sn["seeds"]) == (1, 2)
    assert aggregate.render(sn, "md") == "**60.00 ± 14.14 (2)** †"
    assert aggregate.render(sn, "csv") == "60.00 ± 14.14 (2) [best] [collapsed 1/2]"
    assert aggregate.render(sn, "tex").endswith(r"$^\dagger$")
    gm = _stat(stats, "global_magnitude", 16.0)
    assert aggregate.render(gm, "md") == "40.00 ± – (1)"       # 40 < 60 - 14.14


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
    assert snip16["best"] and snip16["collapsed_seeds"] == 1
    md = (tmp_path / "reports/tables/mnist_lenet5.md").read_text()
    assert "| snip | 16 | fc3.weight | 1/2 |" in md
    html = (tmp_path / "reports/tables/mnist_lenet5.html").read_text()
    assert "<b>95.00 ± – (1)</b>" in html


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
    # shuffle_layer's 96% beats snip's 92%, but a variant is a reference, not a contender
    assert r4.loc["snip", "best"] and not r4.loc["snip (shuffle_layer)", "best"]
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
