"""The chat and generate_batch commands, with tiny models and with the real offline models."""
import io
import json

import pytest
from django.core.management import CommandError, call_command

from inference.profiles import active_profile, retrieval_threshold
from inference.replier import FALLBACK_REPLY

BATCH_INPUT = [
    '{"id": 1, "context": ["Good morning.", "Morning."], "question": "Did you sleep well?"}',
    "this is not json",
    '{"id": "b", "context": [], "question": "Is it Tuesday?"}',
    '{"id": 4, "context": "not a list", "question": "Why?"}',
    '{"id": 5, "context": []}',
    "",
    '{"id": 6, "question": "Soup?"}',
]


def run_batch(tmp_path, lines, **options):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("\n".join(lines) + "\n")
    call_command("generate_batch", input=str(source), output=str(target), **options)
    return [json.loads(line) for line in target.read_text().splitlines()]


def run_chat(lines, stdout=None):
    stdout = stdout or io.StringIO()
    call_command("chat", stdin=io.StringIO("".join(f"{line}\n" for line in lines)), stdout=stdout)
    return stdout.getvalue()


def test_generate_batch_answers_in_order_and_reports_bad_lines(tmp_path, tiny_chat_settings):
    records = run_batch(tmp_path, BATCH_INPUT, batch_size=2)
    assert [record["id"] for record in records] == [1, None, "b", 4, 5, 6]
    for record in (records[0], records[2], records[5]):
        assert isinstance(record["reply"], str) and record["reply"]
        assert record["retrieved"] is None and record["seconds"] > 0
    assert "line 2 is not JSON" in records[1]["error"]
    assert "context must be a list" in records[3]["error"]
    assert "no question" in records[4]["error"]


def test_generate_batch_names_a_missing_model_or_input(tmp_path, settings):
    settings.GENERATOR_MODEL = str(tmp_path / "missing-model")
    settings.RETRIEVER_MODEL = "none"
    with pytest.raises(CommandError, match="missing-model.*GENERATOR_MODEL"):
        run_batch(tmp_path, BATCH_INPUT[:1])
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("generate_batch", input=str(tmp_path / "none.jsonl"), output=str(tmp_path / "out.jsonl"))


def test_chat_streams_replies_until_an_empty_line(tiny_chat_settings):
    output = run_chat(["Hello.", "How are you?", ""])
    assert output.count("Sheldon: ") == 3 and output.rstrip().endswith("Sheldon: Goodbye.")


def test_chat_names_a_missing_index(db, tmp_path, tiny_chat_settings, tiny_retriever, index_path):
    tiny_chat_settings.RETRIEVER_MODEL = str(tiny_retriever)
    with pytest.raises(CommandError, match="No retrieval index.*build_index"):
        run_chat(["Hello."])


@pytest.mark.slow
def test_the_real_offline_models_reply_through_both_commands(demo_exchanges, index_path, settings, tmp_path):
    """SmolLM2-135M-Instruct (GGUF, with the shipped adapter) and all-MiniLM-L6-v2, as `make run` uses them."""
    settings.SHELDON_PROFILE = "offline"
    settings.GENERATOR_MODEL = settings.RETRIEVER_MODEL = settings.GENERATOR_ADAPTER = ""
    settings.MAX_NEW_TOKENS = 32
    call_command("build_index", verbosity=0)

    exact = '{"id": 3, "context": [], "question": "Good morning. Did you sleep well?"}'
    records = run_batch(tmp_path, [BATCH_INPUT[0], BATCH_INPUT[2], exact])
    for record in records:
        reply = record["reply"]
        assert reply.strip() and not reply.lower().startswith("sheldon")
        assert reply != FALLBACK_REPLY
    # A reply that is a scripted line says which; the others have none.
    for record in records:
        if record["retrieved"] is not None:
            assert record["retrieved"]["text"] == record["reply"] and record["retrieved"]["episode"]
            assert record["retrieved"]["score"] >= retrieval_threshold(active_profile().retriever_model)

    output = run_chat(["Hey guys, what's up?", ""])
    first = output.split("Sheldon: ", 1)[1].split("\n", 1)[0]
    assert first.strip() and not first.lower().startswith("sheldon")
