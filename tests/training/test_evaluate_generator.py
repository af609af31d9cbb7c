"""The evaluation: its metrics on known inputs, and the command end to end with tiny models."""

import csv
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from data.corpus import DEMO_TRANSCRIPTS
from data.pipeline import ScriptLine
from training.evaluation import EvaluationData, SamplingPoint, parse_samplings
from training.metrics import distinct_n, rouge_l
from training.style import StyleScorer


def test_rouge_l_exact_values():
    # LCS "the cat on the mat" = 5 words: precision 5/5, recall 5/6, F1 = 10/11.
    assert rouge_l("the cat on the mat", "The cat sat on the mat.") == pytest.approx(10 / 11)
    assert rouge_l("Bazinga!", "bazinga") == 1.0
    assert rouge_l("completely different", "nothing shared") == 0.0
    assert rouge_l("", "anything") == 0.0
    # Order matters: LCS of "a b c" and "c b a" is one word.
    assert rouge_l("a b c", "c b a") == pytest.approx(1 / 3)


def test_distinct_n_counts_over_all_replies():
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # (a b), (b a), (a b)
    # The same reply twice halves distinct-2: canned repetition shows.
    assert distinct_n(["one two three", "one two three"], 2) == pytest.approx(2 / 4)
    assert distinct_n(["x", ""], 2) == 0.0


def test_parse_samplings():
    default = SamplingPoint(0.7, 0.9)
    assert parse_samplings("0.2/0.1, default,0.2/0.1", default) == [SamplingPoint(0.2, 0.1), default]
    for bad in ("hot", "0.5", "0/0.5", "0.5/1.5", ","):
        with pytest.raises(ValueError):
            parse_samplings(bad, default)


def test_style_scorer_prefers_the_characters_words(tmp_path):
    lines = [ScriptLine("e", 1, i, "Sheldon", f"Bazinga, that is my spot on the couch {i}.") for i in range(20)]
    lines += [ScriptLine("e", 1, 20 + i, "Penny", f"Hey guys, want a drink {i}?") for i in range(20)]
    scorer = StyleScorer.cached(lines, "Sheldon", tmp_path)
    sheldon, penny = scorer.probabilities(["That is my spot.", "Want a drink, guys?"])
    assert sheldon > 0.5 > penny
    assert list(tmp_path.glob("style-*.joblib"))  # cached: the next run loads it
    with pytest.raises(ValueError, match="lines of Sheldon"):
        StyleScorer.fit(lines[20:], "Sheldon")


def test_evaluation_exchanges_are_validation_only_with_speakers():
    data = EvaluationData.load(DEMO_TRANSCRIPTS, "Sheldon", seed=42, n=3)
    assert len(data.exchanges) == 3
    validation = {e.episode for e in data.exchanges}
    assert not validation & {e.episode for e in data.train_exchanges}
    assert not validation & {line.episode for line in data.train_lines}
    # Speakers come from the transcript: Sheldon's own earlier lines are his.
    speakers = {turn.speaker for e in data.exchanges for turn in e.history}
    assert "Sheldon" in speakers and len(speakers) > 1


@pytest.fixture
def tiny_models(tiny_chat, tiny_retriever):
    """The tiny models of tests/training/conftest.py, shared with the training tests."""
    return tiny_chat, tiny_retriever


