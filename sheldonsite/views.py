"""Site-wide views that belong to no app."""

import logging

from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.templatetags.static import static

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> HttpResponse:
    """200 while this process can serve and reach the database (container health checks)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # any database failure means "not healthy"; its details (host, user) go to the log only
        logger.exception("Health check: the database is unreachable")
        return HttpResponse("database unreachable", status=503, content_type="text/plain")
    return HttpResponse("ok", content_type="text/plain")


def favicon(request: HttpRequest) -> HttpResponse:
    """Where browsers look for the site's icon when a page names none (Django's admin pages)."""
    return HttpResponsePermanentRedirect(static("favicon.png"))
