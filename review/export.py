"""Write conversations as JSONL or CSV: one row per message, same columns.

The columns and their reading-back live in training/feedback.py, the
training pipeline's reader of this export.
"""
import csv
import json
from dataclasses import dataclass

from django.db.models import Prefetch
from tqdm import tqdm

from accounts.models import AccountSettings
from chat.models import Conversation, Message
from chat.records import GenerationRecord
from review.models import ReviewLabel
from training.feedback import EXPORT_COLUMNS, csv_cell

FORMATS = ("jsonl", "csv")


@dataclass
class ExportSummary:
    conversations: int
    messages: int
    consented_only: bool
    left_out_unconsented: int  # conversations matched but left out for lack of consent

    def describe(self):
        scope = (
            "only users who allow training use"
            if self.consented_only
            else "ALL users, including those who did not allow training use (for review, not for training)"
        )
        text = f"Exported {self.conversations} conversations ({self.messages} messages) of {scope}."
        if self.consented_only and self.left_out_unconsented:
            text += f" Left out {self.left_out_unconsented} conversations of users who did not allow it."
        return text


def message_rows(conversations, progress=False):
    """Export rows for every message of the given conversations, in order."""
    consenting = set(AccountSettings.objects.filter(allow_training_use=True).values_list("user_id", flat=True))
    messages = Message.objects.order_by("created", "id").prefetch_related(
        "ratings", Prefetch("review_labels", ReviewLabel.objects.select_related("author"))
    )
    conversations = conversations.order_by("created", "id").prefetch_related(Prefetch("messages", messages))
    # In chunks, prefetching each chunk's messages: memory stays flat on a large export.
    chunks = conversations.iterator(chunk_size=200)
    total = conversations.count() if progress else None
    for conversation in tqdm(chunks, total=total, desc="Exporting conversations", unit="conv", disable=not progress):
        for message in conversation.messages.all():
            yield _row(conversation, message, conversation.owner_id in consenting)


def _row(conversation, message, owner_allows_training):
    ratings = [
        {
            "score": rating.score,
            "comment": rating.comment,
            "user_id": rating.user_id,
            "updated": rating.updated.isoformat(),
        }
        for rating in message.ratings.all()
    ]
    labels = [
        {
            "label": label.label,
            "note": label.note,
            "author": label.author.get_username() if label.author else "",
            "created": label.created.isoformat(),
        }
        for label in message.review_labels.all()
    ]
    return {
        "conversation_id": conversation.pk,
        "conversation_title": conversation.title,
        "character": conversation.character,
        "owner_id": conversation.owner_id,
        "owner_allows_training": owner_allows_training,
        "message_id": message.pk,
        "role": message.role,
        "text": message.text,
        "status": message.status,
        "created": message.created.isoformat(),
        "reply_to_id": message.reply_to_id,
        "is_chosen": message.is_chosen,
        **GenerationRecord.of_message(message).columns(),
        "error": message.error,
        "mean_rating": sum(r["score"] for r in ratings) / len(ratings) if ratings else None,
        "ratings": ratings,
        "labels": labels,
    }


def write_export(conversations, handle, file_format, consented_only, progress=False):
    """Write the conversations' messages to an open text file; returns an ExportSummary.

    With consented_only, conversations of owners who did not allow training
    use are left out and counted.
    """
    if file_format not in FORMATS:
        raise ValueError(f"Unknown export format {file_format!r}: choose one of {', '.join(FORMATS)}")
    matched = conversations.count()
    if consented_only:
        conversations = conversations.filter(owner__account_settings__allow_training_use=True)
    if file_format == "csv":
        writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
    n_messages = 0
    for row in message_rows(conversations, progress):
        if file_format == "csv":
            writer.writerow({column: csv_cell(value) for column, value in row.items()})
        else:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        n_messages += 1
    exported = conversations.count()
    return ExportSummary(exported, n_messages, consented_only, matched - exported)


def matching_conversations(criteria):
    """The conversations an export with these criteria covers, before consent."""
    return Conversation.objects.filter(criteria.conversation_q()).select_related("owner")
