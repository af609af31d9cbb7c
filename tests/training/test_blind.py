"""Blind ratings: the items, the sheet and its shuffling, reading ratings, the scores, the commands."""

import csv
import json
import re
from collections import Counter
from dataclasses import replace
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from data.pipeline import episode_names, read_transcripts, split_episodes
from training.blind import (
    LAST_LINE_MARK,
    RUBRIC,
    BlindError,
    Item,
    Judgement,
    build_system,
    collect_replies,
    judgements,
    paired,
    parse_systems,
    pick_items,
    read_key,
    read_ratings,
    score,
    shuffled_candidates,
    sign_test,
    summarize,
    write_sheet,
)

SHARED_RUBRIC = Path(__file__).resolve().parents[3] / "shared" / "eval" / "blind-rubric.md"
SPEAKERS = ("Leonard", "Penny", "Sheldon", "Howard", "Sheldon", "Raj")


def write_transcripts(path, episodes=20):
    """`episodes` episodes of two scenes; every line says where it is, so tests can check positions."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["episode_name", "dialogue", "person_scene"])
        for episode in range(1, episodes + 1):
            name = f"Series 01 Episode {episode:02d} – Test {episode}"
            for scene in (1, 2):
                writer.writerow([name, "A room.", "Scene"])
                for position, speaker in enumerate(SPEAKERS):
                    writer.writerow([name, f"{speaker} says e{episode} s{scene} l{position}.", speaker])
    return path


@pytest.fixture
def transcripts(tmp_path):
    return write_transcripts(tmp_path / "transcripts.csv")


def item(number, answer="The true line."):
    return Item(number, "Episode", 1, (("Leonard", "Hello."),), ("Penny", f"Question {number}?"), answer)


def rate(sense, character, fit, bad=False):
    return {"sense": sense, "character": character, "fit": fit, "bad": bad}


def write_ratings(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


# --- The rubric ------------------------------------------------------------------------------------


def test_rubric_is_the_shared_rubric_word_for_word():
    if not SHARED_RUBRIC.is_file():
        pytest.skip(f"The shared rubric is not at {SHARED_RUBRIC}")
    block = re.search(r"^```\n(.*?)\n```", SHARED_RUBRIC.read_text(), re.DOTALL | re.MULTILINE)
    assert block, "the shared rubric has no code block"
    assert RUBRIC == block.group(1)


# --- Items -------------------------------------------------------------------------------------------


def test_items_come_from_validation_episodes_spread_and_reproducible(transcripts):
    lines = read_transcripts(transcripts)
    train, validation = split_episodes(episode_names(lines), seed=42)
    assert len(validation) == 2
    items = pick_items(lines, 4, seed=1234)
    assert [i.id for i in items] == [1, 2, 3, 4]
    assert {i.episode for i in items} == validation  # both episodes before either gives a second
    assert Counter(i.episode for i in items) == Counter({e: 2 for e in validation})
    assert pick_items(lines, 4, seed=1234) == items
    assert pick_items(lines, 4, seed=99) != items
    # Never an answer to his own line; everything usable, not more.
    assert len(pick_items(lines, 100, seed=1)) == 2 * 2 * 2  # 2 episodes x 2 scenes x 2 answers to others
    with pytest.raises(BlindError, match="at least 1"):
        pick_items(lines, 0)


def test_items_can_be_only_answers_to_short_lines(transcripts):
    lines = read_transcripts(transcripts)
    asked = {item.line[1] for item in pick_items(lines, 100, seed=1)[:3]}  # three lines he answers, made short
    lines = [replace(line, text="Hello there.") if line.text in asked else line for line in lines]
    short = pick_items(lines, 100, seed=1, max_line_words=2)
    assert len(short) == 3 and all(item.line[1] == "Hello there." for item in short)
    with pytest.raises(BlindError, match="at most 1 words"):
        pick_items(lines, 100, seed=1, max_line_words=1)


def test_item_context_and_speakers_follow_the_transcript(transcripts):
    for found in pick_items(read_transcripts(transcripts), 8, seed=5):
        assert found.line[0] != "Sheldon"
        episode = re.search(r"Episode (\d+)", found.episode).group(1).lstrip("0")
        spoken = [*found.context, found.line]
        # Lines in order, each with the speaker who said it, the last one right before the answer.
        for speaker, text in spoken:
            assert text.startswith(f"{speaker} says e{episode} s{found.scene} ")
        positions = [int(text.rsplit("l", 1)[1].rstrip(".")) for _, text in spoken]
        assert positions == list(range(positions[0], positions[0] + len(spoken)))
        answer_position = int(found.answer.rsplit("l", 1)[1].rstrip("."))
        assert answer_position == positions[-1] + 1 and found.answer.startswith("Sheldon says")
        assert len(found.context) <= 5


@pytest.mark.slow
def test_items_of_the_show(show_transcripts):
    lines = read_transcripts(show_transcripts)
    _, validation = split_episodes(episode_names(lines), seed=42)
    items = pick_items(lines, 40)
    assert len(items) == 40 and {i.episode for i in items} <= validation
    assert len({i.episode for i in items}) == min(40, len(validation))
    said = {(line.episode, line.speaker, line.text) for line in lines}
    for found in items:
        assert all((found.episode, speaker, text) in said for speaker, text in [*found.context, found.line])
        assert found.line[0] != "Sheldon"


# --- Systems -----------------------------------------------------------------------------------------


def test_builtin_systems(transcripts):
    lines = read_transcripts(transcripts)
    items = pick_items(lines, 4)
    assert build_system("scripted", lines, 1).replies(items) == [i.answer for i in items]
    others = build_system("other", lines, 1).replies(items)
    by_text = {line.text: line for line in lines}
    for found, reply in zip(items, others):
        assert by_text[reply].speaker != "Sheldon" and by_text[reply].episode != found.episode
    assert build_system("other", lines, 1).replies(items) == others
    assert build_system("other", lines, 2).replies(items) != others


def test_retrieved_is_a_scripted_line_of_a_training_episode(transcripts, tiny_retriever, settings, tmp_path):
    settings.VAR_DIR = tmp_path  # the training episodes' index is built under VAR_DIR/evaluation/cache
    lines = read_transcripts(transcripts)
    train, _ = split_episodes(episode_names(lines), seed=42)
    items = pick_items(lines, 3)
    replies = build_system(f"retrieved:{tiny_retriever}", lines, 1, transcripts=transcripts).replies(items)
    by_text = {line.text: line for line in lines}
    assert all(by_text[r].speaker == "Sheldon" and by_text[r].episode in train for r in replies)
    settings.RETRIEVER_MODEL = "none"
    with pytest.raises(BlindError, match="retriever"):
        build_system("retrieved", lines, 1, transcripts=transcripts)


def test_other_specs_go_to_inference_systems(transcripts, settings, tiny_chat):
    from inference.systems import ReplySystem

    settings.GENERATOR_MODEL, settings.RETRIEVER_MODEL = str(tiny_chat), "none"
    system = build_system("candidates=3,temperature=0.5", read_transcripts(transcripts), 1, transcripts=transcripts)
    assert isinstance(system, ReplySystem) and system.spec.candidates == 3
    assert system.spec.sampling == {"temperature": 0.5}
    with pytest.raises(BlindError, match="not understood.*Unknown key 'colour'"):
        build_system("colour=blue", read_transcripts(transcripts), 1, transcripts=transcripts)


def test_every_system_must_answer_every_item_with_text():
    class Short:
        def replies(self, items):
            return ["only one"]

    items = [item(1), item(2)]
    with pytest.raises(BlindError, match="'short' gave 1 replies for 2 items"):
        collect_replies(
            {"fine": "scripted", "short": "short"},
            items,
            lambda spec: Short() if spec == "short" else build_system(spec, [], 1),
        )
    built = []
    with pytest.raises(BlindError, match="no such"):
        collect_replies({"a": "scripted", "b": "bad"}, items, lambda spec: built.append(spec) or build_fails(spec))
    assert built == ["scripted", "bad"]  # every spec built before any system replies


def build_fails(spec):
    if spec == "bad":
        raise BlindError("no such spec")
    return ScriptedNeverCalled()


class ScriptedNeverCalled:
    def replies(self, items):
        raise AssertionError("a system replied before every spec was built")


def test_parse_systems():
    assert parse_systems(["a=scripted", " b = other "]) == {"a": "scripted", "b": "other"}
    for bad, message in (
        (["a=scripted", "a=other"], "twice"),
        (["scripted"], "NAME=SPEC"),
        (["=x"], "NAME=SPEC"),
        ([], "at least one"),
    ):
        with pytest.raises(BlindError, match=message):
            parse_systems(bad)


# --- The sheet -----------------------------------------------------------------------------------------


def test_sheet_layout_and_key(tmp_path):
    items = [item(1), item(2)]
    replies = {
        "scripted": ["The true line.", "The true line."],
        "zeta": ["Bazinga.", "The  true\nline. "],
        "floor": ["What?", "Hmm."],
    }
    key = write_sheet(tmp_path, items, replies, seed=7)
    sheet = (tmp_path / "sheet.md").read_text()
    assert sheet.startswith(RUBRIC + "\n")
    section = sheet.split("## Item 1\n", 1)[1].split("## Item 2", 1)[0]
    assert f"Leonard: Hello.\nPenny: Question 1? {LAST_LINE_MARK}\n" in section
    shown = re.findall(r"^([A-Z]): (.*)$", section, re.MULTILINE)
    assert sorted(text for _, text in shown) == ["Bazinga.", "The true line.", "What?"]
    assert [label for label, _ in shown] == ["A", "B", "C"]
    for label, text in shown:
        assert (
            key["items"]["1"]["labels"][label]
            == {"The true line.": ["scripted"], "Bazinga.": ["zeta"], "What?": ["floor"]}[text]
        )
    # The same text from two systems is shown once and counts for both.
    labels_2 = key["items"]["2"]["labels"]
    assert sorted(map(sorted, labels_2.values())) == [["floor"], ["scripted", "zeta"]]
    assert key["items"]["1"]["answer"] == "The true line." and key["systems"] == ["scripted", "zeta", "floor"]
    assert "floor" not in sheet.lower() and "zeta" not in sheet.lower()  # no system named to the rater
    shown_items = json.loads((tmp_path / "items.json").read_text())
    assert Item.from_dict(shown_items[0]) == items[0] and set(shown_items[0]["candidates"]) == {"A", "B", "C"}
    with pytest.raises(BlindError, match="1 replies for 2 items"):
        write_sheet(tmp_path / "x", items, {"short": ["one"]}, seed=7)


def test_candidates_are_shuffled_per_item_and_reproducibly():
    replies = {name: name + " says." for name in ("scripted", "other", "bot", "bot2")}
    orders = [[systems[0] for _, _, systems in shuffled_candidates(i, replies, seed=3)] for i in range(1, 41)]
    assert orders == [[s[0] for _, _, s in shuffled_candidates(i, replies, seed=3)] for i in range(1, 41)]
    assert orders != [[s[0] for _, _, s in shuffled_candidates(i, replies, seed=4)] for i in range(1, 41)]
    # Every system lands under every label somewhere in 40 items; none keeps one place.
    for position in range(4):
        assert len({order[position] for order in orders}) == 4
    assert Counter(order.index("scripted") for order in orders).most_common(1)[0][1] < 20


# --- Ratings ---------------------------------------------------------------------------------------------


@pytest.fixture
def sheet(tmp_path):
    """Ten items, three systems, the bot's second reply equal to the scripted one."""
    items = [item(i, answer=f"True {i}.") for i in range(1, 11)]
    replies = {
        "scripted": [f"True {i}." for i in range(1, 11)],
        "other": [f"Other {i}." for i in range(1, 11)],
        "bot": ["True 1."] + [f"Bot {i}." for i in range(2, 11)],
    }
    write_sheet(tmp_path / "sheet", items, replies, seed=11)
    return tmp_path / "sheet"


