"""Sha256.mo's unrolled loops are exactly what their generator writes.

The generator (canister_iface/motoko/tools/gen_sha256_compress.py) once fell
behind hand edits of the file; this keeps the two from drifting apart.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOOL = Path(__file__).parents[2] / "canister_iface" / "motoko" / "tools" / "gen_sha256_compress.py"


def test_the_generated_section_is_the_generators_output() -> None:
    spec = importlib.util.spec_from_file_location("gen_sha256_compress", TOOL)
    assert spec is not None
    assert spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text = gen.TARGET.read_text()
    section = text.split(gen.BEGIN, 1)[1].split(gen.END, 1)[0]
    assert section == gen.generated(), (
        "rerun python3 canister_iface/motoko/tools/gen_sha256_compress.py"
    )
