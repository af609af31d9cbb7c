"""The transcript pipeline on a small transcript and on the real seasons 1-8."""
import csv
import re

import pytest

from data.pipeline import (
    CONTEXT_LINES,
    TranscriptError,
    augment,
    build_exchanges,
    episode_names,
    normalise_speaker,
    read_transcripts,
    split_episodes,
)

EP1 = "Series 01 Episode 01 – Pilot"
EP2 = "Series 01 Episode 02 – Second"

SMALL_TRANSCRIPT = [
    (EP1, "A corridor.", "Scene"),
    (EP1, "Hello.", "Leonard"),
    (EP1, "Greetings.", "Sheldon"),
    (EP1, "How are you?", "Penny (waking)"),
    (EP1, "   ", "Leonard"),  # empty: dropped
    (EP1, "(sighs)", "Howard"),  # only a stage direction: dropped
    (EP1, "Fine, thank you. (sits)", "Sheldon (to Penny)"),
    (EP1, "The apartment.", "Scene"),
    (EP1, "Sheldon opens a new scene.", "Sheldon"),  # first line of a scene: no exchange
    (EP1, "Line 1", "Raj"),
    (EP1, "Line 2", "Howard"),
    (EP1, "Line 3", "Mrs Wolowitz (off)"),
    (EP1, "Line 4", "Penny"),
    (EP1, "Line 5", "Leonard"),
    (EP1, "Line 6", "Amy"),
    (EP1, "Answer after six lines.", "Sheldon"),
    (EP2, "Sheldon speaks first in a new episode.", "Sheldon"),  # new episode = new scene
    (EP2, "Really?", "Penny"),
    (EP2, "Really.", "Sheldon"),
]


def write_transcript(path, rows, header=("episode_name", "dialogue", "person_scene")):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def small_transcript(tmp_path):
    return write_transcript(tmp_path / "small.csv", SMALL_TRANSCRIPT)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Penny (waking)", "Penny"),
        ("Mrs Wolowitz (off)", "Mrs Wolowitz"),
        ("Sheldon (voice off, sings to a Mexican tune)", "Sheldon"),
        ("4. Sheldon (singing)", "Sheldon"),
        ("  Leonard  ", "Leonard"),
    ],
)
def test_speaker_names_are_normalised(raw, expected):
    assert normalise_speaker(raw) == expected


def test_small_transcript_lines_and_scenes(small_transcript):
    lines = read_transcripts(small_transcript)
    assert len(lines) == 15  # 19 rows - 2 scene headings - 2 lines empty after clean-up
    assert [line.speaker for line in lines[:4]] == ["Leonard", "Sheldon", "Penny", "Sheldon"]
    assert lines[3].text == "Fine, thank you."
    assert {line.scene for line in lines if line.episode == EP1} == {1, 2}
    assert {line.scene for line in lines if line.episode == EP2} == {1}
    assert episode_names(lines) == [EP1, EP2]


def test_small_transcript_exchanges(small_transcript):
    exchanges = build_exchanges(read_transcripts(small_transcript))
    assert [(e.question, e.answer) for e in exchanges] == [
        ("Hello.", "Greetings."),
        ("How are you?", "Fine, thank you."),
        ("Line 6", "Answer after six lines."),
        ("Really?", "Really."),
    ]
    first, second, long_scene, other_episode = exchanges
    assert first.context == ()
    assert second.context == ("Hello.", "Greetings.")
    # At most five context lines, the most recent ones, oldest first; the
    # scene's earlier Sheldon line counts as context like any other.
    assert long_scene.context == ("Line 1", "Line 2", "Line 3", "Line 4", "Line 5")
    assert len(long_scene.context) == CONTEXT_LINES
    assert other_episode.episode == EP2
    assert other_episode.context == ("Sheldon speaks first in a new episode.",)


def test_exchanges_for_another_character(small_transcript):
    exchanges = build_exchanges(read_transcripts(small_transcript), character="Penny")
    assert [(e.question, e.answer) for e in exchanges] == [
        ("Greetings.", "How are you?"),
        ("Line 3", "Line 4"),
        ("Sheldon speaks first in a new episode.", "Really?"),
    ]


def test_exchanges_of_every_speaker_are_each_speakers_own(small_transcript):
    lines = read_transcripts(small_transcript)
    everyone = build_exchanges(lines, character=None)
    speakers = {line.speaker for line in lines}
    assert len(speakers) > 1 and {e.character for e in everyone} <= speakers
    assert sorted(everyone, key=lambda e: (e.episode, e.answer_position)) == sorted(
        (e for speaker in speakers for e in build_exchanges(lines, speaker)), key=lambda e: (e.episode, e.answer_position)
    )


