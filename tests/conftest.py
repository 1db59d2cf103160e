"""Shared fixtures. Tests that need ../shared/data carry the ``shared_data`` marker: they are
skipped with the reason when the data is absent, except in CI (EHRTEXT_REQUIRE_SHARED_DATA=1),
where absence is a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EHRTEXT_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    if SHARED_DATA.is_dir():
        return
    if os.environ.get("EHRTEXT_REQUIRE_SHARED_DATA") == "1":
        return  # the fixture below fails loudly instead
    skip = pytest.mark.skip(reason=f"needs the shared datasets at {SHARED_DATA} (absent here)")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"EHRTEXT_REQUIRE_SHARED_DATA=1 but {SHARED_DATA} is absent")
    return SHARED_DATA
