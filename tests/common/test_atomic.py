import os
import signal
import subprocess
import sys
import textwrap

import pytest

from stages.common.atomic import atomic_directory, atomic_path, sweep_stale_temporaries, write_json, write_text


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


# ------------------------------------------------------------------ a failed step changes nothing
def test_a_failed_block_puts_every_output_it_wrote_back(tmp_path):
    from stages.common.atomic import rollback_on_failure

    kept_file = write_text(tmp_path / "raw" / "SOURCE.json", "synthetic\n")
    (tmp_path / "interim").mkdir()
    with pytest.raises(RuntimeError, match="validation failed"):
        with rollback_on_failure():
            write_text(tmp_path / "raw" / "SOURCE.json", "/data/real\n")
            with atomic_directory(tmp_path / "interim" / "ingest") as staging:
                (staging / "manifest.csv").write_text("a,b\n")
            write_text(tmp_path / "interim" / "manifest_validation.json", "{}")
            raise RuntimeError("validation failed")
    assert kept_file.read_text() == "synthetic\n"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["interim", "raw", "raw/SOURCE.json"]


def test_a_successful_block_keeps_its_outputs_and_no_backups(tmp_path):
    from stages.common.atomic import rollback_on_failure

    with atomic_directory(tmp_path / "raw") as staging:
        (staging / "old.txt").write_text("old")
    with rollback_on_failure():
        with atomic_directory(tmp_path / "raw") as staging:
            (staging / "new.txt").write_text("new")
        write_text(tmp_path / "raw" / "SOURCE.json", "x")  # a file written into the replaced folder
        write_text(tmp_path / "raw" / "SOURCE.json", "y")  # and written twice
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["SOURCE.json", "new.txt", "raw"]
    assert (tmp_path / "raw" / "SOURCE.json").read_text() == "y"


def test_a_killed_runs_backup_is_put_back_by_the_sweep(tmp_path):
    dead_pid = 2**22 + 7  # above the default pid_max, so no process has it
    output = write_text(tmp_path / "manifest.csv", "written by the killed run")
    (tmp_path / f".tmp-manifest.csv.{dead_pid}.rollback").write_text("the version before it")
    removed = sweep_stale_temporaries([tmp_path])
    assert [p.name for p in removed] == [f".tmp-manifest.csv.{dead_pid}.rollback"]
    assert output.read_text() == "the version before it"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.csv"]


def test_a_failed_block_keeps_what_it_wrote_under_a_kept_folder(tmp_path):
    checkpoint, output = tmp_path / "scratch" / "last.pt", tmp_path / "out.txt"
    from stages.common.atomic import rollback_on_failure

    with pytest.raises(RuntimeError), rollback_on_failure(keep=(tmp_path / "scratch",)):
        write_text(checkpoint, "step 3")
        write_text(output, "half")
        raise RuntimeError("interrupted")
    assert checkpoint.read_text() == "step 3"
    assert not output.exists()
