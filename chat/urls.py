from django.urls import path

from . import api, views

app_name = "chat"
urlpatterns = [
    path("", views.chat_page, name="index"),
    path("c/<int:conversation_id>/", views.chat_page, name="conversation"),
    path("api/conversations/", api.conversations, name="api-conversations"),
    path("api/conversations/<int:conversation_id>/", api.conversation, name="api-conversation"),
    path("api/conversations/<int:conversation_id>/messages/", api.messages, name="api-messages"),
    path("api/messages/<int:message_id>/rating/", api.rating, name="api-rating"),
    path("api/messages/<int:message_id>/choose/", api.choose, name="api-choose"),
    path("api/search/", api.search, name="api-search"),
    path("api/export/", api.export, name="api-export"),
    path("api/status/", api.status, name="api-status"),
]
