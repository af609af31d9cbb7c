"""Reply clean-up: labels, echoes, unfinished fragments, and what streams when."""
import random

import pytest

from inference.cleanup import ReplyCleaner, streamed_as


def clean(message, raw, cut_fragment=False, seed=0):
    """Feed `raw` in random pieces; check the streamed pieces against the final text."""
    pieces = []
    cleaner = ReplyCleaner(message, on_piece=pieces.append)
    rng = random.Random(seed)
    position = 0
    while position < len(raw):
        step = rng.randint(1, 4)
        cleaner.feed(raw[position : position + step])
        position += step
    text = cleaner.finish(cut_fragment)
    streamed = "".join(pieces)
    # Streamed text is never taken back; only a cut fragment leaves the final text shorter.
    assert streamed == text or (cut_fragment and streamed_as(streamed, text))
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
        # A title's or an abbreviation's full stop ends no sentence, nor does a decimal point; a lone capital's does.
        ("Hi.", "Ask Dr. Hofstadter. Or Mr. Howard", True, "Ask Dr. Hofstadter."),
        ("Hi.", "Now so am I. And", True, "Now so am I."),
        ("Hi.", "Yes. I live in the U.S.", True, "Yes. I live in the U.S."),  # the text ends there: so does a sentence
        ("Hi.", "Yes. I live in the U.S.\n", True, "Yes. I live in the U.S."),  # so does a line
        ("Hi.", "Hello. We met in the U.S. ", True, "Hello."),  # a space: more was to come ("U.S. Army")
        ("Hi.", "Hello. We met in the U.S. Army", True, "Hello."),  # "U.S." was shown, the sentence was not finished
        ("Hi.", "Hello. I am 3.14 years", True, "Hello."),
        ("Hi.", "Pi is 3.14159 in the U.S. and", True, "Pi is 3.14159 in the U.S. and"),
        ("How are you?", "How are you?", False, ""),  # a pure echo is no reply
        ("How are you?", "how are  you", False, ""),
        ("How are you?", "How are you? I am well.", False, "I am well."),
        ("How are you today?", "How are you", True, ""),  # its first three words or more: still an echo
        # Short replies that start as the message does answer it (the one-word rule gave "Hello." the fallback).
        ("Hello.", "Hello.", True, "Hello."),
        ("Hello Sheldon.", "Hello.", True, "Hello."),
        ("Yes or no, Sheldon?", "Yes.", True, "Yes."),
        ("Whatever you say, Sheldon.", "What?", True, "What?"),  # words, not letters: "what" is not "whatever"
        ("How are you?", "How are you? How", True, ""),  # the message, then its start again: no reply
        ("Hello.", "Hello. Nice to see you.", True, "Nice to see you."),  # a sentence said back is cut off
        ("Hello", "Hello there!", False, "Hello there!"),  # a fragment may begin a real answer
        ("Hi.", "Sheldon:", False, ""),
        ("Hi.", '"Is that so?" Yes.', False, '"Is that so?" Yes.'),
        # A closing quote or bracket belongs to the sentence it ends.
        ("Hi.", 'He said "I am not crazy." And then', True, 'He said "I am not crazy."'),
        ("Hi.", "I know (I always do.) But", True, "I know (I always do.)"),
        # A sampled NUL byte failed a reply's database write; no control character is a word of dialogue.
        ("Hi.", "Bazi\x00nga!\x07 I\x1b fooled\tyou.", False, "Bazinga! I fooled\tyou."),
    ],
)
def test_clean_up_rules(message, raw, cut_fragment, expected, seed):
    assert clean(message, raw, cut_fragment, seed) == expected


def test_the_sentence_count_never_counts_an_end_that_more_text_could_undo():
    cleaner = ReplyCleaner("Hi.")
    counts = []
    for piece in ("We went to the U.", "S.", " Army", " in 19", "80.", " Then", " home", ".\n"):
        cleaner.feed(piece)
        counts.append(cleaner.sentences())
    # "U." and "U.S." at the end, and "1980." at the end, could still go on: counted once the next token is in.
    assert counts == [0, 0, 0, 0, 0, 1, 1, 2]
    assert cleaner.finish(cut_fragment=True) == "We went to the U.S. Army in 1980. Then home."


