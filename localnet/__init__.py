"""An embedded local Internet Computer for tests and demos.

``LocalNet`` runs real canister Wasm (wasmtime) behind the real IC HTTP
interface with BLS-signed certificates; see ``localnet.net``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from localnet.subnet_model import SubnetModel

if TYPE_CHECKING:
    from localnet.net import LocalNet

__all__ = ["LocalNet", "SubnetModel"]


def __getattr__(name: str) -> Any:
    # Lazy: importing a small piece of localnet (ids, errors) must not load wasmtime.
    if name == "LocalNet":
        from localnet.net import LocalNet

        return LocalNet
    raise AttributeError(name)
