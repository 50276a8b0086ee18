"""Rebuild every canister with the pinned moc and compare with the committed Wasm.

The committed Wasm is what users without Node deploy, so it must be exactly
what the committed sources produce. Exit 1 names every file that differs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _expected() -> dict[str, Path]:
    manifest = json.loads((ROOT / "canisters.json").read_text())
    wasm: dict[str, Path] = {}
    for entry in manifest["canisters"]:
        out_dir = ROOT / entry["out_dir"]
        if "dir" in entry:
            for main in sorted((ROOT / entry["dir"]).glob("*/Main.mo")):
                wasm[main.parent.name] = out_dir / f"{main.parent.name}.wasm"
        else:
            wasm[entry["name"]] = out_dir / f"{entry['name']}.wasm"
    return wasm


def _stale_manifests(expected: dict[str, Path], rebuilt_dir: Path) -> list[str]:
    """Every committed SHA256SUMS must list exactly the rebuilt hashes of its folder."""
    rebuilt = {
        line.split()[1]: line.split()[0]
        for line in (rebuilt_dir / "SHA256SUMS").read_text().splitlines()
    }
    bad = []
    for out_dir in sorted({path.parent for path in expected.values()}):
        manifest = out_dir / "SHA256SUMS"
        names = {p.name for p in expected.values() if p.parent == out_dir}
        want = {name: rebuilt[name] for name in names}
        have = {}
        if manifest.exists():
            have = {ln.split()[1]: ln.split()[0] for ln in manifest.read_text().splitlines()}
        if have != want:
            bad.append(f"{manifest.relative_to(ROOT)}: stale (run `make canisters`)")
    return bad


def main() -> int:
    expected = _expected()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                "node",
                str(ROOT / "tools/moc/build.js"),
                str(ROOT / "canisters.json"),
                "--out-dir",
                tmp,
            ],
            check=True,
        )
        bad = []
        for name, committed in expected.items():
            rebuilt = Path(tmp) / f"{name}.wasm"
            if not committed.exists():
                bad.append(f"{committed.relative_to(ROOT)}: not committed (run `make canisters`)")
            elif committed.read_bytes() != rebuilt.read_bytes():
                bad.append(f"{committed.relative_to(ROOT)}: differs from a rebuild of its source")
        bad += _stale_manifests(expected, Path(tmp))
    for line in bad:
        print(line, file=sys.stderr)
    if not bad:
        print(f"{len(expected)} canisters rebuilt byte for byte")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
