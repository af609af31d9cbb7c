"""The staff "Compare replies" page's logic: items from sheets and real turns, blind order, scores.

Scores come from training.blind.summarize, the same code as `blind_score`,
so the page's scoreboard and the command's table are one computation.
"""

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import QueryDict

from chat.models import Message
from review.models import ComparisonCandidate, ComparisonItem, ComparisonRating
from training.blind import CONTEXT_LINES, SCALES, BlindError, Judgement, labels, read_items, read_key, summarize

CONVERSATIONS = "conversations"  # the set of items made from real conversation turns


# --- Loading ------------------------------------------------------------------------------------


def load_sheet(folder: str | Path, set_name: str = "") -> tuple[int, int]:
    """Load a blind sheet's items as comparison items; returns (loaded, already there).

    Items already loaded under the same set name are left as they are, so
    loading twice changes nothing.
    """
    folder = Path(folder)
    key, items = read_key(folder), read_items(folder)
    set_name = set_name or folder.resolve().name
    loaded = skipped = 0
    with transaction.atomic():
        for item, shown in items:
            known = key["items"].get(str(item.id))
            if known is None or set(known["labels"]) != set(shown):
                raise BlindError(f"{folder}: items.json and key.json disagree about item {item.id}.")
            if ComparisonItem.objects.filter(set_name=set_name, sheet_item=item.id).exists():
                skipped += 1
                continue
            comparison = ComparisonItem.objects.create(
                set_name=set_name,
                sheet_item=item.id,
                dialogue=[list(pair) for pair in (*item.context, item.line)],
            )
            ComparisonCandidate.objects.bulk_create(
                ComparisonCandidate(item=comparison, text=shown[label], systems=known["labels"][label])
                for label in sorted(shown)
            )
            loaded += 1
    return loaded, skipped


def reply_version(message: Message) -> str:
    """The system/version a reply came from: its record's `version` when set, else model and temperature."""
    recorded = message.parameters.get("version") if isinstance(message.parameters, dict) else None
    if recorded:
        return str(recorded)
    name = Path(message.generator_model).name or message.profile or "unknown model"
    temperature = message.parameters.get("temperature") if isinstance(message.parameters, dict) else None
    return f"{name} T={temperature:g}" if isinstance(temperature, int | float) else name


@dataclass
class TurnOutcome:
    created: list  # ComparisonItems made
    skipped: list  # (user message, why)


def items_from_replies(replies: Iterable[Message]) -> TurnOutcome:
    """A comparison item for each user message that the given bot replies answer.

    All finished replies to that message count (the selected one and its
    regenerated alternatives); they must come from at least two versions.
    The dialogue is the conversation's last lines up to the message.
    """
    outcome = TurnOutcome([], [])
    questions = Message.objects.filter(pk__in={reply.reply_to_id for reply in replies if reply.reply_to_id})
    for question in questions.select_related("conversation").order_by("id"):
        if ComparisonItem.objects.filter(turn=question).exists():
            outcome.skipped.append((question, "it is already an item"))
            continue
        answers = question.replies.filter(role=Message.Role.BOT, status=Message.Status.DONE).exclude(text="")
        by_text = {}
        for answer in answers.order_by("id"):
            text = answer.text.strip()
            entry = by_text.setdefault(text, {"systems": [], "message": answer})
            if reply_version(answer) not in entry["systems"]:
                entry["systems"].append(reply_version(answer))
        versions = {system for entry in by_text.values() for system in entry["systems"]}
        if len(by_text) < 2 or len(versions) < 2:
            outcome.skipped.append((question, "its finished replies do not come from two or more versions"))
            continue
        # Ids follow the order messages were stored in (times may tie, and SQLite keeps two formats of them).
        earlier = question.conversation.messages.filter(id__lt=question.id, is_chosen=True).order_by("-id")[
            :CONTEXT_LINES
        ]
        character = question.conversation.character
        speaker = {Message.Role.USER: "User", Message.Role.BOT: character}
        dialogue = [[speaker[m.role], m.text] for m in reversed(earlier)] + [["User", question.text]]
        with transaction.atomic():
            item = ComparisonItem.objects.create(set_name=CONVERSATIONS, dialogue=dialogue, turn=question)
            ComparisonCandidate.objects.bulk_create(
                ComparisonCandidate(item=item, text=text, systems=entry["systems"], message=entry["message"])
                for text, entry in by_text.items()
            )
        outcome.created.append(item)
    return outcome