def ratings_by_system(folder, by_system, items=range(1, 11)):
    """Rating lines that give each system's candidate `by_system[system](item)`."""
    key = read_key(folder)
    lines = []
    for number in items:
        labels = key["items"][str(number)]["labels"]
        line = {"item": number}
        for label, systems in labels.items():
            line[label] = by_system[systems[0]](number)
        lines.append(line)
    return lines


def test_read_ratings_tolerates_fences_and_blank_lines(sheet, tmp_path):
    lines = ratings_by_system(sheet, {s: lambda i: rate(3, 3, 3) for s in ("scripted", "other", "bot")})
    path = write_ratings(tmp_path / "a.jsonl", ["```json", lines[0], "", "  ", *lines[1:], "```"])
    ratings = read_ratings(path, read_key(sheet))
    assert set(ratings) == {str(i) for i in range(1, 11)}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda line, label: {**line, "item": 99}, "line 2: the sheet has no item 99"),
        (lambda line, label: {**line, "Z": rate(1, 1, 1)}, "line 2: item 2 has no label"),
        (lambda line, label: {k: v for k, v in line.items() if k != label}, "line 2: item 2 lacks a rating of A"),
        (
            lambda line, label: {**line, label: {"sense": 3, "fit": 3, "bad": False}},
            "line 2, item 2, A: the scale 'character' is missing",
        ),
        (lambda line, label: {**line, label: rate(6, 3, 3)}, "line 2, item 2, A: sense is 6"),
        (lambda line, label: {**line, label: rate(0, 3, 3)}, "sense is 0"),
        (lambda line, label: {**line, label: rate(3, 3, 3.5)}, "fit is 3.5"),
        (lambda line, label: {**line, label: {**rate(3, 3, 3), "bad": "no"}}, '"bad" must be true or false'),
        (lambda line, label: "{not json", "line 2 is not JSON"),
        (lambda line, label: {**line, "item": 1}, "line 2: item 1 is rated twice"),
    ],
)
def test_read_ratings_errors_name_the_line(sheet, tmp_path, change, message):
    lines = ratings_by_system(sheet, {s: lambda i: rate(3, 3, 3) for s in ("scripted", "other", "bot")})
    lines[1] = change(lines[1], "A")
    path = write_ratings(tmp_path / "a.jsonl", lines)
    with pytest.raises(BlindError, match=re.escape(message)):
        read_ratings(path, read_key(sheet))


