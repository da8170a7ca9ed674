"""Prefect flows that run the DVC pipeline on Ray (see flows/README.md)."""

import os

# Prefect's temporary server took 17-76 s to start on a 2-core machine (its default timeout is
# 20 s); this must be in the environment before prefect is imported to take effect.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
