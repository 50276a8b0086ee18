"""The platform canister (``canister_iface/wasm/platform.wasm``): its configuration.

The example platform creates a user canister per user and lists them for
fleets; ``platform_configure`` (controllers only) sets what every user
canister it creates gets: its cycles, its controllers and the peers its ICRP
library trusts.
"""

from __future__ import annotations

from collections.abc import Sequence

from icp_candid import Types

from canister_iface.candid_value import encode_value
from canister_iface.principal import Principal

_CONFIG = Types.Record(
    {
        "user_cycles": Types.Nat,
        "fleet_controllers": Types.Vec(Types.Principal),
        "fleet_peers": Types.Vec(Types.Principal),
    }
)


def configure_arg(
    *, user_cycles: int, controllers: Sequence[Principal], peers: Sequence[Principal]
) -> bytes:
    """The Candid argument of ``platform_configure``."""
    config = {
        "user_cycles": user_cycles,
        "fleet_controllers": [p.raw for p in controllers],
        "fleet_peers": [p.raw for p in peers],
    }
    return encode_value(_CONFIG, config)
