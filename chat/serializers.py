"""The JSON shapes of conversations and messages, shared by the API and the socket frames."""
from .models import Conversation, Message, Rating
from .records import GenerationRecord


def conversation_dict(conversation: Conversation) -> dict:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "character": conversation.character,
        "created": conversation.created.isoformat(),
        "updated": conversation.updated.isoformat(),
    }


def rating_dict(rating: Rating | None) -> dict | None:
    if rating is None:
        return None
    return {"score": rating.score, "comment": rating.comment, "updated": rating.updated.isoformat()}


def message_dict(message: Message, rating: Rating | None = None) -> dict:
    """A stored message; bot messages carry their generation record."""
    data = {
        "id": message.pk,
        "conversation": message.conversation_id,
        "role": message.role,
        "text": message.text,
        "status": message.status,
        "created": message.created.isoformat(),
        "reply_to": message.reply_to_id,
        "is_chosen": message.is_chosen,
    }
    if message.role == Message.Role.BOT:
        data["error"] = message.error
        data["rating"] = rating_dict(rating)
        data["record"] = GenerationRecord.of_message(message).as_json()
    return data
