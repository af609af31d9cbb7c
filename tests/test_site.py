"""Site-wide views that belong to no app (the health check has its own tests in tests/faults/)."""
import pytest
from django.contrib.staticfiles import finders
from django.templatetags.static import static

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.django_db
def test_the_site_icon_is_a_png_that_every_page_can_find(client):
    icon = finders.find("favicon.png")
    assert icon is not None
    with open(icon, "rb") as file:
        assert file.read(8) == PNG_SIGNATURE
    # The site's pages name it; browsers ask /favicon.ico on the pages that do not (the admin's).
    login = client.get("/accounts/login/")
    assert f'<link rel="icon" type="image/png" href="{static("favicon.png")}">' in login.content.decode()
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == static("favicon.png")