def test_read_ratings_missing_or_empty_file(tmp_path):
    with pytest.raises(BlindError, match="not found"):
        read_ratings(tmp_path / "nope.jsonl")
    with pytest.raises(BlindError, match="no ratings"):
        read_ratings(write_ratings(tmp_path / "empty.jsonl", ["", "```"]))


# --- Scores ------------------------------------------------------------------------------------------------


def test_known_ratings_give_the_known_table(sheet, tmp_path):
    a = ratings_by_system(
        sheet,
        {
            "scripted": lambda i: rate(5, 4, 5),
            "other": lambda i: rate(2, 1, 1),
            "bot": lambda i: rate(4, 3, 4, bad=True),
        },
    )
    b = ratings_by_system(
        sheet, {"scripted": lambda i: rate(4, 4, 4), "other": lambda i: rate(2, 3, 1), "bot": lambda i: rate(2, 2, 2)}
    )
    rows, table = score(
        sheet, [write_ratings(tmp_path / "rater-a.jsonl", a), write_ratings(tmp_path / "rater-b.jsonl", b)]
    )
    # Item 1: the bot said the scripted line, so it gets the scripted candidate's ratings there.
    bot_sense = (9 * (4 + 2) / 2 + (5 + 4) / 2) / 10
    assert table.splitlines()[:3] == [
        "| system (10 exchanges, 2 raters) | sense | character | fit | good | flagged |",
        "|---|---|---|---|---|---|",
        "| scripted | 4.50 [4.50, 4.50] | 4.00 [4.00, 4.00] | 4.50 [4.50, 4.50] | 1.00 [1.00, 1.00] | 0.00 [0.00, 0.00] |",
    ]
    assert table.splitlines()[3] == (
        "| other | 2.00 [2.00, 2.00] | 2.00 [2.00, 2.00] | 1.00 [1.00, 1.00] | 0.00 [0.00, 0.00] | 0.00 [0.00, 0.00] |"
    )
    bot = rows[2]
    assert bot["system"] == "bot" and bot["items"] == 10 and bot["raters"] == 2
    assert bot["sense"] == pytest.approx(bot_sense)
    assert bot["good"] == pytest.approx(0.1)  # only item 1 (the scripted line, rated good by both)
    assert bot["flagged"] == pytest.approx(0.45)  # rater a flagged 9 of 10, rater b none
    assert bot["sense_low"] < bot["sense"] < bot["sense_high"]
    assert bot["per_rater"]["rater-a"]["sense"] == pytest.approx((9 * 4 + 5) / 10)
    assert rows[0]["rater_gap"] == pytest.approx(1.0)  # scripted: sense 5 vs 4, fit 5 vs 4
    assert rows[1]["rater_gap"] == pytest.approx(2.0)  # other: character 1 vs 3


