"""Geometry tests: faiss (OpenMP) limited to the test thread count, like torch in tests/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _faiss_threads() -> Iterator[None]:
    faiss = pytest.importorskip("faiss")
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(os.environ.get("ROBUSTLAB_TEST_THREADS", "1")))
    yield
    faiss.omp_set_num_threads(before)
