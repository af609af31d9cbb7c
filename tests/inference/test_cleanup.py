"""Reply clean-up: labels, echoes, unfinished fragments, and the streaming invariant."""
import random

import pytest

from inference.cleanup import ReplyCleaner


def clean(message, raw, cut_fragment=False, seed=0):
    """Feed `raw` in random pieces; check the pieces join to the final text."""
    pieces = []
    cleaner = ReplyCleaner(message, on_piece=pieces.append)
    rng = random.Random(seed)
    position = 0
    while position < len(raw):
        step = rng.randint(1, 4)
        cleaner.feed(raw[position : position + step])
        position += step
    text = cleaner.finish(cut_fragment)
    assert "".join(pieces) == text
    return text


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    "message, raw, cut_fragment, expected",
    [
        ("Hi.", "Sheldon: Bazinga! I fooled you.", False, "Bazinga! I fooled you."),
        ("Hi.", "  sheldon cooper :  Hello.", False, "Hello."),
        ("Hi.", "Hello. I was about to say", True, "Hello."),  # the model or the token limit ended it mid-sentence: cut
        ("Hi.", "Hello. I was about to say", False, "Hello. I was about to say"),  # stopped by the person: kept as seen
        ("Hi.", "no sentence end at all", True, "no sentence end at all"),  # nothing else to keep
        ("How are you?", "How are you?", False, ""),  # a pure echo is no reply
        ("How are you?", "how are  you", False, ""),
        ("How are you?", "How are you? I am well.", False, "I am well."),
        ("Hello", "Hello there!", False, "Hello there!"),  # a fragment may begin a real answer
        ("Hi.", "Sheldon:", False, ""),
        ("Hi.", '"Is that so?" Yes.', False, '"Is that so?" Yes.'),
    ],
)
def test_clean_up_rules_keep_the_streaming_invariant(message, raw, cut_fragment, expected, seed):
    assert clean(message, raw, cut_fragment, seed) == expected


def test_text_after_the_last_sentence_end_is_held_until_it_completes():
    pieces = []
    cleaner = ReplyCleaner("Hi.", on_piece=pieces.append)
    cleaner.feed("Good morning. How")
    assert pieces == ["Good morning."]
    cleaner.feed(" are you?")
    assert pieces == ["Good morning.", " How are you?"]