def test_paired_differences_item_by_item_against_a_system(sheet, tmp_path):
    a = ratings_by_system(
        sheet,
        {"scripted": lambda i: rate(5, 4, 5), "other": lambda i: rate(2, 1, 1), "bot": lambda i: rate(3, 3, 1 + i % 5)},
    )
    ratings = [write_ratings(tmp_path / "rater-a.jsonl", a)]
    _, table = score(sheet, ratings, against="other")
    paired_lines = table.split("\n\n")[1].splitlines()
    assert paired_lines[0] == "| against other, item by item | sense | character | fit | good | items whose reply differs |"
    assert paired_lines[2] == (
        "| scripted | +3.00 [+3.00, +3.00] 10 up 0 down p 0.00 | +3.00 [+3.00, +3.00] 10 up 0 down p 0.00 "
        "| +4.00 [+4.00, +4.00] 10 up 0 down p 0.00 | +1.00 [+1.00, +1.00] 10 up 0 down p 0.00 | 10 of 10 |"
    )
    key = read_key(sheet)
    found = judgements(key, {"rater-a": read_ratings(ratings[0], key)})
    bot = {row["system"]: row for row in paired(key, found, "other")}["bot"]
    # Item 1 is the scripted line (rated 5, 4, 5); items 2-10 are rated 3, 3 and a fit of 1 + item % 5.
    assert (bot["sense"], bot["character"], bot["fit"]) == pytest.approx(((3 + 9) / 10, (3 + 18) / 10, (4 + 19) / 10))
    assert bot["fit_low"] < bot["fit"] < bot["fit_high"] and bot["differ"] == 10
    # Fit against the other's 1: higher on item 1 (5) and the 7 items whose 1 + item % 5 is over 1, level on 2.
    assert (bot["fit_up"], bot["fit_down"], bot["fit_p"]) == (8, 0, pytest.approx(2 / 2**8))
    # The other way round, the items the bot was rated higher on are the other's losses, item 1 among them.
    other = {row["system"]: row for row in paired(key, found, "bot")}["other"]
    assert (other["fit_up"], other["fit_down"], other["fit_p"]) == (0, 8, pytest.approx(2 / 2**8))
    # Against the scripted line, the bot's item 1 is the same text, shown once: it differs on 9 items.
    bot = {row["system"]: row for row in paired(key, found, "scripted")}["bot"]
    assert bot["differ"] == 9 and bot["items"] == 10
    with pytest.raises(BlindError, match="No system 'nobody'.*scripted, other, bot"):
        score(sheet, ratings, against="nobody")


