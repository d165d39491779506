"""The throwaway PostgreSQL fixture itself: it is real, and restartable."""


def test_server_answers_and_restarts(postgres_server, pg_database):
    assert postgres_server.psql("SELECT 40 + 2", dbname=pg_database) == "42"
    postgres_server.restart()
    assert postgres_server.psql("SELECT current_database()", dbname=pg_database) == pg_database
