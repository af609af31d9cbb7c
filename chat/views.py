"""The chat page: one template for the empty start and for an open conversation."""
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from .models import Conversation


@login_required
def chat_page(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    if conversation_id is not None:
        get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    page_settings = {
        "conversationId": conversation_id,
        "character": settings.SHELDON_CHARACTER,
        "maxChars": settings.CHAT_MAX_MESSAGE_CHARS,
        "resyncSeconds": settings.CHAT_RESYNC_SECONDS,
    }
    return render(request, "chat/chat.html", {"page_settings": page_settings})
