"""The check to run on the first machine with a GPU, before a grid is sent to a GPU
queue (``make gpu-check``; at most 8 minutes on one GPU).  It answers, in one Markdown and
one JSON report:

1. **Does every stage run on CUDA?**  init, score (SNIP), mask, train and eval of one cell
   of LeNet-5 on real MNIST and of ResNet-20 and VGG-16 on synthetic CIFAR-10 (no
   download), and two rounds of an IMP chain (``lth``) of LeNet-5, through the same stage
   functions and contracts as the workflow's jobs, each stage timed.
2. **Is CUDA deterministic here?**  The same chains run twice, each from nothing in a
   folder of its own; every artifact's tensors (weights, scores, masks) and rows (eval,
   train log: timing and provenance aside) are compared by digest.  The stages put CUDA
   in its reproducible mode themselves (``prunelib.foundations.seeding.deterministic_cuda``:
   ``CUBLAS_WORKSPACE_CONFIG``, cuDNN deterministic without autotuning, PyTorch's
   deterministic algorithms); an operation with no deterministic CUDA implementation
   warns instead of stopping, and those warnings are recorded with the verdict.
3. **What does a training step cost, masked against dense?**  Images per second of the
   three networks (``benchmarks/train_throughput.py``'s steps).
4. **What does scoring cost?**  SNIP, GraSP and SynFlow (with mask selection at r = 10),
   in units of one dense forward and backward pass on the scoring batch, and seconds.
5. **What do ``train.precision: bf16`` and ``train.channels_last`` buy?**  A short run of
   LeNet-5 (MNIST) and ResNet-20 (synthetic CIFAR-10) in each of the four combinations:
   images per second and the test top-1 after it (same init, same batches).

    python benchmarks/gpu_check.py                        # on CUDA (the default)
    python benchmarks/gpu_check.py --device cpu --tiny    # the test suite's run: minutes -> seconds

Writes ``<out>.md`` and ``<out>.json`` (default ``reports/benchmarks/gpu_check``).  Sections
that would end past ``--budget`` seconds are skipped and named in the report.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

#: The cells checked: (network, dataset).
NETWORKS = (("lenet5", "mnist"), ("resnet20", "synthetic_cifar10"), ("vgg16", "synthetic_cifar10"))
METHOD, RATIO, SEED = "snip", 10.0, 0
SCORERS = ("snip", "grasp", "synflow")
#: The training options compared, on these networks.
OPTION_NETWORKS = (("lenet5", "mnist"), ("resnet20", "synthetic_cifar10"))
OPTIONS = (("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True))
#: Sizes of a run on one GPU (about 3 minutes on a current one) and of the test suite's
#: CPU run (`--tiny`, seconds): steps, batches, examples.
SIZES = {
    "full": {"train_steps": 300, "batch": 128, "train_subset": None, "imp_steps": 200, "eval_batch": 1000,
             "throughput_steps": 30, "throughput_warmup": 5, "option_steps": 500, "score_repeats": 3,
             "synflow_rounds": 100, "score_batch": 128},
    "tiny": {"train_steps": 4, "batch": 16, "train_subset": 256, "imp_steps": 4, "eval_batch": 500,
             "throughput_steps": 2, "throughput_warmup": 1, "option_steps": 4, "score_repeats": 1,
             "synflow_rounds": 2, "score_batch": 16},
}
#: What a deterministic-mode warning says (PyTorch: "... does not have a deterministic
#: implementation, but you set 'torch.use_deterministic_algorithms(True, warn_only=True)'").
NONDETERMINISTIC = "does not have a deterministic implementation"


# --- helpers -----------------------------------------------------------------------------------

def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _tensors(obj, prefix: str = "") -> dict:
    """Every tensor of an artifact blob, by its path in the blob (``meta`` aside: it holds
    paths, versions and the device, which say where, not what)."""
    import torch

    out = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k != "meta":
                out.update(_tensors(v, f"{prefix}/{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(_tensors(v, f"{prefix}/{i}"))
    return out


def digest(path: Path) -> str:
    """SHA-256 of what an artifact holds: a .pt file's tensors (names, dtypes, shapes,
    bytes), a table's rows less the columns that measure time or say where it ran."""
    from prunelib.foundations.artifacts import load_pt, read_parquet_rows
    from prunelib.foundations.eval_row import PROVENANCE, TIMING_COLUMNS

    import torch

    h = hashlib.sha256()
    if path.suffix == ".pt":
        for name, t in sorted(_tensors(load_pt(path)).items()):
            t = t.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # (any dtype, bfloat16 too)
    else:
        drop = set(TIMING_COLUMNS) | set(PROVENANCE) | {"seconds"}
        rows = [{k: v for k, v in r.items() if k not in drop} for r in read_parquet_rows(path)]
        h.update(json.dumps(rows, sort_keys=True, default=str).encode())
    return h.hexdigest()


