"""The report's figures hide nothing: legends outside the data, a marker and a dash
pattern per method, a note naming the methods whose values coincide, small multiples of
every method (training curves, reliability diagrams), one ECE in figure and table; the
report's job graph with one node per rule; wide HTML tables scroll inside the page.
Small hand-made eval rows, never the grid."""

import json
import re
import shutil
import subprocess
from types import SimpleNamespace

import pandas as pd
import pytest

from prunelib.report import figures, jobgraph, tables

METHODS = ("random", "snip", "grasp", "synflow")


def _rows(same=("grasp", "synflow")):
    """MNIST / lenet300: dense, and METHODS at r = 4, 16, 64 over 3 seeds; the methods in
    ``same`` have identical values (their lines coincide); every row has calibration bins
    whose per-seed ECE differs from that of the bins pooled over seeds."""
    rows = []
    for seed in range(3):
        # (seed 0 over-, seed 2 under-confident: per seed ECE 5%, 0%, 2%; pooled 1%)
        bins = [[0, 0.0, 0]] * 13 + [[100, 90.0, (80, 90, 100)[seed]], [900, 890.0, (850, 890, 900)[seed]]]
        ece = sum(abs(h - c) for _, c, h in bins) / sum(n for n, _, _ in bins)
        base = {"dataset": "mnist", "arch": "lenet300", "seed": seed, "status": "ok", "variant": "none",
                "calibration_bins": json.dumps(bins), "ece": ece, "nll": 0.2, "balanced_accuracy": 0.9,
                "min_class_recall": 0.8, "min_recall_class": 3, "compression_error": 0.0, "speedup": 2.0}
        rows.append({**base, "method": "dense", "ratio": 1.0, "top1": 0.98, "top5": 1.0})
        for i, m in enumerate(METHODS):
            for r in (4.0, 16.0, 64.0):
                v = 0.97 - 0.02 * i - 0.001 * r + 0.001 * seed if m not in same else 0.9 + 0.001 * seed
                rows.append({**base, "method": m, "ratio": r, "top1": v, "top5": min(1.0, v + 0.02),
                             "speedup": r})
    return pd.DataFrame(rows)


@pytest.fixture
def captured(monkeypatch):
    """The figures the plot functions draw, instead of writing them."""
    figs = []
    monkeypatch.setattr(figures, "_save", lambda fig, out: figs.append(fig))
    return figs


def _legends_outside_axes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends, "the figure has no legend"
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.axison:
                assert not box.overlaps(ax.get_window_extent(renderer)), (legend, ax.get_title())


def _curve_logs():
    return pd.DataFrame([{"method": m, "seed": s, "epoch": e, "train_loss": 1.0 / e + 0.01 * s,
                          "train_top1": 0.8 + 0.05 * e}
                         for m in ("dense", *METHODS) for s in range(2) for e in (1, 2, 3)])


def test_every_legend_sits_outside_the_data(captured, tmp_path):
    df = _rows()
    figures.plot_accuracy(df, "t", tmp_path / "a.png")
    figures.plot_compression(df, "t", tmp_path / "c.png")
    figures.plot_curves(_curve_logs(), "t", tmp_path / "cu.png")
    figures.plot_calibration(df, "t", 64.0, tmp_path / "ca.png")
    rounds = pd.DataFrame([{"method": "lth", "seed": s, "round": j, "density": 0.8 ** j, "top1": 0.9, "status": "ok"}
                           for s in range(2) for j in range(3)])
    figures.plot_imp_rounds(rounds, "t", tmp_path / "i.png")
    variants = pd.concat([df.assign(variant="none"), df[df.method == "snip"].assign(
        method="snip (invert)", variant="invert")], ignore_index=True)
    figures.plot_variants(variants, "t", tmp_path / "v.png")
    point = {"layers": {"fc1": {"mean": 1.0, "min": 0.5, "max": 2.0}, "fc2": {"mean": 0.8, "min": 0.4, "max": 1.5}},
             "io": {"mean": 0.9}}
    spectra = df[df.ratio == 64.0].assign(jacobian_spectrum=json.dumps({"dense": point, "pruned": point}))
    figures.plot_jacobian_spectra(spectra, "t", tmp_path / "j.png")
    assert len(captured) == 7
    for fig in captured:
        _legends_outside_axes(fig)


