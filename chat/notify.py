"""Frames for every open socket of a conversation, through the channel layer.

Each conversation has a group; its consumers join it and relay what arrives
(`chat.frame` events) to their sockets unchanged.
"""
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def conversation_group(conversation_id):
    return f"conversation-{conversation_id}"


def frame_event(frame):
    return {"type": "chat.frame", "frame": frame}


def send_frame(conversation_id, frame):
    """Send one server frame to the conversation's sockets (from sync code)."""
    async_to_sync(get_channel_layer().group_send)(conversation_group(conversation_id), frame_event(frame))