def test_good_means_sense_and_fit_without_a_flag():
    # The rubric's "good": it makes sense and fits the dialogue; in character alone is not enough.
    assert Judgement("r", "1", "s", 5, 1, 5, False).good
    assert not Judgement("r", "1", "s", 5, 5, 1, False).good
    assert not Judgement("r", "1", "s", 1, 5, 5, False).good
    assert not Judgement("r", "1", "s", 5, 5, 5, True).good


def test_two_systems_take_turns_at_being_shown_first():
    """With two systems, the one named first must not always be A: raters would learn which is which."""
    first_shown = Counter(
        shuffled_candidates(item, {"base": f"Base reply {item}.", "new": f"New reply {item}."}, seed=7)[0][2][0]
        for item in range(1, 41)
    )
    assert set(first_shown) == {"base", "new"} and min(first_shown.values()) >= 10


def test_the_sign_test_counts_items_not_their_sizes():
    # Rounds 12 and 14 of docs/evaluation.md: intervals above zero, and splits a coin gives often enough.
    assert sign_test(10, 3) == pytest.approx(0.0923, abs=1e-4) and sign_test(5, 0) == pytest.approx(0.0625)
    assert sign_test(3, 10) == sign_test(10, 3) and sign_test(3, 3) == sign_test(0, 0) == 1.0
    assert sign_test(12, 0) < 0.001
    # Counts as numpy gives them (sums of booleans), over more items than 2**n holds in 64 bits: rounds pooled.
    assert sign_test(np.int64(68), np.int64(4)) == sign_test(68, 4) and 0 < sign_test(68, 4) < 1e-10


def test_interval_is_a_bootstrap_over_items():
    # Half the items rated 5, half 1: mean 3, standard error 2 / sqrt(40) = 0.32, so about 3 -+ 0.62.
    found = [Judgement("r", str(i), "s", 5 if i % 2 else 1, 3, 3, False) for i in range(40)]
    row = summarize(found, seed=1)[0]
    # A 95% interval: a 90% one would be about 3 -+ 0.52.
    assert row["sense"] == 3.0 and 2.3 < row["sense_low"] < 2.45 and 3.55 < row["sense_high"] < 3.7
    assert summarize(found, seed=1)[0]["sense_low"] == row["sense_low"]
    one = summarize(found[:1])[0]
    assert one["sense_low"] == one["sense"] == one["sense_high"] == 1.0


