"""Seeding: a stage without torch never imports it, and a torch stage still draws seeded numbers."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.helpers import REPO


def _run(code: str) -> str:
    completed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def test_seeding_does_not_import_torch_and_configure_torch_applies_the_seed() -> None:
    out = _run("""
        import sys
        from stages.common.runtime import configure_torch, seed_everything
        seed_everything(7)
        print("torch imported by seeding:", "torch" in sys.modules)
        configure_torch(1)
        import torch
        drawn = torch.rand(4)
        torch.manual_seed(7)
        print("same as manual_seed(7):", bool(torch.equal(drawn, torch.rand(4))))
    """)
    assert out.splitlines() == ["torch imported by seeding: False", "same as manual_seed(7): True"]


def test_torch_imported_before_seeding_is_seeded_at_once_and_not_reseeded() -> None:
    out = _run("""
        import torch
        from stages.common.runtime import configure_torch, seed_everything
        seed_everything(5)
        first = torch.rand(2)
        configure_torch(1)          # must not reset the generator mid-stage
        second = torch.rand(2)
        torch.manual_seed(5)
        reference = torch.rand(4)
        print(bool(torch.equal(torch.cat([first, second]), reference)))
    """)
    assert out == "True"


def test_monai_imports_without_its_unused_extras_and_they_stay_importable():
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from stages.common.runtime import import_monai\n"
        "import_monai()\n"
        "from monai.networks.nets import UNet\n"
        "assert 'monai' in sys.modules and UNet is not None\n"
        "print(sorted(m for m in ('transformers', 'mlflow') if m in sys.modules))\n"
        "import mlflow.entities\n"  # importable again once MONAI is in
        "print(mlflow.entities.Metric('k', 1.0, 0, 0).key)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["[]", "k"]
