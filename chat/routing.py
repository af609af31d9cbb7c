from django.urls import path, re_path

from .consumers import ConversationConsumer, UnknownPathConsumer

websocket_urlpatterns = [
    path("ws/conversations/<int:conversation_id>/", ConversationConsumer.as_asgi()),
    re_path(r"", UnknownPathConsumer.as_asgi()),
]
