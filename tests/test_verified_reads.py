"""Verified reads and lineage: a flipped byte in any artifact stops the next job that
reads it with one line (file, both digests, how to rebuild it) and nothing downstream is
written; ``audit grid`` lists the cell as corrupted; every eval row records the digests
of what it was made from and ``audit run`` checks that chain against the files."""

import shutil
import subprocess

import pytest
import yaml

from prunelib import stages

from prunelib.audit import checks as audit
from prunelib.config import contracts
from prunelib.foundations.paths import producing_rule
from prunelib.foundations.artifacts import (ChecksumError, checksum_path, load_pt, read_checksum,
                                read_parquet_rows, save_pt, sha256_file)

from cells import settings
from conftest import PYTHON, REPO

GRID = {"archs": ["lenet300"], "datasets": ["mnist"], "methods": ["global_magnitude"], "ratios": [4],
        "seeds": [0]}
USER = {"grid": GRID, "train": {"epochs": 1, "train_subset": 512, "batch_size": 64}}
S = settings(USER)
SEED = "results/mnist/lenet300/seed0"
CELL = f"{SEED}/global_magnitude/r4"
DATA = "results/data/mnist.pt"
INIT = f"{SEED}/init_pytorch_default.pt"
SCORES = f"{SEED}/global_magnitude/scores.pt"


def _run_cell(s=S):
    """The grid's global-magnitude cell, stage by stage, with the workflow's relative paths."""
    stages.run_init(contracts.init_contract(s, "lenet300", "mnist", 0, "pytorch_default"), INIT,
                    INIT.replace(".pt", ".parquet"))
    stages.run_score(contracts.score_contract(s, "global_magnitude", 0), INIT, DATA, SCORES)
    stages.run_mask(contracts.mask_contract(s, "global_magnitude", 4, 0), INIT, SCORES, f"{CELL}/mask.pt",
                    f"{CELL}/mask.parquet")
    stages.run_train(contracts.train_contract(s, "global_magnitude", 4, 0, "mnist"), INIT, f"{CELL}/mask.pt",
                     DATA, f"{CELL}/final.pt", f"{CELL}/train_log.parquet")
    stages.run_eval(contracts.eval_contract(s, "lenet300", "mnist", "global_magnitude", 4, 0), f"{CELL}/final.pt",
                    f"{CELL}/mask.pt", DATA, f"{CELL}/eval.parquet")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, mnist_pt):
    wd = tmp_path_factory.mktemp("grid")
    (wd / "results/data").mkdir(parents=True)
    for f in (mnist_pt, checksum_path(mnist_pt)):
        shutil.copy(f, wd / "results/data" / f.name)
    (wd / "config.yaml").write_text(yaml.safe_dump({"preset": "fast", **USER}))
    mp = pytest.MonkeyPatch()
    mp.chdir(wd)
    _run_cell()
    mp.undo()
    return wd