class Budget:
    """Seconds left of ``--budget``; a section that would not fit is skipped, by name."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds
        self.skipped: list[str] = []

    def allows(self, section: str, needs: float = 0.0) -> bool:
        if time.monotonic() + needs > self.end:
            self.skipped.append(section)
            return False
        return True


@contextlib.contextmanager
def deterministic_warnings(found: set):
    """Collect the deterministic-mode warnings raised inside (each operation once)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        text = str(w.message)
        if NONDETERMINISTIC in text:
            found.add(text.split(NONDETERMINISTIC)[0].strip().rstrip(","))


# --- 1 and 2: the stages, twice ---------------------------------------------------------------

def settings_for(device: str, size: dict):
    from prunelib import config

    per_method = {"synflow": {"rounds": size["synflow_rounds"]}}
    if size["score_batch"] < 100:  # (GraSP's own 10 per class would be the tiny run's biggest cost)
        per_method["grasp"] = {"batch_size": size["score_batch"], "class_balanced": False}
    user = {"preset": "fast", "device": device,
            "train": {"steps": size["train_steps"], "batch_size": size["batch"], "train_subset": size["train_subset"],
                      "eval_batch_size": size["eval_batch"], "checkpoint_minutes": 0},
            "score": {"per_method": per_method, "batch_size": size["score_batch"]},
            "iterative": {"train_steps": size["imp_steps"]}}
    return config.to_settings(config.resolve(user))


def run_cell(folder: Path, data_pt: Path, s, arch: str, dataset: str) -> dict:
    """init -> score -> mask -> train -> eval of one cell, as the jobs run them;
    {artifact: path} and {stage: seconds}."""
    from prunelib import stages
    from prunelib.config import contracts

    folder.mkdir(parents=True, exist_ok=True)
    f = {k: folder / v for k, v in {"init": "init.pt", "init_table": "init.parquet", "scores": "scores.pt",
                                    "mask": "mask.pt", "mask_table": "mask.parquet", "final": "final.pt",
                                    "train_log": "train_log.parquet", "eval": "eval.parquet"}.items()}
    seconds = {}
    steps = [
        ("init", lambda: stages.run_init(contracts.init_contract(s, arch, dataset, SEED, s.init.scheme_for(METHOD)),
                                         f["init"], f["init_table"])),
        ("score", lambda: stages.run_score(contracts.score_contract(s, METHOD, SEED, arch, dataset), f["init"],
                                           data_pt, f["scores"])),
        ("mask", lambda: stages.run_mask(contracts.mask_contract(s, METHOD, RATIO, SEED, "none", arch, dataset),
                                         f["init"], f["scores"], f["mask"], f["mask_table"])),
        ("train", lambda: stages.run_train(contracts.train_contract(s, METHOD, RATIO, SEED, dataset, "none", arch),
                                           f["init"], f["mask"], data_pt, f["final"], f["train_log"])),
        ("eval", lambda: stages.run_eval(contracts.eval_contract(s, arch, dataset, METHOD, RATIO, SEED, "none"),
                                         f["final"], f["mask"], data_pt, f["eval"])),
    ]
    for name, fn in steps:
        t = time.perf_counter()
        fn()
        seconds[name] = time.perf_counter() - t
    return {"files": {k: v for k, v in f.items() if k != "init_table"}, "seconds": seconds}


def run_imp(folder: Path, data_pt: Path, s, arch: str = "lenet5", dataset: str = "mnist") -> dict:
    """Rounds 0 and 1 of the ``lth`` chain (an IMP stage job each)."""
    from prunelib import stages
    from prunelib.config import contracts
    from prunelib.foundations.paths import imp_round_files

    folder.mkdir(parents=True, exist_ok=True)
    stages.run_init(contracts.init_contract(s, arch, dataset, SEED, "pytorch_default"), folder / "init.pt",
                    folder / "init.parquet")
    r0, r1 = imp_round_files(folder / "round0"), imp_round_files(folder / "round1")
    seconds = {}
    t = time.perf_counter()
    stages.run_imp_round(contracts.imp_round_contract(s, "lth", SEED, dataset, 0, arch), data_pt, r0,
                         init_path=folder / "init.pt")
    seconds["imp round 0"] = time.perf_counter() - t
    t = time.perf_counter()
    stages.run_imp_round(contracts.imp_round_contract(s, "lth", SEED, dataset, 1, arch), data_pt,
                         {k: v for k, v in r1.items() if k != "rewind"}, prev_weights=r0["weights"],
                         prev_mask=r0["mask"], rewind_path=r0["rewind"])
    seconds["imp round 1"] = time.perf_counter() - t
    files = {f"round0 {k}": v for k, v in r0.items() if k != "mask_table"}
    files.update({f"round1 {k}": v for k, v in r1.items() if k not in ("rewind", "mask_table")})
    return {"files": files, "seconds": seconds}


