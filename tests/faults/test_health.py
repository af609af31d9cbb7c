"""The health check the containers use."""

import pytest

pytestmark = pytest.mark.django_db


def test_healthz_answers_ok_while_the_database_is_reachable(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.content == b"ok"
