"""The JSON shapes of conversations and messages, shared by the API and the socket frames."""


def conversation_dict(conversation):
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "character": conversation.character,
        "created": conversation.created.isoformat(),
        "updated": conversation.updated.isoformat(),
    }


def rating_dict(rating):
    if rating is None:
        return None
    return {"score": rating.score, "comment": rating.comment, "updated": rating.updated.isoformat()}


def message_dict(message, rating=None):
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
    if message.role == message.Role.BOT:
        data["error"] = message.error
        data["rating"] = rating_dict(rating)
        data["record"] = {
            "profile": message.profile,
            "generator_model": message.generator_model,
            "retriever_model": message.retriever_model,
            "parameters": message.parameters,
            "retrieved": (
                {
                    "text": message.retrieved_text,
                    "score": message.retrieved_score,
                    "episode": message.retrieved_episode,
                    "scene": message.retrieved_scene,
                }
                if message.retrieved_text
                else None
            ),
            "seconds": message.seconds,
            "new_tokens": message.new_tokens,
            "worker": message.worker,
            "attempts": message.attempts,
            "fallback": message.fallback,
        }
    return data