@pytest.fixture
def in_workdir(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    return workdir


class _flipped:
    """One byte of ``path`` inverted inside the block, restored after it."""

    def __init__(self, path, offset=200):
        self.path, self.offset = path, offset

    def _flip(self):
        with open(self.path, "r+b") as fh:
            fh.seek(self.offset)
            b = fh.read(1)
            fh.seek(self.offset)
            fh.write(bytes([b[0] ^ 0xFF]))

    def __enter__(self):
        self._flip()
        return self.path

    def __exit__(self, *exc):
        self._flip()


def _grid_state(fast=False):
    rep = audit.audit_grid("config.yaml", ".", fast=fast)
    return {c["cell"]: c for c in rep["cells"]}["mnist/lenet300/seed0/global_magnitude/r4"]


# the job that reads each artifact next, and what it would have written
READERS = {
    INIT: ("mask", lambda: stages.run_train(contracts.train_contract(S, "global_magnitude", 4, 0, "mnist"),
                                            INIT, f"{CELL}/mask.pt", DATA, "out/final.pt", "out/log.parquet")),
    f"{CELL}/mask.pt": ("train", lambda: stages.run_train(
        contracts.train_contract(S, "global_magnitude", 4, 0, "mnist"), INIT, f"{CELL}/mask.pt", DATA,
        "out/final.pt", "out/log.parquet")),
    SCORES: ("mask", lambda: stages.run_mask(contracts.mask_contract(S, "global_magnitude", 4, 0), INIT, SCORES,
                                             "out/mask.pt", "out/mask.parquet")),
    f"{CELL}/final.pt": ("eval", lambda: stages.run_eval(
        contracts.eval_contract(S, "lenet300", "mnist", "global_magnitude", 4, 0), f"{CELL}/final.pt",
        f"{CELL}/mask.pt", DATA, "out/eval.parquet")),
    DATA: ("eval", lambda: stages.run_eval(
        contracts.eval_contract(S, "lenet300", "mnist", "global_magnitude", 4, 0), f"{CELL}/final.pt",
        f"{CELL}/mask.pt", DATA, "out/eval.parquet")),
}


@pytest.mark.parametrize("artifact", list(READERS), ids=lambda p: p.rsplit("/", 1)[-1])
def test_a_flipped_byte_stops_the_next_job_and_marks_the_cell_corrupted(in_workdir, artifact):
    _, read = READERS[artifact]
    recorded = read_checksum(artifact)
    with _flipped(in_workdir / artifact):
        actual = sha256_file(artifact)
        with pytest.raises(ChecksumError) as err:
            read()
        msg = str(err.value)
        assert "\n" not in msg and "checksum" in msg and artifact in msg
        assert recorded in msg and actual in msg
        assert f"snakemake --cores 1 --force {artifact} (rule {producing_rule(artifact)})" in msg
        assert not (in_workdir / "out").exists() or not any((in_workdir / "out").iterdir())  # nothing downstream
        state = _grid_state()
        assert state["state"] == "corrupted" and artifact in state["detail"]
        assert _grid_state(fast=True)["state"] == "complete"  # --fast hashes nothing
    assert _grid_state()["state"] == "complete"


def test_the_command_line_fails_with_one_line_and_audit_grid_exits_1(in_workdir):
    contract = contracts.train_contract(S, "global_magnitude", 4, 0, "mnist").to_json()
    with _flipped(in_workdir / CELL / "mask.pt"):
        job = subprocess.run([PYTHON, "-m", "prunelib", "train", "--settings", contract, "--init", INIT,
                              "--mask", f"{CELL}/mask.pt", "--data", DATA, "--out-weights", "out/f.pt",
                              "--out-log", "out/l.parquet"], capture_output=True, text=True,
                             env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        grid = subprocess.run([PYTHON, "-m", "prunelib", "audit", "grid"], capture_output=True, text=True,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert job.returncode == 2
    assert job.stderr.strip().splitlines()[-1].startswith(f"prunelib train: {CELL}/mask.pt: checksum mismatch")
    assert "Traceback" not in job.stderr and not (in_workdir / "out/f.pt").exists()
    assert grid.returncode == 1 and "1 corrupted" in grid.stdout
    assert f"{CELL}/mask.pt: checksum mismatch" in grid.stdout


def test_a_missing_sidecar_is_refused(in_workdir, tmp_path):
    shutil.copy(in_workdir / CELL / "mask.pt", tmp_path / "mask.pt")  # copied without its .sha256
    with pytest.raises(ChecksumError, match=r"mask\.pt: no checksum recorded \(mask\.pt\.sha256 missing"):
        load_pt(tmp_path / "mask.pt")


def test_producing_rules():
    assert producing_rule("results/data/mnist.pt") == "data"
    assert producing_rule(INIT) == "init"
    assert producing_rule(SCORES) == "score"
    assert [producing_rule(f"{CELL}/{n}") for n in ("mask.pt", "final.pt", "eval.parquet")] == \
        ["mask", "train", "eval"]
    assert producing_rule(f"{SEED}/lth/imp/round0/rewind.pt") == "imp_dense"
    assert producing_rule(f"{SEED}/lth/imp/round3/weights.pt") == "imp_round"


# --- lineage ------------------------------------------------------------------------------

def test_the_eval_row_records_the_digest_of_every_artifact_it_was_made_from(in_workdir):
    row = read_parquet_rows(f"{CELL}/eval.parquet")[0]
    assert row["data_sha256"] == sha256_file(DATA)
    assert row["init_sha256"] == sha256_file(INIT)
    assert row["scores_sha256"] == sha256_file(SCORES)
    assert row["mask_sha256"] == sha256_file(f"{CELL}/mask.pt")
    assert row["final_sha256"] == sha256_file(f"{CELL}/final.pt")
    # magnitude scores read no data, so they record none
    assert load_pt(SCORES)["meta"]["inputs"] == {"init": {"path": INIT, "sha256": sha256_file(INIT)}}


def test_audit_run_checks_the_chain_back_to_init_and_data(in_workdir):
    rep = audit.audit_run(CELL)
    assert rep["ok"], audit.render_run(rep)
    lineage = {r["check"]: r["status"] for r in rep["checks"] if r["check"].startswith("lineage")}
    assert lineage == {"lineage: final.pt <- init": "ok", "lineage: final.pt <- mask": "ok",
                       "lineage: final.pt <- data": "ok", "lineage: mask.pt <- scores": "ok",
                       f"lineage: {SCORES} <- init": "ok"}


def test_audit_run_finds_an_input_rebuilt_after_the_cell(in_workdir):
    """init.pt replaced by a consistent file (its own sidecar matches): no read fails, but
    the cell was made from other bytes, and the chain says so."""
    saved = {p: (in_workdir / p).read_bytes() for p in (INIT, INIT + ".sha256")}
    try:
        blob = load_pt(INIT)
        blob["meta"]["seconds"] += 1.0
        save_pt(blob, INIT)
        rep = audit.audit_run(CELL)
        failed = {r["check"] for r in rep["checks"] if r["status"] == "FAIL"}
        assert failed == {"lineage: final.pt <- init", f"lineage: {SCORES} <- init",
                          "eval row init_sha256 is init_pytorch_default.pt on disk"}
    finally:
        for p, data in saved.items():
            (in_workdir / p).write_bytes(data)
    assert audit.audit_run(CELL)["ok"]
