"""Sample-and-rank: choose Sheldon's reply among several candidates.

The candidates of one request are the replies the generator sampled for it and
the scripted lines of his that retrieval found. Each gets a score:

    selector   cosine of (dialogue, candidate) under the response selector, the
               retriever's bi-encoder (a scripted line's is its search score)
    + fluency  the generator's mean token log-probability (generated ones only;
               a scripted line is fluent by construction and gets
               `RankWeights.fluency_of_scripted` instead)
    + length   the log-density of the candidate's word count under the length
               of his real lines (log-normal)
    + pmi      (when weighted) how much likelier the generator finds it after the
               dialogue than after the persona alone, per token
               (`inference.likelihood.dialogue_pmi`): generic lines that fit
               any dialogue score low, replies that answer it high

and candidates that fail a hard filter (an echo, a broken word, a repeated
phrase, content the show would not air) are left out. When every candidate
fails, the least bad one is kept, except for content: a flagged reply is
never chosen.

Plain Python and numpy: the selector's embeddings come in from the caller.
"""
import math
import re
from dataclasses import dataclass, field

from .content import flagged

# Sheldon's scripted lines, seasons 1-8: log(words) has mean 2.27 and deviation 0.98 (median 11 words).
LENGTH_LOG_MEAN = 2.27
LENGTH_LOG_SPREAD = 0.98


@dataclass(frozen=True)
class RankWeights:
    """How the parts of a candidate's score add up (measured on validation exchanges, docs/evaluation.md)."""

    selector: float = 1.0
    fluency: float = 0.3
    length: float = 0.03
    # A scripted line has no log-probability under the generator; this stands for it.
    fluency_of_scripted: float = -1.5
    # Every scripted line is his; a generated one must beat it by this margin to be chosen.
    scripted_bonus: float = 0.0
    # Pointwise mutual information of candidate and dialogue; 0 skips its scoring pass.
    pmi: float = 0.0


@dataclass
class Candidate:
    text: str
    source: str  # "generated" or "scripted"
    mean_log_probability: float | None = None  # generated: the generator's, per token
    hit: object = None  # scripted: the retrieval Hit it came from
    stopped: bool = False  # generated: a stop ended it early
    rejected: str = ""  # why a hard filter left it out, "" when it passed
    scores: dict = field(default_factory=dict)  # the parts of its score, for the record

    @property
    def score(self) -> float:
        return sum(self.scores.values())


# A contraction that lost its apostrophe or half of itself: "wasn tough", "don t", "I m", "it s".
_BROKEN_CONTRACTION = re.compile(
    r"\b(?:wasn|isn|doesn|didn|couldn|wouldn|shouldn|aren|weren|hasn|haven|hadn|mustn)\b(?!['\u2019]t)"
    r"|\b(?:don|can|won|ain)\s+t\b"
    r"|\b(?:i|you|we|they)\s+(?:m|re|ve|ll|d)\b"
    r"|\b(?:it|that|what|he|she|there|here|who)\s+s\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z0-9']+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def rejection(text: str, message: str) -> str:
    """Why a candidate must not be chosen, or "" when it may."""
    words = _words(text)
    if not words:
        return "empty"
    if flagged(text):
        return "content"
    # Any start of the message, however short, loses to a candidate that is not one; if every candidate is
    # one, a short one ("Hello." to "Hello.") is kept rather than the fallback (the clean-up blanks only
    # echoes of ECHO_WORDS or more).
    message_words = _words(message)
    if message_words and words == message_words[: len(words)]:
        return "echo"
    if _BROKEN_CONTRACTION.search(text):
        return "broken word"
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    if len(trigrams) != len(set(trigrams)):
        return "repeated phrase"
    return ""


def length_score(text: str) -> float:
    """Log-density (up to a constant) of the word count under the length of his real lines."""
    words = max(1, len(text.split()))
    return -((math.log(words) - LENGTH_LOG_MEAN) ** 2) / (2 * LENGTH_LOG_SPREAD**2)


def choose(
    candidates: list[Candidate],
    selector_scores: list[float],
    message: str,
    weights: RankWeights,
    pmi_scores: list[float] | None = None,
) -> Candidate:
    """The best candidate; each candidate's `scores` and `rejected` are filled in.

    `selector_scores`: the selector's cosine for each candidate, same order;
    `pmi_scores`: each one's pointwise mutual information with the dialogue
    (None: no pmi part).
    """
    if not candidates:
        raise ValueError("There is no candidate to choose from.")
    pmis = [None] * len(candidates) if pmi_scores is None else pmi_scores
    for candidate, similarity, pmi in zip(candidates, selector_scores, pmis, strict=True):
        candidate.rejected = rejection(candidate.text, message)
        fluency = (
            candidate.mean_log_probability if candidate.mean_log_probability is not None else weights.fluency_of_scripted
        )
        candidate.scores = {
            "selector": weights.selector * float(similarity),
            "fluency": weights.fluency * fluency,
            "length": weights.length * length_score(candidate.text),
        }
        if candidate.source == "scripted":
            candidate.scores["scripted"] = weights.scripted_bonus
        if pmi is not None:
            candidate.scores["pmi"] = weights.pmi * pmi
    # If every candidate fails, the least bad is kept: never one the show would not air, nor an empty one
    # (scored as a scripted line, it could beat a usable one).
    allowed = [c for c in candidates if not c.rejected] or [
        c for c in candidates if c.rejected not in ("content", "empty")
    ]
    if not allowed:
        return Candidate("", "generated", rejected="content" if any(c.rejected == "content" for c in candidates) else "empty")
    return max(allowed, key=lambda candidate: candidate.score)