def test_complete_words_stream_at_once_and_a_cut_fragment_is_dropped_at_the_end():
    pieces = []
    cleaner = ReplyCleaner("Hi.", on_piece=pieces.append)
    cleaner.feed("Good morn")
    assert pieces == ["Good"]  # "morn" may still grow
    cleaner.feed("ing. How are y")
    assert "".join(pieces) == "Good morning. How are"
    assert cleaner.finish(cut_fragment=True) == "Good morning."


@pytest.mark.parametrize("raw", ["Sheldon: Hello there.", "Sheldon Cooper: Hello there."])
def test_nothing_streams_while_the_reply_could_still_be_a_label(raw):
    pieces = []
    cleaner = ReplyCleaner("Hi.", on_piece=pieces.append)
    for character in raw:
        cleaner.feed(character)
    assert cleaner.finish(cut_fragment=True) == "Hello there."
    assert "".join(pieces) == "Hello there."


def test_nothing_streams_while_the_reply_could_still_be_an_echo():
    pieces = []
    cleaner = ReplyCleaner("How are you today?", on_piece=pieces.append)
    cleaner.feed("How are you ")
    assert pieces == []
    cleaner.feed("today? Fine, thank you.")
    assert cleaner.finish(cut_fragment=True) == "Fine, thank you."
    assert "".join(pieces) == "Fine, thank you."




@pytest.mark.parametrize(
    "raw, max_sentences, expected, not_taken",
    [
        ("Sheldon: Hello there. How are you? I am fine.", 2, "Hello there. How are you?", "fine"),
        # A title's full stop and a decimal point end no sentence: the cap once cut these to "Dr." and "Pi is 3."
        ("Dr. Hofstadter is at work. He left.", 1, "Dr. Hofstadter is at work.", "left"),
        ("Pi is 3.14 and change. Obviously.", 1, "Pi is 3.14 and change.", "Obviously"),
        # "1980." and "I." at the end wait for the next token (it could make "1980.5" or "I.Q."), then end.
        ("I was born in the U.S. in 1980. And so on.", 1, "I was born in the U.S. in 1980.", "so on"),
        ("Now so am I. And that is that.", 1, "Now so am I.", "that is"),
        ("We moved to the U.S.\nThen the U.K.\nThen home.", 1, "We moved to the U.S.", "U.K"),  # a line ends it
    ],
)
def test_a_reply_ends_once_it_holds_enough_sentences(tiny_chat, settings, raw, max_sentences, expected, not_taken):
    """REPLY_MAX_SENTENCES: the sequence ends as at its end token, and no token after the last sentence is taken."""
    from inference.backends import backend_for
    from inference.loading import load_generator
    from inference.profiles import Profile
    from inference.replier import Replier
    from inference.requests import FinishReason, RequestState, Sequence

    settings.INFERENCE_ENGINE = "torch"
    backend = backend_for(load_generator(str(tiny_chat)), max_new_tokens=30)
    tokenizer = backend.tokenizer
    script = tokenizer(raw, add_special_tokens=False).input_ids
    batch = Replier(Profile("test", "", str(tiny_chat), ""), backend, max_sentences=max_sentences).open_batch()
    sequence = Sequence(RequestState([], "Hi."), ReplyCleaner("Hi.", "Sheldon"))
    for token_id in script:  # the tokens a model might give, one decode step each
        sequence.append(token_id, 0.0, set(), 30)
        batch.process_outputs([sequence])
        if sequence.finished:
            break
    assert sequence.finish_reason is FinishReason.END
    assert not_taken not in tokenizer.decode(sequence.token_ids)  # no token after the last sentence was taken
    assert sequence.cleaner.finish(cut_fragment=True) == expected