def stages_twice(work: Path, prepared: dict, device: str, size: dict, budget: Budget) -> dict:
    s = settings_for(device, size)
    out = {"cells": {}, "nondeterministic_ops": []}
    found: set = set()
    for arch, dataset in NETWORKS:
        if not budget.allows(f"stages of {arch}"):
            continue
        runs = []
        with deterministic_warnings(found):
            for i in (1, 2):
                runs.append(run_cell(work / f"run{i}" / arch, prepared[dataset], s, arch, dataset))
        out["cells"][f"{arch} / {dataset}"] = _compare(runs)
    if budget.allows("IMP rounds of lenet5"):
        with deterministic_warnings(found):
            runs = [run_imp(work / f"run{i}" / "imp", prepared["mnist"], s) for i in (1, 2)]
        out["cells"]["lenet5 / mnist, IMP (lth) rounds 0-1"] = _compare(runs)
    out["nondeterministic_ops"] = sorted(found)
    out["deterministic"] = all(c["identical"] for c in out["cells"].values()) if out["cells"] else None
    return out


def _compare(runs: list[dict]) -> dict:
    a, b = runs
    same = {k: digest(a["files"][k]) == digest(b["files"][k]) for k in a["files"]}
    return {"seconds": {k: round(v, 3) for k, v in a["seconds"].items()}, "artifacts_identical": same,
            "identical": all(same.values()), "eval": _eval_row(a["files"].get("eval"))}


def _eval_row(path) -> dict:
    if path is None:
        return {}
    from prunelib.foundations.artifacts import read_parquet_rows

    row = read_parquet_rows(path)[0]
    return {k: row.get(k) for k in ("top1", "density", "status")}


# --- 3: masked / dense training throughput ---------------------------------------------------

def throughput(device, size: dict, budget: Budget) -> dict:
    import train_throughput

    out = {}
    for arch, _ in NETWORKS:
        if not budget.allows(f"throughput of {arch}"):
            continue
        r = train_throughput.measure(arch, device, size["batch"], size["throughput_steps"], size["throughput_warmup"])
        out[arch] = {"batch": size["batch"], **{k: round(v, 1) for k, v in r.items()},
                     "masked/dense": round(r["masked"] / r["dense"], 3)}
    return out


# --- 4: scoring cost in units ----------------------------------------------------------------

def scoring_cost(device, prepared_data: dict, size: dict, budget: Budget) -> dict:
    import torch
    import torch.nn.functional as F

    from prunelib import stages
    from prunelib.catalogue import registry
    from prunelib.data import datasets
    from prunelib.methods import masking
    from prunelib.nets import models

    s = settings_for(device.type, size)
    out = {}
    for arch, dataset in NETWORKS:
        if not budget.allows(f"scoring cost on {arch}"):
            continue
        data = prepared_data[dataset]
        model = stages.build_model(arch, dataset).to(device)
        x, y = next(datasets.scoring_batches(data, dataset, SEED, size["score_batch"], 1))
        x, y = x.to(device), y.to(device)
        unit = []
        for i in range(4):
            _sync(device)
            t = time.perf_counter()
            model.zero_grad()
            F.cross_entropy(model(x), y).backward()
            _sync(device)
            if i:  # (the first pass warms up)
                unit.append(time.perf_counter() - t)
        unit_s = statistics.median(unit)
        out[arch] = {"unit_ms": round(1000 * unit_s, 3)}
        for method in SCORERS:
            entry = registry.method(method)
            times = []
            peak = None
            for _ in range(size["score_repeats"]):
                torch.manual_seed(SEED)
                net = stages.build_model(arch, dataset)
                prunable = models.prunable_names(net)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                _sync(device)
                t = time.perf_counter()
                scorer = entry.make_scorer(s.score.knobs_for(method))
                scores, _ = stages.compute_scores(net, prunable, scorer, data, dataset, SEED,
                                                  s.score.data_for(method), device)
                if scorer.needs_ratio:  # SynFlow's rounds happen at mask time
                    named = dict(net.named_parameters())
                    scorer.prune(net, {p: named[p] for p in prunable}, RATIO, entry.scope, SEED, method,
                                 ranking=False)
                else:
                    masking.select_masks(scores, RATIO, entry.scope, SEED, method)
                _sync(device)
                times.append(time.perf_counter() - t)
                if device.type == "cuda":
                    peak = torch.cuda.max_memory_allocated(device)
            sec = statistics.median(times)
            out[arch][method] = {"seconds": round(sec, 4), "units": round(sec / unit_s, 2)}
            if peak is not None:
                out[arch][method]["device_peak_MiB"] = round(peak / 2**20, 1)
        del model
    return out


