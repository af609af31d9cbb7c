"""Site-wide views that belong to no app."""

from django.db import connection
from django.http import HttpRequest, HttpResponse


def healthz(request: HttpRequest) -> HttpResponse:
    """200 while this process can serve and reach the database (container health checks)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # any database failure means "not healthy", with the reason
        return HttpResponse(f"database unreachable: {error}", status=503, content_type="text/plain")
    return HttpResponse("ok", content_type="text/plain")
