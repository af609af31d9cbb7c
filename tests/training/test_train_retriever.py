"""train_retriever on a tiny bi-encoder: recall is printed before and after, and the model is saved."""

import json
import random
from dataclasses import replace
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from sentence_transformers import SentenceTransformer

from data.pipeline import ScriptExchange, read_transcripts
from inference.loading import read_retriever, save_lora
from inference.prompts import selector_query
from training.blind import split_items
from training.retriever import (
    Pair,
    RetrieverConfig,
    _negative_columns,
    add_lora,
    exchange_pairs,
    own_sample_wins,
    read_samples,
    recall_at_k,
    train_linear_head,
    train_retriever,
    with_negatives,
)


def topic_pairs():
    """Eight queries, each with its own answer on the same topic: a task training can learn."""
    topics = ["trains", "physics", "the couch", "comic books", "laundry", "Thursday", "bazinga", "the spot"]
    return [Pair(f"line number {n} about {topic}", f"answer on {topic}") for n, topic in enumerate(topics)]


def test_pairs_join_the_last_context_line_and_question_and_drop_repeated_answers():
    exchanges = [
        ScriptExchange("Sheldon", "Ep", 1, "Why?", "Because.", context=("Hello.", "Hi.")),
        ScriptExchange("Sheldon", "Ep", 1, "Really?", "Because."),
    ]
    assert exchange_pairs(exchanges) == [Pair("Hi. Why?", "Because.")]  # inference.prompts.selector_query


def test_hits_at_1_of_10_counts_queries_whose_answer_beats_nine_others(tiny_retriever):
    model = SentenceTransformer(str(tiny_retriever), device="cpu")
    topics = ["trains", "physics", "the couch", "comic books", "laundry", "Thursday", "bazinga", "the spot", "Leonard",
              "Penny", "Amy", "Raj"]
    own_words = [Pair(f"answer on {topic}", f"answer on {topic}") for topic in topics]
    assert recall_at_k(model, own_words)["hits@1/10"] == 1.0  # each query is its own answer
    shifted = [Pair(pair.query, own_words[(i + 1) % len(own_words)].answer) for i, pair in enumerate(own_words)]
    assert recall_at_k(model, shifted)["hits@1/10"] < 1.0  # the true answer is now another's


def test_training_pulls_queries_towards_their_answers(tiny_retriever):
    model = SentenceTransformer(str(tiny_retriever), device="cpu")
    pairs = topic_pairs()
    before = recall_at_k(model, pairs)
    log = train_retriever(model, pairs, RetrieverConfig(epochs=30, batch_size=8, learning_rate=1e-3, warmup_ratio=0.0))
    after = recall_at_k(model, pairs)
    assert log[-1]["loss"] < log[0]["loss"]
    assert after[1] > before[1] and after[5] == 1.0


def test_hard_negatives_teach_it_to_rank_his_line_above_the_generators_replies(tiny_retriever):
    # Each "generated reply" nearly repeats its query: in-batch negatives alone never push it away.
    pairs = [
        replace(pair, negatives=(pair.query.replace("line number", "number"),)) for pair in topic_pairs()
    ]
    config = RetrieverConfig(epochs=30, batch_size=8, learning_rate=1e-3, warmup_ratio=0.0)
    wins = {}
    for negatives_per_pair in (0, 1):
        model = SentenceTransformer(str(tiny_retriever), device="cpu")
        train_retriever(model, pairs, replace(config, negatives_per_pair=negatives_per_pair))
        wins[negatives_per_pair] = own_sample_wins(model, pairs)
    assert wins[1] == 1.0 and wins[1] > wins[0]


