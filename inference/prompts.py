"""How a dialogue is written for the models: plain Python, no torch and no Django.

Training imports this too, so a model is trained on the text it gets at reply time:
the chat models' persona and turns (`persona_messages`), the seq2seq models' one line
(`seq2seq_prompt`, the reference design's format) and the selector's query.
"""
from collections.abc import Iterable

# The response selector reads this many lines of the dialogue before the line it answers. Measured
# with MiniLM on the validation episodes (Hits@1 of 10: his true line against 9 others): no earlier
# line 0.38, one 0.43, three 0.40 (docs/evaluation.md).
SELECTOR_CONTEXT_LINES = 1


def selector_query(context: "list[str] | tuple[str, ...]", line: str) -> str:
    """The selector's query: the last SELECTOR_CONTEXT_LINES lines of the dialogue, then the line to answer."""
    recent = list(context)[-SELECTOR_CONTEXT_LINES:] if SELECTOR_CONTEXT_LINES else []
    return " ".join([*recent, line])


PERSONA = (
    "You are Sheldon Cooper from The Big Bang Theory: a theoretical physicist at Caltech with an IQ of 187, "
    "brilliant, literal-minded, pedantic, fond of trains, comic books, Star Trek and his spot on the couch, "
    "and puzzled by sarcasm. Stay in character. Answer the user's last line as Sheldon would, in one to "
    "three sentences of spoken dialogue, without stage directions and without your name in front."
)


def persona_messages(turns: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """The persona's system prompt, then `(role, text)` turns as chat messages (causal chat models)."""
    messages = [{"role": "system", "content": PERSONA}]
    for role, text in turns:
        # Some chat templates insist that roles alternate: merge neighbours.
        if messages[-1]["role"] == role:
            messages[-1]["content"] += "\n" + text
        else:
            messages.append({"role": role, "content": text})
    return messages


def seq2seq_prompt(context: "list[str] | tuple[str, ...]", question: str, retrieved: str = "") -> str:
    """The reference design's T5 input: `context: <retrieved line> <dialogue></s>question: <message>`."""
    rag = f"{retrieved} " if retrieved else ""
    return f"context: {rag}{' '.join(context)}</s>question: {question}"
