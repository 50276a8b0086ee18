"""Fixtures for the localnet tests."""

from __future__ import annotations

import pytest

from localnet import dirty
from localnet.sandbox import WasmEngine


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> WasmEngine:
    """One engine for the session: compiled modules are shared, like in a replica."""
    return WasmEngine(cache_dir=tmp_path_factory.mktemp("compiled-wasm"))


@pytest.fixture
def needs_dirty_tracking() -> None:
    reason = dirty.probe()
    if reason is not None:
        pytest.skip(f"dirty-page tracking unavailable here: {reason}")
