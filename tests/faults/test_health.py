"""The health check the containers use."""

import pytest

pytestmark = pytest.mark.django_db


def test_healthz_answers_ok_while_the_database_is_reachable(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.content == b"ok"



@pytest.mark.django_db(transaction=True)
def test_healthz_says_the_database_is_unreachable_and_no_more(client):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("made to happen by pointing the PostgreSQL connection at a port nothing listens on")
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "1"
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
    # The error names the host, the port and the database user: the log gets it, an anonymous caller does not.
    assert response.status_code == 503 and response.content == b"database unreachable"