def test_a_samples_file_gives_each_pair_its_distinct_negatives_but_never_his_line(tmp_path):
    path = tmp_path / "samples.jsonl"
    rows = [
        {"split": "train", "query": "q1", "answer": "Bazinga.", "generated": ["No.", "no!", "Bazinga!", "...", "Yes."]},
        {"split": "validation", "query": "q2", "answer": "Hello.", "generated": ["Hi."]},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    pairs = with_negatives([Pair("q1", "Bazinga."), Pair("q2", "Hello."), Pair("q3", "Hm.")], read_samples(path))
    assert pairs == [Pair("q1", "Bazinga.", ("No.", "Yes.")), Pair("q2", "Hello.", ("Hi.",)), Pair("q3", "Hm.")]
    for bad, why in (
        ("{not json", "not a sample_replies row"),
        ('{"query": "q", "answer": "a"}', "not a sample_replies row"),
        ('{"query": "q", "answer": "a", "generated": "Hello there"}', "generated a list of texts"),
        ('{"query": "q", "answer": "a", "generated": [null, 3]}', "generated a list of texts"),
    ):
        path.write_text(json.dumps(rows[0]) + "\n" + bad + "\n")
        with pytest.raises(ValueError, match=f"line 2: .*{why}"):
            read_samples(path)


def test_own_sample_wins_compares_each_answer_with_its_own_replies_only(tiny_retriever):
    model = SentenceTransformer(str(tiny_retriever), device="cpu")
    # Each query is its own answer (cosine 1), so it wins unless one of its replies is the same text.
    pairs = [
        Pair("trains", "trains", ("physics",)),
        Pair("the couch", "the couch", ("laundry", "Thursday", "the couch")),
        Pair("comic books", "comic books", ("bazinga", "the spot")),
    ]
    assert own_sample_wins(model, pairs) == pytest.approx(2 / 3)
    assert own_sample_wins(model, [pairs[0], pairs[2], pairs[1]]) == pytest.approx(2 / 3)
    assert own_sample_wins(model, topic_pairs()) is None  # no pair has negatives: nothing to measure


def test_a_batchs_negatives_are_never_the_answer_of_a_pair_in_it():
    pool = ["No.", "Maybe."]
    batch = [Pair("q1", "Yes.", ("No!", "Sure.")), Pair("q2", "No."), Pair("q3", "Oh.", ("Oh, no.",))]
    for seed in range(5):
        columns = _negative_columns(batch, 2, pool, random.Random(seed))
        assert len(columns) == 2 and all(len(column) == 3 for column in columns)
        assert {columns[0][0], columns[1][0]} == {"Sure."}  # its own, without "No!" (the second pair's answer)
        assert {columns[0][1], columns[1][1]} == {"Maybe."}  # none of its own: another pair's, not "No."
        assert columns[0][2] == columns[1][2] == "Oh, no."  # one of its own, drawn twice


def test_a_linear_head_over_the_frozen_encoder_pulls_queries_towards_their_answers(tiny_retriever):
    model = SentenceTransformer(str(tiny_retriever), device="cpu")
    pairs = topic_pairs()
    frozen = [parameter.detach().clone() for parameter in model.parameters()]
    before = recall_at_k(model, pairs)
    log = train_linear_head(model, pairs, RetrieverConfig(method="head", epochs=200, batch_size=8, learning_rate=1e-2))
    after = recall_at_k(model, pairs)
    assert log[-1]["loss"] < log[0]["loss"] and after[1] > before[1]
    # The encoder itself did not move: only the appended head learned.
    assert all(old.equal(new) for old, new in zip(frozen, list(model.parameters())[: len(frozen)]))


def test_command_saves_a_head_that_loads_over_its_base(tiny_retriever, demo_transcripts, tmp_path):
    output = tmp_path / "selector"
    call_command("train_retriever", model=str(tiny_retriever), transcripts=str(demo_transcripts), output=str(output),
                 method="head", epochs=3, batch_size=4, threads=1, stdout=StringIO())
    assert {p.name for p in output.iterdir()} >= {"head.json", "head.safetensors", "metrics.json", "README.md"}
    assert not (output / "model.safetensors").exists()  # the base encoder is not copied
    trained = SentenceTransformer(str(tiny_retriever), device="cpu")
    loaded = read_retriever(str(output))
    assert len(loaded) == len(trained) + 2  # the base's modules, the head, a unit-length step
    vector = loaded.encode(["Bazinga!"])
    assert vector.shape == (1, 32) and abs(float((vector**2).sum()) - 1) < 1e-5


def test_lora_adapters_train_alone_and_load_merged_over_their_base(tiny_retriever, tmp_path):
    model = add_lora(SentenceTransformer(str(tiny_retriever), device="cpu"), rank=4)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    pairs = topic_pairs()
    before = recall_at_k(model, pairs)
    log = train_retriever(model, pairs, RetrieverConfig(method="lora", epochs=30, batch_size=8, learning_rate=1e-2,
                                                        warmup_ratio=0.0))
    assert log[-1]["loss"] < log[0]["loss"] and recall_at_k(model, pairs)[1] > before[1]
    # Only the adapters learned.
    assert all(parameter.equal(frozen[name]) for name, parameter in model.named_parameters() if name in frozen)

    save_lora(model, tmp_path / "selector", str(tiny_retriever))
    assert {p.name for p in (tmp_path / "selector").iterdir()} >= {"lora.json", "adapter_model.safetensors"}
    loaded = read_retriever(str(tmp_path / "selector"))  # the base, the adapters merged into it
    texts = ["Bazinga!", "answer on trains"]
    assert loaded.encode(texts) == pytest.approx(model.encode(texts), abs=1e-5)
    base = SentenceTransformer(str(tiny_retriever), device="cpu").encode(texts)
    assert abs(loaded.encode(texts) - base).max() > 1e-3


def test_adapters_saved_over_a_head_replace_it_and_the_digest_follows_the_base(tiny_retriever, tmp_path):
    """A folder trained again with another method serves the new model, and a new base makes a new digest."""
    import shutil

    from inference.loading import HEAD_CONFIG, weights_digest

    base = tmp_path / "base"
    shutil.copytree(tiny_retriever, base)
    folder = tmp_path / "selector"
    folder.mkdir()
    (folder / HEAD_CONFIG).write_text(json.dumps({"base": str(base), "dimension": 32}))  # an earlier head run
    model = add_lora(SentenceTransformer(str(base), device="cpu"), rank=2)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data.fill_(0.05)  # trained adapters: they change the vectors
    save_lora(model, folder, str(base))
    assert not (folder / HEAD_CONFIG).exists()
    assert read_retriever(str(folder)).encode(["Bazinga!"]) == pytest.approx(model.encode(["Bazinga!"]), abs=1e-5)

    before = weights_digest(str(folder))
    assert before == weights_digest(str(folder)) and before.startswith("sha256:")
    weights = base / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b"\0")  # the base changed under the adapters
    assert weights_digest(str(folder)) != before
    assert weights_digest("sentence-transformers/all-MiniLM-L6-v2") is None  # a hub id


