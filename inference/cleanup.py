"""Reply clean-up that streams word by word.

Rules: strip a leading speaker label (`Sheldon:`), never echo the user's
message, and cut an unfinished trailing fragment when generation ran out of
tokens. Complete words are emitted as soon as they are generated; nothing is
emitted while the reply could still turn out to be a label or the user's own
message. The final text extends what was emitted, except when the unfinished
last sentence is cut: then it is a prefix of it (the page's `reply_done`
frame carries the final text).

A reply that streams is not ranked, so the content filter that ranking applies
(`inference.selection`) is applied here: a word the show would not air is never
emitted, and the reply ends before it (`blocked`).

Emitted words are never taken back (a page or a terminal has shown them): a
streaming reply whose final text would be empty although words were emitted
(blocked before its first full stop, or cut for want of one) ends with those
words, trailing off. Only a reply that emitted nothing ends empty, to be
sampled once more.
"""
import re
from collections.abc import Callable

from .content import flagged

# A sentence ends at . ! ? or an ellipsis, with any closing quotes or brackets, before a space or the end
# of the text. Never at a title's full stop ("Dr. Cooper": the sentence cap cut a candidate to "the chemistry
# between Amy and Dr."), nor at a dotted abbreviation's ("the U.S. Army") unless a line or the text ends
# there. A lone capital's stays an end: "now so am I." is far likelier than an initial.
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s|$)")
_TITLE = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Prof|vs)\.$")
_ABBREVIATION = re.compile(r"\b(?:[A-Za-z]\.)+[A-Za-z]\.$")
_MAY_GO_ON = re.compile(r"(?:\d|(?<![\w.])[A-Za-z])\.$")  # "3.", "U." or "a." may grow into "3.14", "U.S.", "a.m."
# Control characters a model may sample (a byte-level vocabulary has a token for each byte): PostgreSQL
# refuses NUL in text, and none of them belongs in a line of dialogue. Line breaks and tabs stay.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WHITESPACE = re.compile(r"\s")
_NOT_WORD = re.compile(r"[\W_]+")
# Ends a streamed reply that has words but no full sentence to end on.
TRAILING_OFF = "\u2026"


def _normalise(text: str) -> str:
    """Words only, lower case: `Hello,  there!` -> `hello there`."""
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


# A reply that repeats the message's first words, this many or more, repeats the user: no reply. A shorter one
# that starts as the message does answers it: "Hello." to "Hello.", "Yes." to "Yes or no, Sheldon?", "No." to
# "No way!". (Measured: the one-word echo rule gave the fallback line to 8 of 8 "Hello.")
ECHO_WORDS = 3


def is_echo(text: str, message: str) -> bool:
    """Whether `text` is no reply but the message's own words (at least ECHO_WORDS of them, from its start)."""
    words, message_words = _normalise(text).split(), _normalise(message).split()
    return len(words) >= ECHO_WORDS and words == message_words[: len(words)]


def _compact(text: str) -> str:
    return "".join(text.casefold().split())


