"""Reply clean-up that streams: the pieces it emits join to exactly the final text.

Rules: strip a leading speaker label (`Sheldon:`), never echo the user's
message, and cut an unfinished trailing fragment when generation ran out of
tokens. To keep the streaming invariant, text after the last sentence end is
held back until the sentence completes or generation ends, and nothing is
emitted while the reply could still turn out to be the user's own message.
"""
import re

# A sentence ends at . ! ? or an ellipsis, with any closing quotes or brackets.
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*")


_NOT_WORD = re.compile(r"[\W_]+")


def _normalise(text):
    """Words only, lower case: `Hello,  there!` -> `hello there`."""
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


class ReplyCleaner:
    """Fed the raw generated text piece by piece; emits the cleaned reply piece by piece."""

    def __init__(self, message, character="Sheldon", on_piece=None):
        self.message = _normalise(message)
        words = message.split()
        # A complete sentence repeated at the start of the reply is cut off it;
        # a fragment ("Hello") may well begin a real answer ("Hello there.").
        repeats_sentence = bool(words) and _SENTENCE_END.search(words[-1]) is not None
        self._echo = (
            re.compile(r"\s*" + r"\s+".join(map(re.escape, words)) + r"\s*", re.IGNORECASE)
            if repeats_sentence
            else None
        )
        self._label = re.compile(rf"\s*{re.escape(character)}(?:\s+Cooper)?\s*:\s*", re.IGNORECASE)
        self.on_piece = on_piece
        self.raw = ""
        self.text = ""  # what has been emitted: always a prefix of the final text

    def feed(self, raw_piece):
        self.raw += raw_piece
        self._emit(self._clean(final=False, cut_fragment=False))

    def finish(self, cut_fragment):
        """Emit the rest and return the final text (possibly empty)."""
        self._emit(self._clean(final=True, cut_fragment=cut_fragment))
        return self.text

    def _emit(self, cleaned):
        # Emitted text is never taken back: the clean-up only ever extends it.
        piece = cleaned[len(self.text) :] if cleaned.startswith(self.text) else ""
        if piece:
            self.text = cleaned
            if self.on_piece is not None:
                self.on_piece(piece)

    def _clean(self, final, cut_fragment):
        body = self.raw.lstrip()
        label = self._label.match(body)
        if label:
            body = body[label.end() :]
        echo = self._echo.match(body) if self._echo else None
        if echo:
            body = body[echo.end() :]
        if self.message.startswith(_normalise(body)):
            return ""  # nothing yet, or (part of) the user's own message
        sentence_end = max((match.end() for match in _SENTENCE_END.finditer(body)), default=0)
        if not final or (cut_fragment and sentence_end):
            return body[:sentence_end]
        return body.rstrip()
