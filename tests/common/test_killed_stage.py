"""A `dvc repro` killed with SIGKILL mid-stage leaves no half-written output; the next run completes."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml

DVC = str(Path(sys.executable).parent / "dvc")


def make_repo(root: Path) -> None:
    root.mkdir()
    (root / "slow_stage.py").write_text(textwrap.dedent("""
        import time
        from stages.common.atomic import atomic_directory
        with atomic_directory("out") as staging:
            (staging / "part1.txt").write_text("first half")
            print("half written", flush=True)
            time.sleep(float(open("delay.txt").read()))
            (staging / "part2.txt").write_text("second half")
    """))
    (root / "delay.txt").write_text("30")
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"slow": {
        "cmd": f"{sys.executable} slow_stage.py", "deps": ["slow_stage.py"], "outs": ["out"]}}}))
    (root / ".dvcignore").write_text("__pycache__/\n*.pyc\n")
    for command in (["git", "init", "-q"], [DVC, "init", "-q"]):
        subprocess.run(command, cwd=root, check=True, capture_output=True)


def test_sigkill_mid_stage_then_rerun(tmp_path):
    root = tmp_path / "repo"
    make_repo(root)
    process = subprocess.Popen([DVC, "repro"], cwd=root, stdout=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    for line in process.stdout:
        if "half written" in line or time.time() > deadline:
            break
    os.killpg(process.pid, signal.SIGKILL)  # DVC and the stage command together
    process.wait()
    assert not (root / "out").exists(), "a killed stage left a half-written output"

    (root / "delay.txt").write_text("0")  # delay.txt is not a dep: the rerun is the same stage
    rerun = subprocess.run([DVC, "repro"], cwd=root, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in (root / "out").iterdir()) == ["part1.txt", "part2.txt"]
    assert [p.name for p in root.iterdir() if p.name.startswith(".tmp-")] == []
    status = subprocess.run([DVC, "status"], cwd=root, capture_output=True, text=True)
    assert "up to date" in status.stdout