# --- 5: precision and channels-last -------------------------------------------------------------

def training_options(device, prepared_data: dict, size: dict, budget: Budget) -> dict:
    import torch

    from prunelib import stages
    from prunelib.config.settings import TrainSettings
    from prunelib.train.loop import evaluate, train

    def run(arch, dataset, base, steps, precision, channels_last):
        s = TrainSettings(steps=steps, batch_size=size["batch"], train_subset=size["train_subset"],
                          precision=precision, channels_last=channels_last, augment="none", checkpoint_minutes=0)
        model, notes = copy.deepcopy(base), []
        _sync(device)
        t = time.perf_counter()
        rows = train(model, {}, prepared_data[dataset], dataset, s, SEED, device, progress=notes.append)
        _sync(device)
        return model, rows, notes, time.perf_counter() - t

    out = {}
    for arch, dataset in OPTION_NETWORKS:
        torch.manual_seed(SEED)
        base = stages.build_model(arch, dataset)
        if not budget.allows(f"{arch} precision and channels-last"):
            continue
        run(arch, dataset, base, max(2, size["option_steps"] // 10), "fp32", False)  # warm-up: CUDA, cuDNN
        for precision, channels_last in OPTIONS:
            label = f"{precision}, channels_last={'on' if channels_last else 'off'}"
            if not budget.allows(f"{arch} {label}"):
                continue
            model, rows, notes, seconds = run(arch, dataset, base, size["option_steps"], precision, channels_last)
            m = evaluate(model, prepared_data[dataset], dataset, size["eval_batch"], device)
            out.setdefault(arch, {})[label] = {
                "steps": size["option_steps"], "images_per_s": round(size["option_steps"] * size["batch"] / seconds, 1),
                "test_top1": round(m["top1"], 4), "train_loss_last": round(rows[-1]["train_loss"], 4),
                "notes": [x for x in notes if "ignored" in x]}
    return out


# --- the report ------------------------------------------------------------------------------------

def environment(device) -> dict:
    import torch

    env = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
           "host": platform.node()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, gpu_memory_GiB=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), capability=f"{p.major}.{p.minor}",
                   bf16_supported=torch.cuda.is_bf16_supported())
    else:
        env.update(cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    return env


def markdown(rep: dict) -> str:
    env = rep["environment"]
    where = env.get("gpu", f"CPU ({env.get('cpu')}, {env.get('threads')} threads)")
    lines = [f"# GPU check: {where}", "",
             f"torch {env['torch']}" + (f", CUDA {env['cuda']}, cuDNN {env['cudnn']}" if "cuda" in env else "")
             + f"; sizes: {rep['sizes']}; {rep['seconds']:.0f} s in all.", ""]
    st = rep.get("stages", {})
    lines += ["## 1-2. Every stage on the device, twice", "",
              f"Deterministic: **{ {True: 'yes', False: 'NO', None: 'not checked'}[st.get('deterministic')]}** "
              "(same config twice, every "
              "artifact's tensors and rows compared). Set by the stages: "
              f"{', '.join(f'{k}={v}' for k, v in rep.get('determinism_settings', {}).items()) or 'nothing (CPU)'}.",
              "", "Stage seconds are the first run's; init runs on the CPU, and the first stage on the device "
              "includes its start-up.", "",
              "| cell | stage seconds | artifacts identical in both runs | eval top-1 |", "|---|---|---|---:|"]
    for name, c in st.get("cells", {}).items():
        secs = ", ".join(f"{k} {v:.2f}" for k, v in c["seconds"].items())
        same = ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in c["artifacts_identical"].items())
        lines.append(f"| {name} | {secs} | {same} | {c['eval'].get('top1', '')} |")
    ops = st.get("nondeterministic_ops", [])
    lines += ["", "Operations without a deterministic implementation on this device (PyTorch warned): "
              + ("; ".join(ops) if ops else "none."), ""]
    lines += ["## 3. Training throughput, masked and dense", "",
              "| network | batch | dense img/s | masked img/s | masked/dense |", "|---|---:|---:|---:|---:|"]
    for arch, r in rep.get("throughput", {}).items():
        lines.append(f"| {arch} | {r['batch']} | {r['dense']} | {r['masked']} | {r['masked/dense']} |")
    lines += ["", f"## 4. Scoring cost (with mask selection at r = {RATIO:g}), in units of one dense forward and "
              "backward pass on the scoring batch", "",
              ("Each method scores with its own data settings as the pipeline runs it (GraSP: 10 images per "
               "class), SynFlow with its 100 rounds; medians of the repeats." if rep["sizes"] == "full" else
               "Tiny run: every method on the same small batch, SynFlow with 2 rounds; not the pipeline's costs."),
              "",
              "| network | unit (ms) | " + " | ".join(f"{m} units | {m} s" for m in SCORERS) + " |",
              "|---|---:|" + "---:|---:|" * len(SCORERS)]
    for arch, r in rep.get("scoring", {}).items():
        cells = " | ".join(f"{r[m]['units']} | {r[m]['seconds']}" for m in SCORERS if m in r)
        lines.append(f"| {arch} | {r['unit_ms']} | {cells} |")
    lines += ["", "## 5. train.precision and train.channels_last on a short run", "",
              "| network | setting | steps | img/s | test top-1 | notes |", "|---|---|---:|---:|---:|---|"]
    for arch, r in rep.get("options", {}).items():
        for label, v in r.items():
            lines.append(f"| {arch} | {label} | {v['steps']} | {v['images_per_s']} | {v['test_top1']} | "
                         f"{'; '.join(v['notes'])} |")
    if rep.get("skipped"):
        lines += ["", f"Skipped (past the {rep['budget']:.0f} s budget): {', '.join(rep['skipped'])}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default; CUDA_VISIBLE_DEVICES picks the GPU) or cpu")
    ap.add_argument("--tiny", action="store_true", help="the test suite's sizes: seconds on a CPU")
    ap.add_argument("--data", default=str(REPO / "data"), help="where MNIST's raw files are (fetched if absent)")
    ap.add_argument("--out", default=str(REPO / "reports" / "benchmarks" / "gpu_check"),
                    help="report path without suffix: writes .md and .json")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds; later sections are skipped past it")
    ap.add_argument("--keep", action="store_true", help="keep the working folder (artifacts of both runs)")
    a = ap.parse_args(argv)

    import torch

    from prunelib.data import datasets
    from prunelib.train.loop import resolve_device

    if a.device not in ("cuda", "cpu"):  # (the config's device: one GPU, chosen by CUDA_VISIBLE_DEVICES)
        raise SystemExit(f"gpu_check: --device = {a.device!r} is not allowed; allowed: cuda, cpu")
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device = cuda but this machine has no CUDA device; allowed: run it where a "
                         "GPU is, or --device cpu (with --tiny for the quick check)")
    started = time.monotonic()
    budget = Budget(a.budget)
    size = SIZES["tiny" if a.tiny else "full"]
    device = resolve_device(a.device)  # (on CUDA: its reproducible mode, before any work)
    from prunelib.foundations.seeding import deterministic_cuda

    rep = {"environment": environment(device), "sizes": "tiny" if a.tiny else "full", "budget": a.budget,
           "determinism_settings": deterministic_cuda() if device.type == "cuda" else {}}
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    try:
        prepared = {"mnist": work / "mnist.pt", "synthetic_cifar10": work / "synthetic_cifar10.pt"}
        datasets.fetch_mnist(a.data)
        datasets.prepare("mnist", a.data, prepared["mnist"])
        datasets.prepare("synthetic_cifar10", a.data, prepared["synthetic_cifar10"])
        loaded = {k: datasets.load_prepared(v) for k, v in prepared.items()}
        print(f"gpu_check on {rep['environment'].get('gpu', device)}: stages, twice", flush=True)
        rep["stages"] = stages_twice(work, prepared, a.device, size, budget)
        print("throughput", flush=True)
        rep["throughput"] = throughput(device, size, budget)
        print("scoring cost", flush=True)
        rep["scoring"] = scoring_cost(device, loaded, size, budget)
        print("precision and channels-last", flush=True)
        rep["options"] = training_options(device, loaded, size, budget)
    finally:
        if a.keep:
            print(f"working folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    rep["skipped"] = budget.skipped
    rep["seconds"] = round(time.monotonic() - started, 1)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rep, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(rep))
    print(markdown(rep))
    print(f"written: {out.with_suffix('.md')}, {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