def test_partial_ratings_count_only_the_items_rated(sheet, tmp_path):
    a = ratings_by_system(sheet, {s: lambda i: rate(5, 5, 5) for s in ("scripted", "other", "bot")}, items=range(1, 5))
    b = ratings_by_system(sheet, {s: lambda i: rate(1, 1, 1) for s in ("scripted", "other", "bot")}, items=range(3, 7))
    rows, table = score(sheet, [write_ratings(tmp_path / "a.jsonl", a), write_ratings(tmp_path / "b.jsonl", b)])
    assert rows[0]["items"] == 6 and rows[0]["sense"] == pytest.approx((5 + 5 + 3 + 3 + 1 + 1) / 6)
    assert "(6 exchanges, 2 raters)" in table
    with pytest.raises(BlindError, match="named 'a'"):
        score(sheet, [tmp_path / "a.jsonl", tmp_path / "a.jsonl"])
    with pytest.raises(BlindError, match="No key.json"):
        score(tmp_path, [tmp_path / "a.jsonl"])


# --- The commands --------------------------------------------------------------------------------------------


def test_blind_sheet_and_score_commands(transcripts, tmp_path):
    output = tmp_path / "run"
    out = StringIO()
    call_command(
        "blind_sheet",
        "--system",
        "truth=scripted",
        "--system",
        "floor=other",
        "--exchanges",
        "6",
        "--output",
        str(output),
        "--transcripts",
        str(transcripts),
        stdout=out,
    )
    assert "6 exchanges of Sheldon from 2 validation episodes" in out.getvalue()
    key = read_key(output)
    assert key["systems"] == ["truth", "floor"] and len(key["items"]) == 6 and key["seed"] == 1234
    assert key["about"]["specs"] == {"truth": "scripted", "floor": "other"}
    with pytest.raises(CommandError, match="already holds a sheet"):
        call_command(
            "blind_sheet", "--system", "t=scripted", "--output", str(output), "--transcripts", str(transcripts)
        )

    ratings = []
    for name in ("ann", "bob"):
        lines = ratings_by_system(
            output, {"truth": lambda i: rate(5, 5, 5), "floor": lambda i: rate(1, 2, 1)}, items=range(1, 7)
        )
        ratings.append(str(write_ratings(tmp_path / f"{name}.jsonl", lines)))
    out = StringIO()
    call_command("blind_score", str(output), *ratings, "--output", str(tmp_path / "scores"), stdout=out)
    printed = out.getvalue()
    assert (
        "| truth | 5.00 [5.00, 5.00] | 5.00 [5.00, 5.00] | 5.00 [5.00, 5.00] | 1.00 [1.00, 1.00] | 0.00 [0.00, 0.00] |"
        in printed
    )
    assert "| floor | 1.00 [1.00, 1.00] | 2.00 [2.00, 2.00] | 1.00" in printed
    assert "ann: sense 5.00" in printed and "largest gap between raters 0.00" in printed
    assert "over every system and scale: 0.00" in printed
    assert (tmp_path / "scores" / "scores.png").stat().st_size > 1000
    assert printed.startswith((tmp_path / "scores" / "scores.md").read_text())
    with open(tmp_path / "scores" / "scores.csv") as handle:
        assert [row["system"] for row in csv.DictReader(handle)] == ["truth", "floor"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--system", "a=scripted", "--system", "a=other"], "given twice"),
        (["--system", "scripted"], "NAME=SPEC"),
        ([], "at least one system"),
        (["--system", "x=scripted", "--exchanges", "0"], "at least 1"),
        (["--system", "x=scripted", "--transcripts", "/nonexistent.csv"], "not found"),
        (["--system", "x=scripted", "--system", "y=no-such-spec"], r"inference\.systems\.build_system"),
    ],
)
def test_blind_sheet_refuses_bad_input(transcripts, tmp_path, arguments, message):
    if "--transcripts" not in arguments:
        arguments = [*arguments, "--transcripts", str(transcripts)]
    with pytest.raises(CommandError, match=message):
        call_command("blind_sheet", *arguments, "--output", str(tmp_path / "run"))
    assert not (tmp_path / "run" / "key.json").exists()


def test_blind_score_refuses_bad_input(sheet, tmp_path):
    with pytest.raises(CommandError, match="not found"):
        call_command("blind_score", str(sheet), str(tmp_path / "missing.jsonl"))
    bad = write_ratings(tmp_path / "bad.jsonl", [{"item": 1, "A": rate(9, 1, 1)}])
    with pytest.raises(CommandError, match="bad.jsonl line 1"):
        call_command("blind_score", str(sheet), str(bad))