def test_command_saves_lora_adapters_without_the_encoder(tiny_retriever, demo_transcripts, tmp_path):
    output = tmp_path / "selector"
    call_command("train_retriever", model=str(tiny_retriever), transcripts=str(demo_transcripts), output=str(output),
                 method="lora", lora_rank=2, epochs=1, batch_size=4, threads=1, stdout=StringIO())
    assert json.loads((output / "lora.json").read_text()) == {"base": str(tiny_retriever)}
    assert not (output / "model.safetensors").exists()
    assert read_retriever(str(output)).encode(["Bazinga!"]).shape == (1, 32)
    with pytest.raises(CommandError, match="lora-rank"):
        call_command("train_retriever", model=str(tiny_retriever), transcripts=str(demo_transcripts),
                     output=str(tmp_path / "bad"), method="lora", lora_rank=0, threads=1, stdout=StringIO())


def test_command_prints_recall_before_and_after_and_saves(tiny_retriever, demo_transcripts, tmp_path):
    output = tmp_path / "retriever"
    stdout = StringIO()
    call_command(
        "train_retriever",
        model=str(tiny_retriever),
        transcripts=str(demo_transcripts),
        output=str(output),
        batch_size=4,
        threads=1,
        stdout=stdout,
    )
    printed = stdout.getvalue()
    assert "(before fine-tuning)" in printed and "(after fine-tuning)" in printed and printed.count("recall@5") == 2
    metrics = json.loads((output / "metrics.json").read_text())
    assert set(metrics["recall_after"]) >= {"1", "5"} and metrics["steps"] >= 1
    assert (output / "loss_curve.png").is_file() and "recall" in (output / "README.md").read_text()
    saved = SentenceTransformer(str(output), device="cpu")
    assert saved.encode(["Bazinga!"]).shape == (1, 32)


def test_command_refuses_a_character_without_exchanges(tiny_retriever, demo_transcripts, tmp_path):
    with pytest.raises(CommandError, match="Too few exchanges of 'Nobody'"):
        call_command(
            "train_retriever",
            model=str(tiny_retriever),
            transcripts=str(demo_transcripts),
            character="Nobody",
            output=str(tmp_path / "r"),
        )


