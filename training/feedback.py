"""Read the staff export of chat transcripts back as training data.

`python manage.py export_transcripts` (and the admin's export action) write
one row per message, as JSONL or CSV with the same columns. This module is
plain Python with no Django, so training scripts can use it anywhere:

    rows = read_export("var/feedback.jsonl")   # only users who consented
    samples = well_rated_samples(rows)          # data.pipeline.Sample objects
    pairs = preference_pairs(rows)              # PreferencePair(chosen, rejected)

A reply's merit is a staff label when there is one (`great` counts as 5, a
negative label such as `off_character` as 1: staff judgement beats a quick
thumbs-up), else the mean of its users' ratings, else unknown.
"""

import csv
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from chat.records import RECORD_COLUMN_TYPES
from data.pipeline import CONTEXT_LINES, ScriptExchange, augment

logger = logging.getLogger(__name__)

# The export's columns, in order, and how each is typed. JSON columns hold
# lists or objects (in CSV as JSON text).
COLUMN_TYPES = {
    "conversation_id": int,
    "conversation_title": str,
    "character": str,
    "owner_id": int,
    "owner_allows_training": bool,
    "message_id": int,
    "role": str,
    "text": str,
    "status": str,
    "created": str,
    "reply_to_id": int,
    "is_chosen": bool,
    **RECORD_COLUMN_TYPES,  # the generation record, one column per field (chat/records.py)
    "error": str,
    "mean_rating": float,
    "ratings": "json",
    "labels": "json",
}
EXPORT_COLUMNS = tuple(COLUMN_TYPES)
# The columns of the first exports (2026-11-26). A column added since (the
# record's newer fields) reads as null from a file written without it.
FIRST_COLUMNS = frozenset(
    "conversation_id conversation_title character owner_id owner_allows_training message_id role text status "
    "created reply_to_id is_chosen profile generator_model retriever_model parameters retrieved_text "
    "retrieved_score retrieved_episode seconds new_tokens worker error fallback mean_rating ratings labels".split()
)
REQUIRED_COLUMNS = tuple(column for column in EXPORT_COLUMNS if column in FIRST_COLUMNS)
JSON_COLUMNS = tuple(name for name, kind in COLUMN_TYPES.items() if kind == "json")

GREAT_LABEL = "great"
NEGATIVE_LABELS = frozenset({"off_character", "wrong_fact", "repetitive", "not_an_answer", "unsafe"})
WELL_RATED = 4.0  # merit from which a reply is an extra training answer
MIN_MARGIN = 1.0  # merit gap between a chosen and a rejected alternative


class FeedbackError(ValueError):
    """An export file that cannot be read; the message names the problem."""


# Where a pair comes from, the start of its `source`: a chat export's ratings, or a scripted exchange
# (`training.preference.scripted_pairs`).
EXPORT_SOURCE = "conversation-"
SCRIPTED_SOURCE = "scripted/"


@dataclass(frozen=True)
class PreferencePair:
    """Two alternative replies to the same turn, the better one chosen."""

    context: tuple
    question: str
    chosen: str
    rejected: str
    source: str  # EXPORT_SOURCE + "<id>/message-<user message id>", or SCRIPTED_SOURCE + "<episode>"
    episode: str = ""  # of a scripted exchange: tells the character's own context lines (assistant turns)


def read_export(path, include_unconsented=False):
    """The rows of a JSONL or CSV export, typed, in file order.

    Rows of users who did not allow training use (present only in an
    `--all` export made for review) are left out unless asked for.
    """
    path = Path(path)
    if not path.is_file():
        raise FeedbackError(f"Export file not found: {path}")
    if path.suffix == ".jsonl":
        raw_rows = _jsonl_rows(path)
    elif path.suffix == ".csv":
        raw_rows = _csv_rows(path)
    else:
        raise FeedbackError(f"{path}: expected a .jsonl or .csv export from export_transcripts")
    rows = [_typed_row(row, path, number) for number, row in enumerate(raw_rows, start=1)]
    kept = [row for row in rows if include_unconsented or row["owner_allows_training"]]
    if len(kept) < len(rows):
        logger.info("%s: left out %d rows of users who did not allow training use", path, len(rows) - len(kept))
    return kept


def _jsonl_rows(path):
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as error:
                        raise FeedbackError(f"{path}, line {number}: not JSON ({error})") from error
    except UnicodeDecodeError as error:
        raise FeedbackError(f"{path} is not UTF-8 text: {error}") from error


