"""Test settings: one torch thread (stable and fair on 2 cores), built-in data from this checkout."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# the suite measures nothing on this host unless a test asks (tests of nas.latency.calibrate pass fake timers)
os.environ.setdefault("NAS_CALIBRATE", "off")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _short_speed_settle(monkeypatch, tmp_path):
    """The quiet guard's speed sentinel finds full speed over 3 s at the start of every measuring command; the
    tests' commands measure a few small modules each, so 0.3 s of sentinel runs is reference enough (the guard
    itself is tested with its own clock in tests/test_profile.py). The host's remembered full speed lives in a
    cache of the test's own (no test sees another's, nor the user's), and a wait for it gives up after 5 s."""
    import nas.profile.quiet as quiet

    monkeypatch.setattr(quiet, "SETTLE_S", 0.3)
    monkeypatch.setattr(quiet, "REMEMBERED_WAIT_S", 5.0)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The public measured datasets beside the checkout (../shared/datasets)."""
    return SHARED / "datasets"
