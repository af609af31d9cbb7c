"""Create the PostgreSQL database named by DATABASE_URL when it does not exist yet."""
import os
import sys
from urllib.parse import urlparse

import psycopg
from psycopg import sql


def main():
    url = os.environ.get("DATABASE_URL", "")
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql", "pgsql"):
        return  # SQLite (or another engine) needs nothing here
    name = parsed.path.lstrip("/")
    try:
        psycopg.connect(url, connect_timeout=5).close()
        return
    except psycopg.OperationalError as error:
        if f'database "{name}" does not exist' not in str(error):
            sys.exit(f"PostgreSQL at {parsed.hostname}:{parsed.port or 5432} cannot be reached: {error}")
    maintenance = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    print(f"Created the database {name!r}")


if __name__ == "__main__":
    main()
