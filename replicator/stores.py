"""Which checkpoint store a command uses: a SQLite file, or a shared PostgreSQL server.

``--state PATH`` (or ``checkpoints = PATH``) is a SQLite file
(:class:`~replicator.checkpoints.SqliteStore`, the default); ``--state
postgresql://…`` (or ``[store] url``) is a PostgreSQL database
(:class:`~replicator.pgstore.PostgresStore`) that several orchestrators share.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from replicator.checkpoints import SqliteStore, Store
from replicator.config import Config
from replicator.errors import UsageError
from replicator.pgstore import PostgresStore, is_url, redact


def describe(location: Path | str) -> str:
    """The store for messages (a URL without its password)."""
    return redact(location) if isinstance(location, str) and is_url(location) else str(location)


def exists(location: Path | str) -> bool:
    """Is there a store to read (a server always is; a file may be missing)?"""
    return is_url(location) or Path(location).exists()


async def open_state(location: Path | str, *, read_only: bool = False) -> Store:
    """The store at ``location`` (a file path or a ``postgresql://`` URL), ready to use."""
    if isinstance(location, str) and is_url(location):
        return await PostgresStore.open(location)
    return await asyncio.to_thread(open_sqlite, Path(location), read_only=read_only)


async def open_configured(config: Config, *, read_only: bool = False) -> Store:
    """The store of ``config``: ``[store] url`` / ``--state URL``, else the SQLite file."""
    return await open_state(config.state, read_only=read_only)


def open_sqlite(path: Path, *, read_only: bool = False) -> SqliteStore:
    """The SQLite store at ``path``; a path that cannot hold it is a usage error."""
    try:
        return SqliteStore(path, read_only=read_only)
    except OSError as exc:
        raise UsageError(
            f"cannot use {path} for checkpoints: {exc.strerror or exc}; choose another --state "
            "(or checkpoints = ... in the config file)"
        ) from None