def test_command_can_train_on_every_speakers_exchanges_and_still_validates_on_the_characters(
    tiny_retriever, demo_transcripts, tmp_path
):
    metrics = {}
    for speakers in ("character", "all"):
        output = tmp_path / speakers
        call_command("train_retriever", model=str(tiny_retriever), transcripts=str(demo_transcripts),
                     output=str(output), train_speakers=speakers, method="head", epochs=1, batch_size=4, threads=1,
                     stdout=StringIO())
        metrics[speakers] = json.loads((output / "metrics.json").read_text())
    assert metrics["all"]["train_speakers"] == "all"
    assert metrics["all"]["train_pairs"] > metrics["character"]["train_pairs"] > 0
    assert metrics["all"]["validation_pairs"] == metrics["character"]["validation_pairs"]
    assert metrics["all"]["recall_before"] == metrics["character"]["recall_before"]  # the same validation pairs


def test_the_generators_samples_become_the_selectors_hard_negatives(
    tiny_retriever, tiny_chat, demo_transcripts, settings, tmp_path
):
    settings.GENERATOR_MODEL, settings.GENERATOR_ADAPTER, settings.RETRIEVER_MODEL = str(tiny_chat), "none", "none"
    samples = tmp_path / "samples.jsonl"
    call_command("sample_replies", output=str(samples), transcripts=str(demo_transcripts), system="candidates=2",
                 stdout=StringIO())
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    lines = read_transcripts(demo_transcripts)
    expected = [
        (split, selector_query([text for _, text in item.context], item.line[1]), item.answer)
        for split in ("train", "validation")
        for item in split_items(lines, split)
    ]
    assert [(row["split"], row["query"], row["answer"]) for row in rows] == expected
    assert all(len(row["generated"]) == 2 for row in rows)
    with pytest.raises(CommandError, match="exists"):
        call_command("sample_replies", output=str(samples), transcripts=str(demo_transcripts), stdout=StringIO())
    with pytest.raises(CommandError, match="candidates=0 generates nothing: give candidates=1"):
        call_command("sample_replies", output=str(tmp_path / "none.jsonl"), transcripts=str(demo_transcripts),
                     system="candidates=0,retriever=" + str(tiny_retriever), stdout=StringIO())
    settings.GENERATOR_MODEL = str(tmp_path / "no-such-model")
    with pytest.raises(CommandError, match="no-such-model"):
        call_command("sample_replies", output=str(tmp_path / "lost.jsonl"), transcripts=str(demo_transcripts),
                     stdout=StringIO())
    assert not list(tmp_path.glob("lost.jsonl*"))  # nothing that looks like a (partial) result is left
    settings.GENERATOR_MODEL = str(tiny_chat)

    output = tmp_path / "selector"
    stdout = StringIO()
    call_command("train_retriever", model=str(tiny_retriever), transcripts=str(demo_transcripts), output=str(output),
                 negatives=str(samples), method="lora", lora_rank=2, epochs=1, batch_size=4, threads=1, stdout=stdout)
    assert stdout.getvalue().count("beats own samples") == 2
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["train_pairs_with_negatives"] == metrics["train_pairs"]  # every exchange answers another speaker
    assert metrics["validation_pairs_with_negatives"] == metrics["validation_pairs"]
    with pytest.raises(CommandError, match="a head ignores them"):
        call_command("train_retriever", model=str(tiny_retriever), transcripts=str(demo_transcripts),
                     output=str(tmp_path / "bad"), negatives=str(samples), method="head", stdout=StringIO())
    with pytest.raises(CommandError, match="--negatives-per-pair -1"):
        call_command("train_retriever", model=str(tiny_retriever), transcripts=str(demo_transcripts),
                     output=str(tmp_path / "bad"), negatives=str(samples), negatives_per_pair=-1, stdout=StringIO())
    with pytest.raises(CommandError, match="--negatives: .*not a sample_replies row"):
        (tmp_path / "bad.jsonl").write_text("[]\n")
        call_command("train_retriever", model=str(tiny_retriever), transcripts=str(demo_transcripts),
                     output=str(tmp_path / "bad"), negatives=str(tmp_path / "bad.jsonl"), threads=1, stdout=StringIO())