def test_each_method_has_its_own_marker_and_dash_pattern(captured, tmp_path):
    figures.plot_accuracy(_rows(), "t", tmp_path / "a.png")
    legend = captured[0].legends[0]
    styles = {}
    for handle, text in zip(legend.legend_handles, legend.get_texts()):
        if text.get_text() in METHODS:
            styles[text.get_text()] = (handle.get_marker(), handle.get_linestyle(),
                                       repr(handle._unscaled_dash_pattern))   # (no public getter)
    assert set(styles) == set(METHODS)
    assert len({s[0] for s in styles.values()}) == len(METHODS)           # markers differ
    assert len({s[1:] for s in styles.values()}) == len(METHODS)          # dash patterns differ


def test_a_note_names_the_methods_whose_values_coincide(captured, tmp_path):
    notes = figures.plot_accuracy(_rows(), "t", tmp_path / "a.png")
    assert "top-1, grasp = synflow at every r" in notes and "top-5, grasp = synflow at every r" in notes
    assert not any("snip" in n or "random" in n for n in notes)
    text = " ".join(t.get_text() for t in captured[0].texts)
    assert "grasp = synflow" in text                                     # printed under the figure
    # points that coincide at one ratio only are named with it
    df = _rows(same=())
    df.loc[(df.method.isin(["snip", "random"])) & (df.ratio == 64.0), "top1"] = 0.1135
    notes = figures.coinciding(df[df.method != "dense"].assign(acc=100 * df["top1"]), "acc")
    assert notes == ["r = 64: random, snip at 11.35%"]
    # compression: exact pruning puts every method at 0 error, and the figure says so
    comp = figures.plot_compression(_rows(), "t", tmp_path / "c.png")
    assert "compression error, random = snip = grasp = synflow at every r" in comp


def test_training_curves_and_reliability_diagrams_cover_every_method(captured, tmp_path):
    figures.plot_curves(_curve_logs(), "t", tmp_path / "cu.png")
    titles = [ax.get_title() for ax in captured[0].axes if ax.get_title()]
    assert titles == ["dense", *figures.method_order(METHODS)[:]]        # one column of panels per method
    assert sum(1 for ax in captured[0].axes if ax.axison) == 2 * (1 + len(METHODS))   # loss and top-1 each
    data = figures.plot_calibration(_rows(), "t", 64.0, tmp_path / "ca.png")
    assert [(d["method"], d["ratio"]) for d in data] == [("dense", 1.0)] + [(m, 64.0) for m in
                                                                           figures.method_order(METHODS)]
    shown = [ax.get_title() for ax in captured[1].axes if ax.axison]
    assert len(shown) == 1 + len(METHODS) and all("ECE" in t for t in shown)


def test_ece_is_the_same_in_the_reliability_diagrams_and_the_table(captured, tmp_path):
    from prunelib.report.stats import ece_over_seeds

    df = _rows()
    data = {d["method"]: d for d in figures.plot_calibration(df, "t", 64.0, tmp_path / "ca.png")}
    table = tables.beyond_top1_table(df)
    titles = {ax.get_title().split("\n")[0]: ax.get_title() for ax in captured[0].axes if ax.axison}
    for method, ratio in [("dense", 1.0), *[(m, 64.0) for m in METHODS]]:
        cell = table.loc[method, f"r={int(ratio)}"]
        in_table = float(re.search(r"ECE (\d+\.\d+)%", cell).group(1))
        in_figure = data[method]["ece"]
        assert f"{in_figure:.2f}" == f"{in_table:.2f}", method
        assert f"ECE {in_table:.2f}" in titles[f"{method} (r = {int(ratio)})"]
        # the definition: each seed's ECE, mean over seeds -- not the pooled bins' ECE
        sub = df[(df.method == method) & (df.ratio == ratio)]
        assert in_figure == pytest.approx(100 * sub["ece"].mean())
        assert in_figure == pytest.approx(ece_over_seeds(sub)[0])
        pooled = [[0, 0.0, 0] for _ in range(15)]
        for text in sub["calibration_bins"]:
            for acc, b in zip(pooled, json.loads(text)):
                acc[0] += b[0]
                acc[1] += b[1]
                acc[2] += b[2]
        pooled_ece = 100 * sum(abs(h - c) for _, c, h in pooled) / sum(n for n, _, _ in pooled)
        assert abs(pooled_ece - in_figure) > 0.1          # (the two definitions differ on these rows)


