"""Sample-and-rank: the hard filters, the content filter and the choice among candidates."""
import pytest

from inference.content import flagged
from inference.selection import Candidate, RankWeights, choose, length_score, rejection


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Now, that wasn tough.", "broken word"),
        ("I don t think so.", "broken word"),
        ("I m not crazy, my mother had me tested.", "broken word"),
        ("It s a simple matter of physics.", "broken word"),
        ("How are you?", "echo"),
        ("Knock knock Penny, knock knock Penny, knock knock Penny.", "repeated phrase"),
        ("You are a whore.", "content"),
        ("...", "empty"),
        ("I wasn't there, and it's not my fault.", ""),
        ("I wasn\u2019t there, and it\u2019s not my fault.", ""),  # the curly apostrophe the model often writes
        ("I'm not crazy. My mother had me tested.", ""),
        ("Dickens wrote about a cocktail of misery.", ""),  # a blocked word inside another is fine
    ],
)
def test_hard_filters_name_what_is_wrong(text, reason):
    assert rejection(text, "How are you?") == reason


def test_a_short_echo_loses_to_a_reply_but_beats_the_fallback():
    # "Hello." to "Hello." is an echo: a candidate that is not one wins, however it scores...
    echo = Candidate("Hello.", "generated", mean_log_probability=-0.5)
    reply = Candidate("Greetings, Leonard.", "generated", mean_log_probability=-1.5)
    assert scored([echo, reply], [0.9, 0.2], message="Hello.") is reply and echo.rejected == "echo"
    # ...but when every candidate is one, it is kept: no fallback line for a greeting returned.
    assert scored([echo, Candidate("...", "generated")], [0.9, 0.9], message="Hello.") is echo


def test_a_word_the_show_would_not_air_is_never_chosen_even_said_back():
    # Every candidate failing, the least bad is kept; an echo may be, but not one that is also content.
    said_back = Candidate("Fuck you.", "generated", mean_log_probability=-0.5)
    assert rejection(said_back.text, "Fuck you, Sheldon!") == "content"
    chosen = scored([said_back], [0.9], message="Fuck you, Sheldon!")
    assert chosen.text == "" and chosen.rejected == "content"


def test_the_content_filter_catches_inflections_and_phrases():
    assert flagged("He was masturbating.") and flagged("Go KILL   yourself.") and flagged("FUCKING hell")
    assert not flagged("Bazinga! I was kidding.") and not flagged("The skill of a killer app.")


def scored(candidates, similarities, message="What do you think of Penny?"):
    return choose(candidates, similarities, message, RankWeights())


def test_the_selector_score_decides_between_fluent_candidates_of_similar_length():
    weak = Candidate("I like trains very much indeed.", "generated", mean_log_probability=-1.0)
    strong = Candidate("Penny is a waitress with a limited grasp of physics.", "generated", mean_log_probability=-1.0)
    assert scored([weak, strong], [0.1, 0.6]) is strong
    assert strong.scores["selector"] == pytest.approx(0.6) and not strong.rejected


def test_a_rejected_candidate_is_not_chosen_however_well_it_scores():
    broken = Candidate("Penny wasn tough on me.", "generated", mean_log_probability=-0.5)
    scripted = Candidate("She is my neighbour.", "scripted")
    assert scored([broken, scripted], [0.9, 0.2]) is scripted
    assert broken.rejected == "broken word"


def test_when_all_fail_the_least_bad_is_kept_but_never_flagged_content():
    repeated = Candidate("no no no no no", "generated", mean_log_probability=-2.0)
    echo = Candidate("What do you think of Penny?", "generated", mean_log_probability=-1.0)
    assert scored([repeated, echo], [0.1, 0.5]) is echo
    chosen = scored([Candidate("She is a slut.", "generated", mean_log_probability=-0.1)], [0.9])
    assert chosen.text == "" and chosen.rejected == "content"


def test_an_empty_candidate_is_not_the_least_bad():
    empty = Candidate("...", "generated")  # no log-probability: it would be scored as a scripted line
    repeated = Candidate("no no no no no", "generated", mean_log_probability=-2.0)
    assert scored([empty, repeated], [0.9, 0.1]) is repeated
    assert scored([empty], [0.9]).text == "" and scored([empty], [0.9]).rejected == "empty"


def test_fluency_and_length_break_ties_and_scripted_lines_get_their_stand_in_fluency():
    halting = Candidate("Penny is, well, a a person who is Penny.", "generated", mean_log_probability=-4.0)
    fluent = Candidate("Penny is a nice person who lives across the hall.", "generated", mean_log_probability=-1.0)
    assert scored([halting, fluent], [0.5, 0.5]) is fluent
    scripted = Candidate("Penny is a nice person who lives across the hall.", "scripted")
    scored([scripted], [0.5])
    assert scripted.scores["fluency"] == pytest.approx(RankWeights().fluency * RankWeights().fluency_of_scripted)
    # His lines' typical length (about 10 words) scores above one word and above eighty.
    assert length_score("one two three four five six seven eight nine ten") > length_score("Yes.")
    assert length_score("word " * 10) > length_score("word " * 80)


def test_nothing_to_choose_from_is_an_error():
    with pytest.raises(ValueError, match="no candidate"):
        scored([], [])


def test_the_pmi_part_prefers_the_reply_that_depends_on_what_was_said():
    """Equal in every other part, the candidate with the higher pmi wins once pmi is weighed; a scripted
    line gets its pmi as a generated one does; with no pmi scores there is no pmi part."""
    weights = RankWeights(pmi=0.5)
    generic = Candidate("That is a fascinating question, Penny.", "scripted")
    answer = Candidate("Penny is a waitress, Penny thinks.", "scripted")
    assert choose([generic, answer], [0.4, 0.4], "What do you think of Penny?", weights, [0.1, 0.9]) is answer
    assert answer.scores["pmi"] == pytest.approx(0.45) and generic.scores["pmi"] == pytest.approx(0.05)
    # Without the weight the same scores leave the choice to the other parts (here: the first of a tie).
    assert choose([generic, answer], [0.4, 0.4], "What do you think of Penny?", RankWeights(), [0.1, 0.9]) is generic
    # A better selector score is outweighed by the pmi difference times the weight.
    assert choose([generic, answer], [0.6, 0.4], "What do you think of Penny?", weights, [-0.5, 0.9]) is answer
    scored([generic], [0.4])
    assert "pmi" not in generic.scores
