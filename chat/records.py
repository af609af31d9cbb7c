"""The generation record of a reply: the models, settings and retrieved line that made it, and its cost.

Defined once, here. The worker writes it (`columns`: the Message fields of the
same names), the JSON API and the socket frames send it (`as_json`), and the
admin and the export read it back (`of_message`, `columns`). Plain Python with
no Django import, so the export reader in training/ uses it too.
"""
from dataclasses import asdict, dataclass, field, fields
from typing import Any, get_args


@dataclass(frozen=True)
class Retrieved:
    """The scripted exchange that retrieval put into the prompt."""

    text: str
    score: float | None
    episode: str
    scene: int | None


@dataclass(frozen=True)
class GenerationRecord:
    profile: str = ""
    generator_model: str = ""
    retriever_model: str = ""
    parameters: dict = field(default_factory=dict)
    retrieved: Retrieved | None = None  # None: no scripted line passed the threshold
    # Where the person's wait went: in the queue until a worker took the reply,
    # loading the models for it, generating it (`seconds`), and all of it
    # from the message to the finished reply (`waited_seconds`).
    seconds: float | None = None
    queue_seconds: float | None = None
    warmup_seconds: float | None = None
    waited_seconds: float | None = None
    new_tokens: int | None = None
    worker: str = ""
    attempts: int = 0  # how many times a worker claimed the reply
    fallback: bool = False

    @classmethod
    def of_message(cls, message: Any) -> "GenerationRecord":
        """The record stored on a bot message (anything with the Message fields)."""
        values = {name: getattr(message, name) for name in RECORD_COLUMNS}
        retrieved = {column.name: values.pop(f"retrieved_{column.name}") for column in fields(Retrieved)}
        return cls(**values, retrieved=Retrieved(**retrieved) if retrieved["text"] else None)

    @classmethod
    def of_reply(cls, reply: Any, worker: str, attempts: int, **waits: float | None) -> "GenerationRecord":
        """The record of a finished generation (inference's Reply) by this worker and attempt.

        `waits`: queue_seconds, warmup_seconds and waited_seconds, measured by the worker.
        """
        hit = reply.retrieved
        return cls(
            profile=reply.profile or "",
            generator_model=reply.generator_model or "",
            retriever_model=reply.retriever_model or "",
            parameters=reply.parameters or {},
            retrieved=Retrieved(hit.text, hit.score, hit.episode, hit.scene) if hit else None,
            seconds=reply.seconds,
            new_tokens=reply.new_tokens,
            **waits,
            worker=worker,
            attempts=attempts,
            fallback=bool(reply.fallback),
        )

    def as_json(self) -> dict:
        """The nested shape of the API and the socket frames (`retrieved` an object or null)."""
        return asdict(self)

    def columns(self) -> dict:
        """One flat value per column: the Message fields and the export's columns."""
        values = {column.name: getattr(self, column.name) for column in fields(self) if column.name != "retrieved"}
        for column in fields(Retrieved):
            empty = "" if column.type is str else None
            values[f"retrieved_{column.name}"] = getattr(self.retrieved, column.name) if self.retrieved else empty
        return {name: values[name] for name in RECORD_COLUMNS}


def _column_kind(annotation: Any) -> Any:
    """The export type of a field: its type without None; dicts are JSON."""
    kinds = [kind for kind in get_args(annotation) or (annotation,) if kind is not type(None)]
    return "json" if kinds[0] is dict else kinds[0]


def _record_column_types() -> dict:
    types_ = {}
    for column in fields(GenerationRecord):
        if column.name == "retrieved":
            types_.update({f"retrieved_{part.name}": _column_kind(part.type) for part in fields(Retrieved)})
        else:
            types_[column.name] = _column_kind(column.type)
    return types_


# Column name -> type (str, int, float, bool or "json"), in the record's order.
RECORD_COLUMN_TYPES = _record_column_types()
RECORD_COLUMNS = tuple(RECORD_COLUMN_TYPES)
