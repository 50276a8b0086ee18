"""localnet in a child process, for benchmarks and end-to-end tests.

A separate process keeps localnet's CPU (and GIL) apart from the client's, as
a real replica would be, and lets tests kill and restart it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from localnet.subnet_model import SubnetModel

_STARTUP_SECONDS = 60


class LocalNetProcess:
    def __init__(
        self,
        *,
        state_dir: Path | None = None,
        seed: int = 0,
        port: int = 0,
        subnets: int = 1,
        subnet_model: SubnetModel | str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        """``subnets``: as ``--subnets``; ``subnet_model``: None (no rounds), a
        :class:`SubnetModel`, or ``--subnet-model``'s text (``""``: the defaults,
        ``"rounds_per_second=20,..."``); ``extra_args``: more CLI flags."""
        if isinstance(subnet_model, SubnetModel):
            subnet_model = subnet_model.to_arg()
        self._args = [sys.executable, "-m", "localnet", "--port", str(port), "--seed", str(seed)]
        self._args += ["--subnets", str(subnets)]
        if state_dir is not None:
            self._args += ["--state-dir", str(state_dir)]
        if subnet_model is not None:
            self._args += [f"--subnet-model={subnet_model}"]
        self._args += list(extra_args)  # e.g. ["--max-live-canisters", "10"]
        self._proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.root_key = b""
        # Subnet ids (textual) in subnet order, from the banner.
        self.subnet_ids: list[str] = []

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (its RSS is in /proc/<pid>/status)."""
        return self._proc.pid if self._proc is not None else None

    async def __aenter__(self) -> LocalNetProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *self._args, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        await asyncio.wait_for(self._read_banner(), _STARTUP_SECONDS)

    async def _read_banner(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        expected = int(self._args[self._args.index("--subnets") + 1])
        while not (self.url and self.root_key and len(self.subnet_ids) == expected):
            line = (await self._proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError(
                    f"localnet exited with {await self._proc.wait()} before starting"
                )
            if line.startswith("localnet listening on "):
                self.url = line.split()[-1]
            elif line.startswith("root key: "):
                self.root_key = bytes.fromhex(line.split()[-1])
            elif line.startswith("subnet ") and line.split()[1].rstrip(":").isdigit():
                self.subnet_ids.append(line.split()[2])

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the process (SIGTERM: clean, saves state; SIGKILL: a crash)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return 0
        if proc.returncode is None:
            proc.send_signal(sig)
        return await proc.wait()
