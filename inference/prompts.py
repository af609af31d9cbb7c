"""How a dialogue is written for the models: plain Python, no torch and no Django.

Training imports this too, so a model is trained on the text it gets at reply time.
"""

# The response selector reads this many lines of the dialogue before the line it answers. Measured
# with MiniLM on the validation episodes (Hits@1 of 10: his true line against 9 others): no earlier
# line 0.38, one 0.43, three 0.40 (docs/evaluation.md).
SELECTOR_CONTEXT_LINES = 1


def selector_query(context: "list[str] | tuple[str, ...]", line: str) -> str:
    """The selector's query: the last SELECTOR_CONTEXT_LINES lines of the dialogue, then the line to answer."""
    recent = list(context)[-SELECTOR_CONTEXT_LINES:] if SELECTOR_CONTEXT_LINES else []
    return " ".join([*recent, line])
