"""localnet driven by DFINITY's own clients: third-party conformance tests.

- ``@dfinity/agent`` (the JS agent of every frontend; ``clients/agent_js.mjs``):
  update calls, queries with node-signature verification on, ``CanisterStatus``
  paths (time, controllers, module_hash, subnet), ``fetchSubnetKeys``,
  management canister calls as controller and as a stranger, creating a
  canister on a chosen subnet (by the effective canister id, as on PocketIC),
  an inter-canister call.
- ``icp`` (icp-cli, a Rust binary on agent-rs): canister status, stop / start,
  ``canister call``, snapshots create / list / download / restore, and upload
  into another canister followed by restore.

Both run against one subnet, two subnets (the second certified through a
delegation from the root subnet) and two subnets with the subnet model. The
versions are pinned in ``tools/clients/package.json``; ``tools/install-clients.sh``
installs them (``make test`` does). Without them the tests skip, except under
CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from localnet import LocalNet, ids
from localnet.certification import self_authenticating_id
from localnet.fabric import SubnetModel

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "tools" / "clients" / "node_modules"
ICP = CLIENTS / "@icp-sdk" / "icp-cli-linux-x64" / "bin" / "icp"
AGENT_JS = Path(__file__).parent / "clients" / "agent_js.mjs"
WASM = ROOT / "tests" / "canisters" / "wasm"
COUNTER = (WASM / "counter.wasm").read_bytes()
CALLER = (WASM / "caller.wasm").read_bytes()
CLIENT_TIMEOUT_S = 240

LAYOUTS = {
    "one-subnet": {"subnets": 1},
    "two-subnets": {"subnets": 2},
    "two-subnets-rounds": {"subnets": 2, "subnet_model": SubnetModel(rounds_per_second=20)},
}


def _require(path: Path, what: str) -> Path:
    if path.exists() and (what != "node" or shutil.which("node")):
        return path
    message = f"{what} is not installed ({path}); run tools/install-clients.sh (make test does)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must not skip the official-client tests")
    pytest.skip(message)


@dataclass
class Key:
    seed: bytes

    @classmethod
    def generate(cls) -> Key:
        return cls(os.urandom(32))

    @property
    def private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def principal(self) -> bytes:
        der = self.private.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        return self_authenticating_id(der)

    def pem(self) -> bytes:
        return self.private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


@dataclass
class Deployment:
    net: LocalNet
    me: Key
    counters: list[bytes]  # one per subnet
    caller: bytes  # on the root subnet


@pytest.fixture(params=list(LAYOUTS))
async def deployment(request: pytest.FixtureRequest) -> AsyncIterator[Deployment]:
    me = Key.generate()
    async with LocalNet(**LAYOUTS[request.param]) as net:
        counters = []
        for subnet in range(len(net.subnets)):
            canister = await net.create_canister(controllers=[me.principal], subnet=subnet)
            await net.install_code(canister, COUNTER, caller=me.principal)
            counters.append(canister)
        caller = await net.create_canister(controllers=[me.principal])
        await net.install_code(caller, CALLER, caller=me.principal)
        yield Deployment(net, me, counters, caller)


async def _run(*argv: str | Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *map(str, argv),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    output, _ = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT_S)
    return await process.wait(), output.decode(errors="replace")


# --------------------------------------------------------------------- agent-js


async def test_agent_js(deployment: Deployment, tmp_path: Path) -> None:
    _require(CLIENTS / "@dfinity" / "agent", "node")
    net = deployment.net
    config = {
        "url": net.url,
        "node_modules": str(CLIENTS),
        "seed_hex": deployment.me.seed.hex(),
        "stranger_seed_hex": Key.generate().seed.hex(),
        "canisters": [
            {
                "id": ids.to_text(canister),
                "subnet_id": ids.to_text(net.subnet_of(canister).subnet_id),
                "module_hash": hashlib.sha256(COUNTER).hexdigest(),
                "range": [ids.to_text(i) for i in net.subnet_of(canister).canister_ranges[0]],
            }
            for canister in deployment.counters
        ],
        "caller": ids.to_text(deployment.caller),
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    code, output = await _run("node", AGENT_JS, tmp_path / "config.json")
    print(output)
    assert code == 0, output
    assert " 0 failed" in output.splitlines()[-1]


# ---------------------------------------------------------------------- icp-cli


class Icp:
    """The ``icp`` binary with a throw-away home and an imported identity."""

    def __init__(self, net: LocalNet, home: Path) -> None:
        self.net = net
        self.home = home
        self.env = {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"),
            "NO_COLOR": "1",
        }

    async def __call__(self, *args: str | Path, ok: bool = True) -> str:
        started = time.monotonic()
        code, output = await _run(ICP, *args, env=self.env)
        shown = " ".join(map(str, args)).replace(self.net.url, "URL")
        print(f"$ icp {shown}  [{code}, {time.monotonic() - started:.1f} s]\n{output.strip()}")
        if ok and code != 0:
            raise AssertionError(f"icp {' '.join(map(str, args))} exited {code}:\n{output}")
        if not ok and code == 0:
            raise AssertionError(f"icp {' '.join(map(str, args))} succeeded:\n{output}")
        return output

    def network(self) -> list[str]:
        return ["--network", self.net.url, "--root-key", "fetch"]

    async def canister(self, *args: str | Path, ok: bool = True) -> str:
        return await self("canister", *args, *self.network(), ok=ok)


@pytest.fixture
async def icp(deployment: Deployment, tmp_path: Path) -> Icp:
    _require(ICP, "icp-cli")
    client = Icp(deployment.net, tmp_path / "home")
    client.home.mkdir()
    pem = tmp_path / "me.pem"
    pem.write_bytes(deployment.me.pem())
    await client("identity", "import", "me", "--from-pem", pem, "--storage", "plaintext")
    await client("identity", "default", "me")
    principal = (await client("identity", "principal")).strip().splitlines()[-1]
    assert principal == ids.to_text(deployment.me.principal)
    return client


async def test_icp_cli(deployment: Deployment, icp: Icp, tmp_path: Path) -> None:
    for index, canister in enumerate(deployment.counters):
        await _icp_round_trip(deployment, icp, canister, tmp_path / f"subnet{index}")


async def _icp_round_trip(deployment: Deployment, icp: Icp, canister: bytes, work: Path) -> None:
    net, text = deployment.net, ids.to_text(canister)
    status = await icp.canister("status", text)
    assert "Running" in status or "running" in status, status
    assert hashlib.sha256(COUNTER).hexdigest() in status.lower(), status
    await icp.canister("call", text, "set", "(41 : nat)")
    assert "(42 : nat)" in await icp.canister("call", text, "inc", "()")

    await icp.canister("stop", text)
    assert "topped" in await icp.canister("status", text)
    created = await icp.canister("snapshot", "create", text)
    listed = await icp.canister("snapshot", "list", text)
    snapshot = _snapshot_id(created, listed)
    await asyncio.to_thread(work.mkdir)
    await icp.canister("snapshot", "download", text, snapshot, "--output", work)
    await icp.canister("start", text)
    await icp.canister("call", text, "set", "(7 : nat)")

    # Restore the snapshot into the canister itself: 42 again.
    await icp.canister("stop", text)
    await icp.canister("snapshot", "restore", text, snapshot)
    await icp.canister("start", text)
    assert "(42 : nat)" in await icp.canister("call", text, "get", "()")

    # Upload the downloaded snapshot into a fresh canister on the same subnet; restore it.
    subnet = net.subnet_of(canister).index
    copy = await net.create_canister(controllers=[deployment.me.principal], subnet=subnet)
    await net.install_code(copy, COUNTER, caller=deployment.me.principal)
    copy_text = ids.to_text(copy)
    await icp.canister("stop", copy_text)
    uploaded = await icp.canister("snapshot", "upload", copy_text, "--input", work)
    copy_snapshot = _snapshot_id(uploaded, await icp.canister("snapshot", "list", copy_text))
    await icp.canister("snapshot", "restore", copy_text, copy_snapshot)
    await icp.canister("start", copy_text)
    assert "(42 : nat)" in await icp.canister("call", copy_text, "get", "()")


def _snapshot_id(created: str, listed: str) -> str:
    """The hex snapshot id the command printed that the list also shows."""
    for candidate in re.findall(r"\b[0-9a-f]{20,}\b", created):
        if candidate in listed:
            return candidate
    raise AssertionError(f"no snapshot id in:\n{created}\nthat the list shows:\n{listed}")