def _csv_rows(path):
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in REQUIRED_COLUMNS if column not in (reader.fieldnames or [])]
            if missing:
                raise FeedbackError(f"{path} lacks the column(s) {', '.join(missing)}: not an export_transcripts CSV")
            for row in reader:
                yield {column: _csv_value(row.get(column, ""), COLUMN_TYPES[column]) for column in EXPORT_COLUMNS}
    except UnicodeDecodeError as error:
        raise FeedbackError(f"{path} is not UTF-8 text: {error}") from error
    except csv.Error as error:
        raise FeedbackError(f"{path} is not a readable CSV file: {error}") from error


# A text cell starting with one of these is a formula to a spreadsheet (CSV injection): the
# export writes it after an apostrophe, which spreadsheets show as text and the reader drops.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def _csv_value(text, kind):
    if kind is str:
        return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text
    if text == "":
        return None
    if kind == "json":
        return json.loads(text)
    if kind is bool:
        return text == "true"
    return kind(text)


def csv_cell(value):
    """How the export writes one value into a CSV cell (read back by _csv_value)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _typed_row(row, path, number):
    if not isinstance(row, dict):
        raise FeedbackError(f"{path}, row {number}: expected an object, found {type(row).__name__}")
    missing = [column for column in REQUIRED_COLUMNS if column not in row]
    if missing:
        raise FeedbackError(f"{path}, row {number} lacks {', '.join(missing)}: not an export_transcripts row")
    try:
        return {column: _typed(row.get(column), COLUMN_TYPES[column]) for column in EXPORT_COLUMNS}
    except (TypeError, ValueError) as error:
        raise FeedbackError(f"{path}, row {number}: a value of the wrong type ({error})") from error


def _typed(value, kind):
    if value is None or kind == "json":
        return value
    if kind is bool and not isinstance(value, bool):
        raise TypeError(f"expected true or false, found {value!r}")
    return kind(value)


def reply_merit(row):
    """A staff label's verdict, else the users' mean rating, else None."""
    labels = {label["label"] for label in row["labels"] or ()}
    if labels & NEGATIVE_LABELS:
        return 1.0
    if GREAT_LABEL in labels:
        return 5.0
    return row["mean_rating"]


def _turns(rows):
    """(context, question, usable replies, conversation row) for each user message.

    The context is the dialogue before the question as the user saw it:
    user messages and the chosen alternative of each reply, oldest first.
    """
    conversations = defaultdict(list)
    for row in rows:
        conversations[row["conversation_id"]].append(row)
    for conversation_id, messages in conversations.items():
        messages.sort(key=lambda row: (row["created"], row["message_id"]))
        replies = defaultdict(list)
        for row in messages:
            if row["role"] == "bot" and row["reply_to_id"] is not None and _usable(row):
                replies[row["reply_to_id"]].append(row)
        dialogue = []
        for row in messages:
            if row["role"] == "user":
                context = tuple(dialogue[-CONTEXT_LINES:])
                yield context, row, replies.get(row["message_id"], []), conversation_id
                dialogue.append(row["text"])
            elif row["is_chosen"] and row["text"]:
                dialogue.append(row["text"])


def _usable(reply):
    # Failed, stopped and canned fallback replies teach nothing about style.
    return reply["status"] == "done" and not reply["fallback"] and reply["text"].strip()


def well_rated_exchanges(rows, min_merit=WELL_RATED):
    """A ScriptExchange for every usable reply whose merit reaches min_merit."""
    for context, question, replies, conversation_id in _turns(rows):
        for reply in replies:
            merit = reply_merit(reply)
            if merit is not None and merit >= min_merit:
                yield ScriptExchange(
                    character=reply["character"],
                    episode=f"feedback/conversation-{conversation_id}",
                    scene=0,
                    question=question["text"],
                    answer=reply["text"],
                    context=context,
                    answer_position=reply["message_id"],
                )


def well_rated_samples(rows, min_merit=WELL_RATED):
    """Extra training samples, with the reference context-suffix augmentation."""
    return list(augment(well_rated_exchanges(rows, min_merit)))


def preference_pairs(rows, min_margin=MIN_MARGIN):
    """Every (better, worse) pair of judged alternatives of the same turn."""
    pairs = []
    for context, question, replies, conversation_id in _turns(rows):
        judged = [(merit, reply) for reply in replies if (merit := reply_merit(reply)) is not None]
        for better_merit, better in judged:
            for worse_merit, worse in judged:
                if better_merit - worse_merit >= min_margin:
                    pairs.append(
                        PreferencePair(
                            context=context,
                            question=question["text"],
                            chosen=better["text"],
                            rejected=worse["text"],
                            source=f"{EXPORT_SOURCE}{conversation_id}/message-{question['message_id']}",
                        )
                    )
    return pairs
