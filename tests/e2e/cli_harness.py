"""End-to-end helpers: localnet in a child process, an identity file, and the CLI as a user runs it.

The ``replicator`` command runs as a subprocess (``python -m replicator.cli``
with this interpreter), against a localnet child process, configured by a
TOML file that pins localnet's root key (as a user would for a network whose
key they know) rather than fetching it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from icp_candid import Types

from canister_iface.agent import Agent
from canister_iface.candid_value import encode_value, encode_values
from canister_iface.icrp import IcrpClient
from canister_iface.identity import Identity
from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings
from canister_iface.principal import Principal
from replicator.cli.demo.app import DemoApp, Stats

ROOT = Path(__file__).parents[2]
BACKUP_WASM = ROOT / "canister_iface" / "wasm" / "backup.wasm"
_BACKUP_INIT = Types.Record(
    {"source": Types.Principal, "keep": Types.Opt(Types.Nat), "peers": Types.Vec(Types.Principal)}
)
_STARTUP_S = 60
# A [limits] section for tests whose subject is not a rate: every limit stays on,
# none paces a copy from localnet. Under the defaults (2 MiB/s, 10 calls/s) each
# snapshot of a small Motoko canister (24 MiB: its heap and a stable region)
# takes 12 s to back up and as long to restore. Tests of pacing pass
# --bytes-per-second, which overrides this.
UNPACED_LIMITS = """[limits]
calls_per_second = 500
bytes_per_second = "512 MiB"
"""


@dataclass
class Net:
    """A localnet child process."""

    url: str
    root_key: bytes
    proc: subprocess.Popen[str]
    state_dir: Path | None = None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_localnet(state_dir: Path | None = None, port: int = 0) -> Net:
    args = [sys.executable, "-m", "localnet", "--port", str(port)]
    if state_dir is not None:
        args += ["--state-dir", str(state_dir)]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url, key = "", b""
    assert proc.stdout is not None
    while not (url and key):
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"localnet exited with {proc.wait(_STARTUP_S)} before starting")
        if line.startswith("localnet listening on "):
            url = line.split()[-1]
        elif line.startswith("root key: "):
            key = bytes.fromhex(line.split()[-1])
    return Net(url, key, proc, state_dir)


@dataclass
class Cli:
    """Runs ``replicator`` against one localnet as one identity, with one state file."""

    net: Net
    pem: Path
    config: Path
    state: Path
    env: dict[str, str] = field(default_factory=dict)

    def args(self, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "replicator.cli",
            "--config",
            str(self.config),
            "--state",
            str(self.state),
            *args,
        ]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.args(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
            cwd=ROOT,
        )

    @contextmanager
    def serving(self, log: Path) -> Iterator[subprocess.Popen[bytes]]:
        """``replicator serve`` in the background, its log in ``log``; killed on exit."""
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                self.args("serve"),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=ROOT,
                env={**os.environ, **self.env},
            )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.args(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **self.env},
            cwd=ROOT,
        )

    def identity(self) -> Identity:
        return Identity.from_pem_file(self.pem)

    def agent(self) -> Agent:
        return Agent(self.net.url, self.identity(), network="local", root_key=self.net.root_key)

    def deploy_demo(self, mib: int, seed: int = 1) -> Principal:
        async def deploy() -> Principal:
            async with self.agent() as agent:
                app = await DemoApp.deploy(agent, self.identity().principal)
                await app.generate(mib, seed)
                return app.canister_id

        return asyncio.run(deploy())

    def trust_each_other(self, a: Principal, b: Principal) -> None:
        """Make two ICRP canisters peers of each other (what a push needs)."""

        async def trust() -> None:
            async with self.agent() as agent:
                await IcrpClient(agent, a).set_peers([b])
                await IcrpClient(agent, b).set_peers([a])

        asyncio.run(trust())

    def create_backup(self, source: Principal) -> Principal:
        """A backup canister for ``source``, installed by hand (as a user with dfx would)."""

        async def create() -> Principal:
            async with self.agent() as agent:
                mgmt = ManagementClient(agent)
                canister = await mgmt.provisional_create_canister_with_cycles(
                    amount=10**14,
                    settings=CanisterSettings(controllers=(self.identity().principal,)),
                )
                init = {"source": source.raw, "keep": [], "peers": []}
                await mgmt.install_code(
                    canister, BACKUP_WASM.read_bytes(), arg=encode_value(_BACKUP_INIT, init)
                )
                return canister

        return asyncio.run(create())

    def image_digest(self, canister: Principal) -> bytes | None:
        """The digest of ``canister``'s current image: its newest, or a fresh export's."""

        async def digest() -> bytes | None:
            async with self.agent() as agent:
                icrp = IcrpClient(agent, canister)
                info = await icrp.info()
                if info.image is not None and info.image.digest is not None:
                    return info.image.digest
                ticket = await icrp.wait_ready(await icrp.begin_export())
                await icrp.end_export(ticket.snapshot_id)
                return ticket.digest

        return asyncio.run(digest())

    def wipe(self, canister: Principal) -> None:
        async def wipe() -> None:
            async with self.agent() as agent:
                await DemoApp(agent, canister).wipe()

        asyncio.run(wipe())

    def deploy_wasm(self, wasm: Path) -> Principal:
        """A canister running ``wasm`` (no init argument), controlled by this identity."""

        module = wasm.read_bytes()

        async def deploy() -> Principal:
            async with self.agent() as agent:
                mgmt = ManagementClient(agent)
                canister = await mgmt.provisional_create_canister_with_cycles(
                    amount=10**14,
                    settings=CanisterSettings(controllers=(self.identity().principal,)),
                )
                await mgmt.install_code(canister, module)
                return canister

        return asyncio.run(deploy())

    def peers(self, *canisters: Principal) -> dict[Principal, frozenset[Principal]]:
        """Whom each canister trusts (``icrp_peers``)."""

        async def peers() -> dict[Principal, frozenset[Principal]]:
            async with self.agent() as agent:
                return {c: frozenset((await IcrpClient(agent, c).peers()).peers) for c in canisters}

        return asyncio.run(peers())

    def stats(self, canister: Principal) -> Stats:
        async def stats() -> Stats:
            async with self.agent() as agent:
                return await DemoApp(agent, canister).stats()

        return asyncio.run(stats())


def write_pem(path: Path) -> Path:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


def write_config(path: Path, net: Net, pem: Path, extra: str = "") -> Path:
    path.write_text(
        f"""network = "local"

[networks.local]
url = "{net.url}"
root_key = "{net.root_key.hex()}"

[identity]
pem = "{pem}"

{extra}
"""
    )
    return path


def json_lines(text: str) -> list[dict[str, object]]:
    """Every JSON object printed, one per line (other lines are a failure)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class AppWriter(threading.Thread):
    """Creates users in the demo app (``w0``, ``w1``, … tagged ``tag``), one update
    after another with ``pause`` seconds between, until ``done`` is set; ``count``
    says how many were acknowledged."""

    def __init__(self, cli: Cli, app: Principal, tag: str, pause: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.cli, self.app, self.tag, self.pause = cli, app, tag, pause
        self.done = threading.Event()
        self.count = 0

    def run(self) -> None:
        async def write() -> None:
            async with self.cli.agent() as agent:
                while not self.done.is_set():
                    arg = encode_values([(Types.Text, f"w{self.count}"), (Types.Text, self.tag)])
                    await agent.update(self.app.raw, "create_user", arg)
                    self.count += 1
                    if self.pause:
                        await asyncio.sleep(self.pause)

        asyncio.run(write())
