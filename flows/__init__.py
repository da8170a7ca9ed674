"""Prefect flows that run the DVC pipeline on Ray (see flows/README.md)."""

import os
from pathlib import Path

# Prefect's temporary server took 17-76 s to start on a 2-core machine (its default timeout is
# 20 s); this must be in the environment before prefect is imported to take effect.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
# One Prefect home per project (as `make` sets it), so `python -m flows ...` outside make finds the
# same database and server instead of ~/.prefect.
os.environ.setdefault("PREFECT_HOME", str(Path(__file__).resolve().parents[1] / ".prefect"))