def test_augmentation_one_sample_per_context_suffix(small_transcript):
    exchanges = build_exchanges(read_transcripts(small_transcript))
    samples = list(augment(exchanges))
    assert len(samples) == sum(len(e.context) + 1 for e in exchanges) == 1 + 3 + 6 + 2
    second = [s.context for s in samples if s.answer == "Fine, thank you."]
    assert second == [("Hello.", "Greetings."), ("Greetings.",), ()]


def test_episode_split_is_disjoint_and_reproducible():
    episodes = [f"Series 01 Episode {n:02d}" for n in range(1, 41)]
    train, validation = split_episodes(episodes, validation_fraction=0.1, seed=7)
    assert not train & validation
    assert train | validation == set(episodes)
    assert len(validation) == 4
    assert split_episodes(list(reversed(episodes)), validation_fraction=0.1, seed=7) == (train, validation)
    assert split_episodes(episodes, validation_fraction=0.1, seed=8) != (train, validation)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(TranscriptError, match="not found: .*nowhere.csv"):
        read_transcripts(tmp_path / "nowhere.csv")


def test_wrong_columns_are_named(tmp_path):
    path = write_transcript(tmp_path / "bad.csv", [("x", "y")], header=("episode", "line"))
    with pytest.raises(TranscriptError, match="lacks the column\\(s\\) episode_name, dialogue, person_scene"):
        read_transcripts(path)


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(TranscriptError):
        read_transcripts(path)


@pytest.mark.slow
def test_real_seasons(show_transcripts):
    lines = read_transcripts(show_transcripts)
    exchanges = build_exchanges(lines)
    assert len(episode_names(lines)) == 178
    assert len(lines) == 39484
    assert len(exchanges) == 8681
    assert sum(1 for _ in augment(exchanges)) == sum(len(e.context) + 1 for e in exchanges) == 45731

    # No exchange crosses a scene or an episode: its question and context are
    # the lines right before the answer, all in the answer's scene.
    by_place = {(line.episode, line.position): line for line in lines}
    for exchange in exchanges:
        earlier = [
            by_place.get((exchange.episode, exchange.answer_position - k)) for k in range(1, len(exchange.context) + 2)
        ]
        assert all(line is not None and line.scene == exchange.scene for line in earlier)
        assert earlier[0].text == exchange.question
        assert tuple(line.text for line in reversed(earlier[1:])) == exchange.context
        before = by_place.get((exchange.episode, exchange.answer_position - len(exchange.context) - 2))
        if len(exchange.context) < CONTEXT_LINES:
            assert before is None or before.scene != exchange.scene

    train, validation = split_episodes(episode_names(lines), seed=42)
    assert not train & validation and len(train) + len(validation) == 178
    assert {e.episode for e in exchanges if e.episode in validation}.isdisjoint(
        {e.episode for e in exchanges if e.episode in train}
    )


@pytest.mark.parametrize(
    "rows, problem",
    [
        # An unquoted comma: "Hello" was read as Leonard's line.
        (["ep,Sheldon: Hi.,Sheldon", "ep,Hello, Leonard,Sheldon"], "line 3 has more fields than its header's 3"),
        (["ep,Sheldon: Hi.,Sheldon", "ep,No speaker"], "line 3 has fewer fields"),
        # A stray quote glued the rows after it into one line of a made-up speaker.
        (['ep,"She said ""hi"" to me,Leonard', "ep,What?,Penny", "ep,Goodbye.,Sheldon"], "not a readable CSV"),
        # An episode's rows that come back after another's restarted its positions (a crash on import).
        (["one,Hi.,Sheldon", "two,Hi.,Penny", "one,Bye.,Sheldon"], "line 4: the rows of 'one' come back"),
        ([f"ep,Hi.,{'S' * 201}"], "line 2: an episode name holds at most 300 characters and a speaker 200"),
    ],
)
def test_a_malformed_row_is_named_not_read_into_other_lines(tmp_path, rows, problem):
    path = tmp_path / "malformed.csv"
    path.write_text("\n".join(["episode_name,dialogue,person_scene", *rows]) + "\n")
    with pytest.raises(TranscriptError, match=re.escape(problem)):
        read_transcripts(path)


def test_an_over_long_episode_name_is_named_with_its_line(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("episode_name,dialogue,person_scene\nep,Hi.,Penny\n" + "E" * 301 + ",Hi.,Sheldon\n")
    with pytest.raises(TranscriptError, match="line 3: an episode name holds at most 300"):
        read_transcripts(path)


def test_no_exchange_crosses_from_one_episode_into_the_next(tmp_path):
    # No Scene rows: both episodes' lines are in "scene 0", and the episode alone separates them.
    rows = [("one", "Bye.", "Penny"), ("two", "Hello.", "Sheldon"), ("two", "Hi.", "Penny"), ("two", "Greetings.", "Sheldon")]
    exchanges = build_exchanges(read_transcripts(write_transcript(tmp_path / "two.csv", rows)))
    assert [(exchange.question, exchange.answer) for exchange in exchanges] == [("Hi.", "Greetings.")]
