"""Every test sees the built-in job kinds registered, as the command line and service do.

PostgreSQL: one throwaway cluster per test session, started on first use
(``pg_cluster.py``); every test that asks for ``pg_url`` gets a fresh database.

Compiled canister modules: one folder per test session, shared by every
localnet the tests start, in the test process or in a child
(``LOCALNET_COMPILE_CACHE``): each module is compiled once per session, not
once per localnet.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator

import pg_cluster
import pytest

from localnet.net import COMPILE_CACHE_ENV
from replicator.flows.builtin import BUILTIN

BUILTIN_KINDS = BUILTIN


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(COMPILE_CACHE_ENV):  # set by the caller (or by xdist's controller)
        return
    folder = tempfile.mkdtemp(prefix="localnet-compiled-")
    os.environ[COMPILE_CACHE_ENV] = folder

    def remove() -> None:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop(COMPILE_CACHE_ENV, None)

    config.add_cleanup(remove)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg_cluster.Cluster]:
    cluster = pg_cluster.start_or_skip()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_server: pg_cluster.Cluster) -> Iterator[str]:
    url = pg_server.new_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)
