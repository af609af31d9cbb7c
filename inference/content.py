"""Content the show would not air: a word-level filter over candidate replies.

The show jokes about sex and bodies in innuendo, never in explicit terms, and
never with slurs or threats. A candidate with any of these words is never
chosen (inference.selection). A word list is crude on purpose: it is fast, it
cannot be talked round, and its misses are caught by the blind raters' "bad"
flag, which the evaluation reports.
"""
import re
from collections.abc import Iterable

# Whole words (and their inflections where a stem is given with *), lower case.
_BLOCKED = (
    # explicit sexual terms
    "porn*", "blowjob*", "handjob*", "dick", "dicks", "cock", "cocks", "pussy", "pussies", "cum", "cumming", "orgasm*",
    "masturbat*", "horny", "nude*", "naked", "boobs", "tits", "titties", "genital*", "penis*", "vagina*", "erection*",
    "fuck*", "motherfuck*", "shit*", "bitch*", "whore*", "slut*", "cunt*", "rape*", "raping", "rapist*",
    # slurs and hate
    "nigger*", "nigga*", "faggot*", "fag", "fags", "retard*", "tranny", "trannies", "kike*", "spic", "spics",
    "wetback*",
    # violence against people, self-harm
    "kill yourself", "kys", "suicide", "murder you", "rape you",
)


def _pattern(entries: Iterable[str]) -> re.Pattern:
    parts = []
    for entry in entries:
        stem = re.escape(entry.rstrip("*")).replace(r"\ ", r"\s+")
        parts.append(rf"\b{stem}\w*\b" if entry.endswith("*") else rf"\b{stem}\b")
    return re.compile("|".join(parts), re.IGNORECASE)


_BLOCKED_PATTERN = _pattern(_BLOCKED)


def flagged(text: str) -> bool:
    """True when the text has a word the show would not air."""
    return _BLOCKED_PATTERN.search(text) is not None
