"""msgpack with types: the one binary codec of the orchestrator.

Checkpoints (job states), job identities and archive frames are msgpack maps
of plain values (str, int, float, bool, None, bytes, lists, maps).
``msgpack`` ships no type information, so this module gives mypy a typed
surface and fixes the options once: ``bin`` for bytes, ``str`` for text, no
ext types, string map keys only.  Archive files keep these options for good
(``tests/vectors/archive-v1.icra``).  CBOR is not an alternative here but
the IC's wire format, spoken by ``canister_iface`` alone.
"""

from __future__ import annotations

from typing import Any, cast

import msgpack


class DecodeError(ValueError):
    """Bytes that are not one msgpack value of the expected shape."""


def pack(value: object) -> bytes:
    """Encode ``value``; raises ``TypeError`` for anything but plain values."""
    return cast(bytes, msgpack.packb(value, use_bin_type=True, strict_types=False))


def unpack(data: bytes, *, max_bin_len: int = 64 * 1024 * 1024) -> object:
    """Decode exactly one value; raises :class:`DecodeError`."""
    try:
        return cast(
            object,
            msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=True,
                max_bin_len=max_bin_len,
                max_str_len=1024 * 1024,
                max_array_len=1024 * 1024,
                max_map_len=4096,
                max_ext_len=0,
            ),
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise DecodeError(f"not a valid msgpack value: {exc}") from exc


def unpack_map(data: bytes, what: str, *, max_bin_len: int = 64 * 1024 * 1024) -> dict[str, Any]:
    """Decode a map with string keys; ``what`` names it in the error."""
    value = unpack(data, max_bin_len=max_bin_len)
    if not isinstance(value, dict):
        raise DecodeError(f"{what}: expected a msgpack map, got {type(value).__name__}")
    return cast(dict[str, Any], value)
