"""Every test starts from the same random state.

This torch build seeds its global generator at random in every process, so an untrained
layer built without a seed gets new weights on every run. Tests whose answers depend on
weights (a max pool's gradient goes through one winner per window) would then pass on one
run and fail on the next.
"""
import sys

import pytest


@pytest.fixture(autouse=True)
def _seeded_torch():
    torch = sys.modules.get("torch")  # torch-free tests stay torch-free
    if torch is not None:
        torch.manual_seed(0)
