import os
import signal
import subprocess
import sys
import textwrap

import pytest

from prunelib.foundations.artifacts import atomic_path, read_parquet_rows, write_parquet


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "sub" / "x.pt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_failed_rewrite_keeps_the_previous_complete_file(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("complete")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert target.read_text() == "complete"


def test_a_process_killed_mid_write_leaves_no_artifact(tmp_path):
    target = tmp_path / "big.bin"
    code = textwrap.dedent(f"""
        import sys, time
        from prunelib.foundations.artifacts import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"x" * 1000)
                fh.flush()
                print("writing", flush=True)
                time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not target.exists()
    # the next write of the same artifact clears the leftover temp file and succeeds
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"ok")
    assert target.read_bytes() == b"ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"]


def test_parquet_roundtrip_with_metadata(tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    write_parquet([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], path, metadata={"method": "snip"})
    assert read_parquet_rows(path) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert pq.read_schema(path).metadata[b"method"] == b"snip"
    assert oct(os.stat(path).st_mode & 0o777) != oct(0o600)
