"""Reply to many dialogues from a JSON Lines file, several per generate call.

An input line: {"id": ..., "context": ["oldest line", ...], "question": "..."}.
An output line, in input order: {"id": ..., "reply": "...", "retrieved":
{"text", "score", "episode", "scene"} or null, "seconds": ..., "new_tokens": ...,
"fallback": ...}; `seconds` is the wall time of the batch the line was in. A
bad input line gives {"id": ... or null, "error": "..."} and the rest go on.
"""
import json

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from inference.loading import ModelNotFoundError
from inference.replier import Reply, RequestState, Turn, get_replier
from inference.retrieval import RetrievalIndexError


class BadLine(ValueError):
    def __init__(self, message: str, line_id: object = None) -> None:
        super().__init__(message)
        self.line_id = line_id


def parse_line(number: int, line: str) -> tuple[object, RequestState]:
    """A RequestState from one input line; raises BadLine saying what is wrong."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise BadLine(f"line {number} is not JSON: {error}") from error
    if not isinstance(item, dict):
        raise BadLine(f"line {number} is not a JSON object")
    line_id = item.get("id")
    context = item.get("context", [])
    question = item.get("question")
    if not isinstance(question, str) or not question.strip():
        raise BadLine(f"line {number} has no question (a non-empty string)", line_id)
    if not isinstance(context, list) or not all(isinstance(text, str) for text in context):
        raise BadLine(f"line {number}: context must be a list of strings, oldest first", line_id)
    # The line before the question is Sheldon's, the one before that the other speaker's, and so on.
    history = [Turn("bot" if (len(context) - i) % 2 else "user", text) for i, text in enumerate(context)]
    return line_id, RequestState(history, question)


def reply_record(line_id: object, reply: Reply) -> dict:
    hit = reply.retrieved
    return {
        "id": line_id,
        "reply": reply.text,
        "retrieved": (
            {"text": hit.text, "score": round(hit.score, 4), "episode": hit.episode, "scene": hit.scene}
            if hit
            else None
        ),
        "seconds": round(reply.seconds, 3),
        "new_tokens": reply.new_tokens,
        "fallback": reply.fallback,
    }


class Command(BaseCommand):
    help = "Generate replies for a JSON Lines file of dialogues (see the module docstring for the format)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--input", required=True, help="JSON Lines file: id, context, question")
        parser.add_argument("--output", required=True, help="JSON Lines file to write, in input order")
        parser.add_argument("--batch-size", type=int, default=8, help="dialogues per generate call (default 8)")

    def handle(self, input: str, output: str, batch_size: int, **options: object) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            with open(input, encoding="utf-8") as handle:
                lines = [(number, line) for number, line in enumerate(handle, start=1) if line.strip()]
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"Cannot read {input}: {error}") from error
        try:
            replier = get_replier()
        except (ModelNotFoundError, RetrievalIndexError) as error:
            raise CommandError(str(error)) from error

        errors = 0
        with open(output, "w", encoding="utf-8") as out, tqdm(total=len(lines), desc="Replies", unit="reply") as bar:
            for start in range(0, len(lines), batch_size):
                records, pending = [], []
                for number, line in lines[start : start + batch_size]:
                    try:
                        line_id, request = parse_line(number, line)
                    except BadLine as error:
                        records.append({"id": error.line_id, "error": str(error)})
                        continue
                    records.append(None)
                    pending.append((len(records) - 1, line_id, request))
                replies = replier.reply_many([request for _, _, request in pending]) if pending else []
                for (slot, line_id, _), reply in zip(pending, replies):
                    records[slot] = reply_record(line_id, reply)
                for record in records:
                    errors += "error" in record
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()
                bar.update(len(records))
        summary = f"Wrote {len(lines)} lines to {output}"
        self.stdout.write(self.style.SUCCESS(summary) if not errors else self.style.WARNING(f"{summary}; {errors} bad input line(s)."))