def test_a_streaming_reply_never_shows_a_word_the_show_would_not_air():
    # A streamed reply is not ranked, so the content filter the ranking applies is applied as it streams.
    pieces = []
    cleaner = ReplyCleaner("What do you think of Howard?", on_piece=pieces.append)
    for piece in ("Howard is a ", "pathetic little sh", "it. And", " another thing."):
        cleaner.feed(piece)
    assert cleaner.blocked and "".join(pieces) == "Howard is a pathetic little"
    # Shown words are not taken back: with no full sentence among them, the reply trails off after them.
    assert cleaner.finish(cut_fragment=True) == "Howard is a pathetic little\u2026" == "".join(pieces)

    pieces = []
    cleaner = ReplyCleaner("What do you think of Howard?", on_piece=pieces.append)
    for piece in ("He is an engineer. ", "And a pathetic little sh", "it."):
        cleaner.feed(piece)
    assert cleaner.finish(cut_fragment=True) == "He is an engineer."  # ends at its last full sentence
    assert streamed_as("".join(pieces), "He is an engineer.")

    pieces = []
    cleaner = ReplyCleaner("What do you think of Howard?", on_piece=pieces.append)
    cleaner.feed("Shit, Howard.")
    assert cleaner.finish(cut_fragment=True) == "" == "".join(pieces)  # nothing shown: sampled once more
    ranked = ReplyCleaner("What do you think of Howard?")  # a candidate: shown only if chosen, and choose() filters
    ranked.feed("Howard is a pathetic little shit.")
    assert not ranked.blocked and ranked.finish(cut_fragment=True) == "Howard is a pathetic little shit."


def test_a_streaming_reply_ends_at_a_blocked_word(tiny_chat, settings):
    from inference.backends import backend_for
    from inference.loading import load_generator
    from inference.profiles import Profile
    from inference.replier import Replier
    from inference.requests import FinishReason, RequestState, Sequence

    settings.INFERENCE_ENGINE = "torch"
    backend = backend_for(load_generator(str(tiny_chat)), max_new_tokens=30)
    tokenizer = backend.tokenizer
    script = tokenizer("Howard is a pathetic little shit. And I mean it.", add_special_tokens=False).input_ids
    batch = Replier(Profile("test", "", str(tiny_chat), ""), backend).open_batch()
    pieces = []
    sequence = Sequence(RequestState([], "Hi."), ReplyCleaner("Hi.", "Sheldon", pieces.append))
    for token_id in script:
        sequence.append(token_id, 0.0, set(), 30)
        batch.process_outputs([sequence])
        if sequence.finished:
            break
    assert sequence.finish_reason is FinishReason.END and "mean" not in tokenizer.decode(sequence.token_ids)
    assert "shit" not in "".join(pieces) and sequence.cleaner.finish(cut_fragment=True) == "".join(pieces)


def test_a_greeting_returned_streams_once_the_reply_ends():
    pieces = []
    cleaner = ReplyCleaner("Hello.", on_piece=pieces.append)
    for character in "Hello.":
        cleaner.feed(character)
    assert pieces == []  # it could still have become "Hello. How are you?" repeated back
    assert cleaner.finish(cut_fragment=True) == "Hello." and "".join(pieces) == "Hello."


def test_a_stopped_reply_is_what_was_shown_and_nothing_after():
    pieces = []
    cleaner = ReplyCleaner("Hi.", on_piece=pieces.append)
    cleaner.feed("Hello. I was about to sa")
    assert cleaner.stop() == "Hello. I was about to" == "".join(pieces)  # "sa" was never shown: it is not sent
    unstreamed = ReplyCleaner("Hi.")
    unstreamed.feed("Hello. I was about to sa")
    assert unstreamed.stop() == "Hello. I was about to sa"  # a ranked candidate: the text so far, uncut


def test_a_sentence_ending_in_a_closing_quote_counts_for_the_sentence_cap():
    cleaner = ReplyCleaner("Hi.")
    cleaner.feed('"Is that so?" Yes')
    assert cleaner.sentences() == 1


def test_a_message_said_back_is_no_sentence_of_the_replys_own():
    # The one-sentence cap counts the reply's own sentences: "Invisibility spell." said back is not one, so the
    # generation goes on to the answer after it instead of ending on the echo.
    cleaner = ReplyCleaner("Invisibility spell.")
    cleaner.feed("Invisibility spell. ")
    assert cleaner.sentences() == 0
    cleaner.feed("We skirmish to the death. And")
    assert cleaner.sentences() == 1
    assert cleaner.finish(cut_fragment=True) == "We skirmish to the death."