# --- Rating ----------------------------------------------------------------------------------------


def blind_order(item: ComparisonItem, rater: AbstractBaseUser) -> list[tuple[str, ComparisonCandidate]]:
    """The item's candidates as this rater sees them: [(label, candidate)], shuffled per rater and item."""
    candidates = list(item.candidates.all())
    random.Random(f"{rater.pk}:{item.pk}").shuffle(candidates)
    return list(zip(labels(len(candidates)), candidates))


def items_to_rate(rater: AbstractBaseUser, set_name: str = "") -> QuerySet:
    """Items with a candidate this rater has not rated yet, oldest first."""
    rated = ComparisonRating.objects.filter(rater=rater).values("candidate")
    items = ComparisonItem.objects.filter(candidates__in=ComparisonCandidate.objects.exclude(pk__in=rated))
    if set_name:
        items = items.filter(set_name=set_name)
    return items.distinct().order_by("id")


def parse_ratings(post: QueryDict, ordered: list[tuple[str, ComparisonCandidate]]) -> dict[ComparisonCandidate, dict]:
    """{candidate: {sense, character, fit, bad}} from the page's form, or raise ValueError saying what is missing."""
    ratings = {}
    for label, candidate in ordered:
        values = {}
        for scale in SCALES:
            raw = post.get(f"{candidate.pk}-{scale}", "")
            if raw not in {"1", "2", "3", "4", "5"}:
                raise ValueError(f"Rate {label} on {scale} (1 to 5).")
            values[scale] = int(raw)
        values["bad"] = post.get(f"{candidate.pk}-bad") == "on"
        ratings[candidate] = values
    return ratings


def save_ratings(rater: AbstractBaseUser, ratings: dict[ComparisonCandidate, dict]) -> None:
    with transaction.atomic():
        for candidate, values in ratings.items():
            ComparisonRating.objects.update_or_create(candidate=candidate, rater=rater, defaults=values)


# --- Scores ------------------------------------------------------------------------------------


def judgements(ratings: QuerySet) -> list[Judgement]:
    """ComparisonRatings as the blind score's Judgements: one per rater, item and system."""
    return [
        Judgement(
            rating.rater.get_username(),
            str(rating.candidate.item_id),
            system,
            rating.sense,
            rating.character,
            rating.fit,
            rating.bad,
        )
        for rating in ratings.select_related("rater", "candidate")
        for system in rating.candidate.systems
    ]


def scoreboard(set_name: str = "") -> list[dict]:
    """The blind score's rows for the stored ratings (of one set, or all)."""
    ratings = ComparisonRating.objects.all()
    if set_name:
        ratings = ratings.filter(candidate__item__set_name=set_name)
    return summarize(judgements(ratings))


def exportable(ratings: QuerySet, consented_only: bool = True) -> QuerySet:
    """The ratings an export may hold: with consented_only, items of real turns only
    where the conversation's owner allows training use (sheet items are the show's lines)."""
    if not consented_only:
        return ratings
    return ratings.filter(
        Q(candidate__item__turn__isnull=True)
        | Q(candidate__item__turn__conversation__owner__account_settings__allow_training_use=True)
    )


def export_rows(ratings: QuerySet) -> Iterator[dict]:
    """One JSON-able row per rating: the item, the candidate with its systems and source reply, the scores."""
    for rating in ratings.select_related("rater", "candidate__item").order_by("id"):
        candidate, item = rating.candidate, rating.candidate.item
        yield {
            "set": item.set_name,
            "item_id": item.pk,
            "sheet_item": item.sheet_item,
            "dialogue": item.dialogue,
            "turn_message_id": item.turn_id,
            "candidate_id": candidate.pk,
            "text": candidate.text,
            "systems": candidate.systems,
            "reply_message_id": candidate.message_id,
            "rater": rating.rater.get_username(),
            **{scale: getattr(rating, scale) for scale in SCALES},
            "bad": rating.bad,
            "updated": rating.updated.isoformat(),
        }


def write_ratings_export(ratings: QuerySet, handle: TextIO) -> int:
    count = 0
    for row in export_rows(ratings):
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count
