"""Every test sees the built-in job kinds registered, as the command line and service do.

PostgreSQL: one throwaway cluster per test session, started on first use
(``pg_cluster.py``); every test that asks for ``pg_url`` gets a fresh database.
"""

from collections.abc import Iterator

import pg_cluster
import pytest

from replicator.flows.builtin import BUILTIN

BUILTIN_KINDS = BUILTIN


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
