"""How a dialogue is written for the models: plain Python, no torch and no Django.

Training imports this too, so a model is trained on the text it gets at reply time.
"""

# The response selector reads the last lines of the dialogue before the line it answers:
# three keep a query inside its 128 tokens, and earlier lines measured no better.
SELECTOR_CONTEXT_LINES = 3


def selector_query(context: "list[str] | tuple[str, ...]", line: str) -> str:
    """The selector's query: the last SELECTOR_CONTEXT_LINES lines of the dialogue, then the line to answer."""
    recent = list(context)[-SELECTOR_CONTEXT_LINES:] if SELECTOR_CONTEXT_LINES else []
    return " ".join([*recent, line])