class ReplyCleaner:
    """Fed the raw generated text piece by piece; emits the cleaned reply piece by piece."""

    def __init__(self, message: str, character: str = "Sheldon", on_piece: Callable[[str], None] | None = None) -> None:
        self.message = _normalise(message)
        words = message.split()
        # A complete sentence repeated at the start of the reply is cut off it;
        # a fragment ("Hello") may well begin a real answer ("Hello there.").
        repeats_sentence = bool(words) and bool(_sentence_ends(words[-1]))
        self._echo = (
            re.compile(r"\s*" + r"\s+".join(map(re.escape, words)) + r"\s*", re.IGNORECASE)
            if repeats_sentence
            else None
        )
        self._label = re.compile(rf"\s*{re.escape(character)}(?:\s+Cooper)?\s*:\s*", re.IGNORECASE)
        self._labels = [_compact(f"{character}:"), _compact(f"{character} Cooper:")]
        self.on_piece = on_piece
        self.raw = ""
        self.text = ""  # what has been emitted
        self.blocked = False  # a streaming reply reached a word the show would not air

    def feed(self, raw_piece: str) -> None:
        if self.blocked:
            return
        self.raw += _CONTROL.sub("", raw_piece)
        self._emit(self._clean(final=False, cut_fragment=False))

    def sentences(self) -> int:
        """How many complete sentences the reply holds so far, its generation going on (`_sentence_ends`)."""
        # Not final: a reply that so far only says the message back has no sentence of its own yet.
        return len(_sentence_ends(self._body(final=False), growing=True))

    def finish(self, cut_fragment: bool) -> str:
        """Emit the rest and return the final text (empty only if nothing was emitted).

        With `cut_fragment`, or after a blocked word, an unfinished last
        sentence is dropped, so the final text may be shorter than what was
        emitted; emitted words with no sentence to end on trail off instead.
        """
        final = self._clean(final=True, cut_fragment=cut_fragment)
        self._emit(final)
        if self.blocked:
            final = self.text[: _sentence_end(self.text)]
        if self.on_piece is not None and self.text and not final:
            self._extend(self.text + TRAILING_OFF)
            final = self.text
        return final

    def stop(self) -> str:
        """The final text of a reply the person stopped: what was emitted, nothing after (the last word, held
        back until a space followed it, is not sent after the stop); uncut text for one that does not stream."""
        return self.text if self.on_piece is not None else self.finish(cut_fragment=False)

    def _emit(self, cleaned: str) -> None:
        if self.on_piece is not None and not self.blocked and flagged(cleaned):
            self.blocked = True  # the word is not emitted, nor anything after it
        if not self.blocked:
            self._extend(cleaned)

    def _extend(self, cleaned: str) -> None:
        # Emitted text is never taken back: only extensions are sent.
        if len(cleaned) > len(self.text) and cleaned.startswith(self.text):
            piece, self.text = cleaned[len(self.text) :], cleaned
            if self.on_piece is not None:
                self.on_piece(piece)

    def _body(self, final: bool) -> str:
        """The raw text less a leading label and an echo of the message; "" while it is (or could become) one."""
        body = self.raw.lstrip()
        label = self._label.match(body)
        if label:
            body = body[label.end() :]
        elif not final and any(candidate.startswith(_compact(body)) for candidate in self._labels):
            return ""  # could still become "Sheldon:"
        echo = self._echo.match(body) if self._echo else None
        rest = body[echo.end() :] if echo else body
        if not self.message.startswith(_normalise(rest)):
            return rest
        # Nothing of its own yet, or only (the start of) the user's message: held while it is generated.
        if not final:
            return ""
        if echo:  # the message said back, then at most its start again: kept only if it is short and alone
            return body if not rest.strip() and not is_echo(body, self.message) else ""
        return "" if is_echo(rest, self.message) else rest  # "What?" to "Whatever you say." is a reply

    def _clean(self, final: bool, cut_fragment: bool) -> str:
        body = self._body(final)
        if not final:
            # Up to the last complete word: the next token may extend the current one, even after a full stop
            # ("3." into "3.14", "U." into "U.S."), so the last word waits for a space or the reply's end.
            word_end = max((match.start() for match in _WHITESPACE.finditer(body)), default=0)
            return body[:word_end].rstrip()
        # The reply ends here: "the U.S." at its end closes a sentence, but not before a space (more was to come).
        sentence_end = _sentence_end(body)
        if cut_fragment and sentence_end:
            return body[:sentence_end]
        return body.rstrip()


def _sentence_ends(text: str, growing: bool = False) -> list[int]:
    """Where each complete sentence of `text` ends.

    `growing`: more text may follow, so a full stop at the very end after a digit or a lone letter is not an
    end yet (the next token may make "3." into "3.14", or "U." into "U.S."), nor is a dotted abbreviation's.
    """
    ends = []
    for match in _SENTENCE_END.finditer(text):
        at_end = match.end() == len(text)
        before = match.start() + 1  # up to the first of the end's marks
        if _TITLE.search(text, 0, before):
            continue
        # A dotted abbreviation ends a sentence only where a line ends, or the text (and it grows no more).
        line_ends = not growing if at_end else text[match.end()] in "\r\n"
        if _ABBREVIATION.search(text, 0, before) and not line_ends:
            continue
        if growing and at_end and _MAY_GO_ON.search(text, 0, before):
            continue
        ends.append(match.end())
    return ends


def _sentence_end(text: str, growing: bool = False) -> int:
    """Where the last complete sentence of `text` ends (0: it has none)."""
    return max(_sentence_ends(text, growing), default=0)


def streamed_as(streamed: str, final: str) -> bool:
    """Whether streamed text fits the final reply: the same, or it plus the unfinished sentence cut at the end."""
    # The streamed text was shown while the reply went on: what ends it ("the U.S.", "3.") may not end a sentence.
    return streamed.startswith(final) and not _sentence_ends(streamed[len(final) :], growing=True)
