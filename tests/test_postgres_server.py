"""The throwaway PostgreSQL server the tests use, on both of its sources of binaries."""

import psycopg

from tests.support.postgres_server import PostgresServer, postgres_server, wheel_bin_dir


def test_each_test_gets_its_own_empty_database(postgres: PostgresServer) -> None:
    first, second = postgres.create_database(), postgres.create_database()
    assert first != second
    with psycopg.connect(first) as conn:
        conn.execute("CREATE TABLE t (x int)")
    with psycopg.connect(second) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 't'").fetchone()
    assert tables == (0,)


def test_a_machine_without_postgresql_uses_the_wheels_server() -> None:
    """What a fresh machine runs: the binaries shipped on PyPI, not the system's."""
    server = PostgresServer(bin_dir=wheel_bin_dir())
    with server:
        with psycopg.connect(server.url) as conn:
            row = conn.execute("SELECT current_setting('data_directory')").fetchone()
        assert row is not None
        assert row[0] == str(server.data_dir)
    assert not server.root.exists()


def test_the_server_is_removed_when_the_block_ends() -> None:
    with postgres_server() as server:
        root = server.root
        assert (server.data_dir / "PG_VERSION").exists()
    assert not root.exists()
