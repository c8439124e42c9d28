import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VOLSEG_SHARED", REPO.parent / "shared"))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test when that folder is absent (a user's clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path