def test_command_writes_table_csv_replies_and_plot(tiny_models, tmp_path):
    chat, retriever = tiny_models
    out = StringIO()
    call_command(
        "evaluate_generator",
        *("--transcripts", str(DEMO_TRANSCRIPTS), "--n", "4", "--grid", "0.2/0.1,default"),
        *("--generator", str(chat), "--retriever", str(retriever), "--max-new-tokens", "6", "--batch-size", "3"),
        *("--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")),
        stdout=out,
        stderr=StringIO(),
    )
    printed = out.getvalue()
    assert "style P(char)" in printed and "retrieval alone" in printed

    with open(tmp_path / "out" / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    # scripted, retrieval alone, then base x 2 settings x (without, with retrieval).
    assert [(r["system"], r["temperature"], r["top_p"], r["retrieval"]) for r in rows] == [
        ("scripted", "", "", "False"),
        ("retrieval alone", "", "", "True"),
        ("base", "0.2", "0.1", "False"),
        ("base", "0.2", "0.1", "True"),
        ("base", "0.4", "0.9", "False"),  # `default`: the product's chat sampling
        ("base", "0.4", "0.9", "True"),
    ]
    assert all(r["n"] == "4" for r in rows)
    scripted = rows[0]
    assert float(scripted["rouge_l"]) == 1.0 and float(scripted["answer_similarity"]) == pytest.approx(1.0, abs=1e-4)
    for row in rows:
        assert 0.0 <= float(row["style"]) <= 1.0
        assert 0.0 <= float(row["distinct_2"]) <= 1.0
    assert float(rows[2]["seconds_per_reply"]) > 0

    replies = [json.loads(line) for line in (tmp_path / "out" / "replies.jsonl").read_text().splitlines()]
    assert len(replies) == 6 * 4
    assert all(reply["reply"] for reply in replies)
    plot = tmp_path / "out" / "metrics.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "out" / "run.json").read_text())["exchanges"] == 4
    assert "| system |" in (tmp_path / "out" / "results.md").read_text()

    # A second run made apart on the same exchanges merges into one table;
    # the conditions both have (scripted) are kept once.
    call_command(
        "evaluate_generator",
        *("--transcripts", str(DEMO_TRANSCRIPTS), "--n", "4", "--grid", "0.5/0.5", "--no-retrieval"),
        *("--generator", str(chat), "--retriever", str(retriever), "--max-new-tokens", "4"),
        *("--output-dir", str(tmp_path / "second"), "--cache-dir", str(tmp_path / "cache")),
        stdout=StringIO(),
        stderr=StringIO(),
    )
    merged = tmp_path / "merged"
    call_command(
        "evaluate_generator",
        "--merge",
        str(tmp_path / "out"),
        str(tmp_path / "second"),
        "--output-dir",
        str(merged),
        stdout=StringIO(),
    )
    with open(merged / "results.csv") as handle:
        systems = [(r["system"], r["temperature"], r["retrieval"]) for r in csv.DictReader(handle)]
    # Each system's rows in the order of settings.
    assert systems == [
        ("scripted", "", "False"),
        ("retrieval alone", "", "True"),
        ("base", "0.2", "False"),
        ("base", "0.2", "True"),
        ("base", "0.4", "False"),
        ("base", "0.4", "True"),
        ("base", "0.5", "False"),
    ]
    assert len((merged / "replies.jsonl").read_text().splitlines()) == 7 * 4
    assert (merged / "metrics.png").is_file()

    # Runs on other exchanges are refused.
    run_file = tmp_path / "second" / "run.json"
    run_file.write_text(json.dumps({**json.loads(run_file.read_text()), "seed": 7}))
    with pytest.raises(CommandError, match="different exchanges"):
        call_command(
            "evaluate_generator", "--merge", str(tmp_path / "out"), str(tmp_path / "second"), stdout=StringIO()
        )


def test_command_refuses_bad_options(tiny_models, tmp_path):
    chat, retriever = tiny_models
    common = ("--transcripts", str(DEMO_TRANSCRIPTS), "--generator", str(chat), "--retriever", str(retriever))
    with pytest.raises(CommandError, match="TEMPERATURE/TOP_P"):
        call_command("evaluate_generator", *common, "--grid", "warm", "--cache-dir", str(tmp_path), stdout=StringIO())
    with pytest.raises(CommandError, match="at least 1"):
        call_command("evaluate_generator", *common, "--n", "0", stdout=StringIO())
    with pytest.raises(CommandError, match="not found"):
        call_command("evaluate_generator", "--transcripts", str(tmp_path / "missing.csv"), stdout=StringIO())
    with pytest.raises(CommandError, match="could not be loaded"):
        call_command(
            "evaluate_generator",
            *common[:2],
            "--generator",
            str(tmp_path / "no-model"),
            "--retriever",
            str(retriever),
            "--cache-dir",
            str(tmp_path),
            "--no-retrieval",
            stdout=StringIO(),
        )
