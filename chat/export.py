"""A user's own conversations as a file to keep: JSON (everything) or Markdown (to read)."""

import json

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Prefetch
from django.utils import timezone

from .models import Conversation, Message, Rating
from .serializers import conversation_dict, message_dict


def _owned(user: AbstractBaseUser) -> list[tuple[Conversation, list[Message], dict[int, Rating]]]:
    """(conversation, its messages in reading order, the user's ratings by message id) for each conversation."""
    # The messages are read for the conversations read first (by their ids), so a conversation started
    # meanwhile in another tab is left out whole rather than half.
    conversations = Conversation.objects.filter(owner=user).order_by("created", "id").prefetch_related(
        Prefetch("messages", queryset=Message.objects.order_by("id"))
    )
    ratings = {r.message_id: r for r in Rating.objects.filter(user=user)}
    return [(c, list(c.messages.all()), ratings) for c in conversations]


def conversations_json(user: AbstractBaseUser) -> str:
    """Every conversation with every message (alternatives too), in the API's shapes."""
    data = {
        "user": user.get_username(),
        "exported": timezone.now().isoformat(),
        "conversations": [
            {**conversation_dict(c), "messages": [message_dict(m, ratings.get(m.pk)) for m in messages]}
            for c, messages, ratings in _owned(user)
        ],
    }
    return json.dumps(data, ensure_ascii=False, indent=2)


def _quoted(text: str) -> str:
    # Each line quoted, so the text reads as written and no line of it becomes a heading or a list.
    return "\n".join("> " + line if line else ">" for line in text.splitlines() or [""])


def conversations_markdown(user: AbstractBaseUser) -> str:
    """The conversations as they read on the page: the chosen reply of each message."""
    lines = [
        f"# Conversations of {user.get_username()} with Sheldon",
        "",
        f"Exported {timezone.now():%Y-%m-%d %H:%M} UTC.",
        "",
    ]
    for conversation, messages, ratings in _owned(user):
        lines += [
            f"## {' '.join((conversation.title or 'New chat').split())}",  # one line: a heading ends at a break
            "",
            f"Started {conversation.created:%Y-%m-%d %H:%M} UTC.",
            "",
        ]
        for message in messages:
            if not message.is_chosen:
                continue
            speaker = "You" if message.role == Message.Role.USER else conversation.character
            note = "" if message.status == Message.Status.DONE else f" ({message.status})"
            lines += [f"**{speaker}**, {message.created:%Y-%m-%d %H:%M}{note}:", "", _quoted(message.text), ""]
            rating = ratings.get(message.pk)
            if rating and rating.comment:  # quoted like a message: its line breaks are kept, none becomes markup
                lines += [f"*Your rating: {rating.score}/5, with this comment:*", "", _quoted(rating.comment), ""]
            elif rating:
                lines += [f"*Your rating: {rating.score}/5*", ""]
    return "\n".join(lines)
