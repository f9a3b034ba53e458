from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small():
    """600 cells x 400 genes, 3 batches, 4 cell types (read-only: copy before changing)."""
    from sceval.testing import small_dataset

    return small_dataset()


@pytest.fixture()
def small_copy(small):
    return small.copy()