class _Job:
    """A stand-in for a Snakemake job: hashable, with ``rule.name``."""

    def __init__(self, rule):
        self.rule = SimpleNamespace(name=rule)


def _job(rule):
    return _Job(rule)


def test_job_graph_has_one_node_per_rule():
    # a dense cell (no score job) beside a pruned cell: Snakemake's own spec keeps one job per
    # rule and level, so mask, train and eval came twice under the same names
    data, init_d, init_p, score = _job("data"), _job("init"), _job("init"), _job("score")
    mask_d, mask_p, train_d, train_p = _job("mask"), _job("mask"), _job("train"), _job("train")
    eval_d, eval_p, agg = _job("eval"), _job("eval"), _job("aggregate")
    deps = {data: [], init_d: [], init_p: [], score: [init_p, data], mask_d: [init_d], mask_p: [init_p, score],
            train_d: [mask_d, init_d, data], train_p: [mask_p, init_p, data], eval_d: [train_d, mask_d, data],
            eval_p: [train_p, mask_p, data], agg: [eval_d, eval_p]}
    levels = [[data, init_d, init_p], [score, mask_d], [mask_p, train_d], [train_p, eval_d], [eval_p], [agg]]
    dag = SimpleNamespace(toposorted=lambda: iter(levels), dependencies=deps)
    theirs = [n["rule"] for n in _original_spec()(dag)[0]["nodes"]]
    assert sorted(theirs) == ["aggregate", "data", "eval", "eval", "init", "mask", "mask", "score", "train",
                              "train"]                                  # the bug: repeated labels
    spec, _, ymax = jobgraph.rulegraph_spec(dag)
    names = [n["rule"] for n in spec["nodes"]]
    assert names == ["data", "init", "score", "mask", "train", "eval", "aggregate"]
    assert len(set(names)) == len(names) and ymax == 50 * (len(names) - 1)
    edges = {(link["sourcerule"], link["targetrule"]) for link in spec["links"] + spec["links_direct"]}
    assert edges == {("init", "score"), ("data", "score"), ("init", "mask"), ("score", "mask"), ("mask", "train"),
                     ("init", "train"), ("data", "train"), ("train", "eval"), ("mask", "eval"), ("data", "eval"),
                     ("eval", "aggregate")}
    assert {(x["sourcerule"], x["targetrule"]) for x in spec["links_direct"]} == {
        ("init", "score"), ("score", "mask"), ("mask", "train"), ("train", "eval"), ("eval", "aggregate")}


def _original_spec():
    """Snakemake's rulegraph_spec as shipped (``install`` may have replaced the name)."""
    import importlib.util

    from snakemake.report import rulegraph_spec as module

    spec = importlib.util.spec_from_file_location("_snakemake_rulegraph_spec", module.__file__)
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    return fresh.rulegraph_spec


def test_install_replaces_snakemakes_graph():
    import importlib

    module = importlib.import_module("snakemake.report.rulegraph_spec")
    assert jobgraph.install() and module.rulegraph_spec is jobgraph.rulegraph_spec
    reporter = importlib.import_module("snakemake.report.html_reporter")
    assert reporter.rulegraph_spec is jobgraph.rulegraph_spec


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no headless chromium (apt-get install chromium)")
def test_wide_html_table_scrolls_inside_the_page(tmp_path):
    wide = pd.DataFrame({f"r={r}": ["balanced acc. 98.00%; worst-class recall 95.00% (class 3); ECE 1.00%; "
                                    "NLL 0.050 (3)"] for r in (2, 4, 8, 16, 32, 64, 128)}, index=["snip"])
    page = tables.to_html([("wide", wide)], "note")
    probe = ("<script>document.title = 'page ' + document.documentElement.scrollWidth + ' window ' "
             "+ window.innerWidth + ' box ' + document.querySelector('.scroll').scrollWidth;</script>")
    (tmp_path / "p.html").write_text(page.replace("</body>", probe + "</body>"))
    out = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=800,600",
                          "--dump-dom", (tmp_path / "p.html").as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r"<title>page (\d+) window (\d+) box (\d+)</title>", out.stdout)
    assert found, out.stderr[-2000:]
    page_w, window_w, box_w = map(int, found.groups())
    assert page_w <= window_w < box_w          # the table is wider than the window, the page is not
