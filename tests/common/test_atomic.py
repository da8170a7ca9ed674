import os
import signal
import subprocess
import sys
import textwrap

import pytest

from stages.common.atomic import atomic_directory, atomic_path, write_json


def test_exception_mid_write_leaves_no_output(tmp_path):
    target = tmp_path / "out" / "table.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_failed_directory_keeps_the_previous_version(tmp_path):
    target = tmp_path / "models"
    with atomic_directory(target) as staging:
        (staging / "a.txt").write_text("v1")
    with pytest.raises(ValueError):
        with atomic_directory(target) as staging:
            (staging / "a.txt").write_text("v2-partial")
            raise ValueError("bad input")
    assert (target / "a.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_success_replaces_the_output(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"a": 1})
    write_json(target, {"a": 2})
    assert target.read_text().strip().endswith("}") and '"a": 2' in target.read_text()


def test_sigkill_mid_write_leaves_only_a_temporary_that_the_next_run_removes(tmp_path):
    target = tmp_path / "big.bin"
    script = textwrap.dedent(f"""
        import time
        from stages.common.atomic import atomic_path
        with atomic_path({str(target)!r}) as temporary:
            with open(temporary, "wb") as handle:
                handle.write(b"x" * 1000)
                handle.flush()
                print("writing", flush=True)
                time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not target.exists()
    assert len(list(tmp_path.iterdir())) == 1  # the stale temporary
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"done")
    assert [p.name for p in tmp_path.iterdir()] == ["big.bin"]
    assert target.read_bytes() == b"done"
