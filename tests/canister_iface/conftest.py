"""Fixtures of the canister interface tests."""

from __future__ import annotations

import pytest

from localnet.sandbox import WasmEngine


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> WasmEngine:
    """One Wasm engine per module: compiled modules are cached on disk."""
    return WasmEngine(cache_dir=tmp_path_factory.mktemp("icrp-wasm"))
