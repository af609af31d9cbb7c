"""ASGI entry point: HTTP through Django, WebSockets through Channels."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")
# Django must be set up before the consumers (and their models) are imported.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from chat.routing import websocket_urlpatterns  # noqa: E402
from sheldonsite.websocket import SameOriginValidator, socket_auth_stack  # noqa: E402

if settings.CELERY_TASK_ALWAYS_EAGER:
    # No workers (no REDIS_URL): this process generates the replies, so it
    # loads the models now, in the background, not inside the first reply.
    from chat.warmup import warm_up_in_background

    warm_up_in_background()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameOriginValidator(socket_auth_stack(URLRouter(websocket_urlpatterns))),
    }
)
