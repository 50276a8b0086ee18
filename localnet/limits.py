"""The limits of an IC application subnet, configurable per localnet.

Defaults follow the interface spec (0.66): 2 MiB ingress and inter-canister
payloads, 2 MiB replicated and 3 MiB query responses, 40 B instructions per
update, 5 B per query, 300 B per install. Instruction counts are approximated
with wasmtime fuel (one unit per Wasm operator): close to the IC's count for
plain code, not equal to it; treat limits as orders of magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_ingress_bytes: int = 2 * MiB
    max_inter_canister_payload: int = 2 * MiB
    max_response_bytes: int = 2 * MiB
    max_query_response_bytes: int = 3 * MiB
    update_instructions: int = 40_000_000_000
    query_instructions: int = 5_000_000_000
    install_instructions: int = 300_000_000_000
    max_wasm_module_bytes: int = 100 * MiB  # total for chunked installs
    max_direct_wasm_bytes: int = 2 * MiB  # a module passed inline to install_code
    wasm_chunk_bytes: int = 1 * MiB
    max_chunks_in_store: int = 100
    max_snapshots_per_canister: int = 10
    max_snapshot_read_bytes: int = 2_000_000
    max_canisters: int = 100_000
    max_stable_memory_bytes: int = 500 * 1024 * MiB
    max_heap_bytes: int = 6 * 1024 * MiB

    def with_payload_cap(self, cap: int) -> Limits:
        """Lower every message-size limit to ``cap`` (fault injection)."""
        return replace(
            self,
            max_ingress_bytes=min(self.max_ingress_bytes, cap),
            max_inter_canister_payload=min(self.max_inter_canister_payload, cap),
            max_response_bytes=min(self.max_response_bytes, cap),
            max_query_response_bytes=min(self.max_query_response_bytes, cap),
        )
