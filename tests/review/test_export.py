"""The export, by command and by admin action, round-trips into training/feedback.py."""
import csv
import io
import json

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import CommandError, call_command
from django.urls import reverse

from data.pipeline import Sample
from training.feedback import (
    FeedbackError,
    PreferencePair,
    csv_cell,
    preference_pairs,
    read_export,
    well_rated_samples,
)


def export(tmp_path, name, *options):
    output = tmp_path / name
    stdout = io.StringIO()
    call_command("export_transcripts", *options, "--output", str(output), stdout=stdout, verbosity=0)
    return output, stdout.getvalue()


def test_default_export_holds_only_consenting_users_and_says_so(transcripts, tmp_path):
    output, summary = export(tmp_path, "consented.jsonl")
    assert "Exported 2 conversations (7 messages) of only users who allow training use." in summary
    assert "Left out 1 conversations of users who did not allow it." in summary
    rows = read_export(output, include_unconsented=True)
    assert {row["conversation_title"] for row in rows} == {"numbers", "physics"}
    assert all(row["owner_allows_training"] for row in rows)


def test_all_export_includes_everyone_and_the_reader_still_leaves_them_out(transcripts, tmp_path):
    output, summary = export(tmp_path, "everything.jsonl", "--all")
    assert "Exported 3 conversations (11 messages) of ALL users" in summary
    assert {row["conversation_title"] for row in read_export(output, include_unconsented=True)} == {
        "numbers", "greeting", "physics"}
    assert {row["conversation_title"] for row in read_export(output)} == {"numbers", "physics"}


def test_rows_carry_ratings_labels_and_the_generation_record(transcripts, tmp_path):
    output, _ = export(tmp_path, "numbers.jsonl", "--user", "alice")
    rows = {row["message_id"]: row for row in read_export(output)}
    b1, b1b = rows[transcripts.b1.pk], rows[transcripts.b1b.pk]
    assert b1["reply_to_id"] == transcripts.u1.pk and b1["is_chosen"] is False
    assert (b1["retrieved_text"], b1["retrieved_score"], b1["retrieved_episode"]) == (
        "73 is the Chuck Norris of numbers.", 0.93, "Series 04 Episode 10")
    assert b1["parameters"] == {"temperature": 0.7, "top_p": 0.8}
    assert (b1["seconds"], b1["new_tokens"], b1["generator_model"]) == (0.5, 12, "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert [r["score"] for r in b1["ratings"]] == [5] and b1["mean_rating"] == 5.0
    assert [(label["label"], label["note"], label["author"]) for label in b1b["labels"]] == [
        ("off_character", "Sheldon always has one", "reviewer")]


def test_jsonl_and_csv_read_back_identically(transcripts, tmp_path):
    jsonl, _ = export(tmp_path, "all.jsonl", "--all")
    csv, _ = export(tmp_path, "all.csv", "--all")
    assert read_export(jsonl, include_unconsented=True) == read_export(csv, include_unconsented=True)


def test_csv_export_writes_no_spreadsheet_formulas(transcripts, tmp_path):
    from chat.models import Message

    formulas = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2", "@SUM(A1)", "'=quoted"]
    for text, message in zip(formulas, Message.objects.filter(role="user").order_by("id"), strict=False):
        message.text = text
        message.save(update_fields=["text"])
    output, _ = export(tmp_path, "all.csv", "--all")
    with output.open(newline="") as handle:
        cells = [row["text"] for row in csv.DictReader(handle)]
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells)
    assert '\'=HYPERLINK("http://evil.example","x")' in cells
    # The reader gives the texts back as they were.
    texts = {row["text"] for row in read_export(output, include_unconsented=True)}
    assert set(formulas) <= texts


# The columns of the first exports, as files written then have them.
FIRST_EXPORT = (
    "conversation_id conversation_title character owner_id owner_allows_training message_id role text status created "
    "reply_to_id is_chosen profile generator_model retriever_model parameters retrieved_text retrieved_score "
    "retrieved_episode seconds new_tokens worker error fallback mean_rating ratings labels"
).split()


@pytest.mark.parametrize("name", ["older.jsonl", "older.csv"])
def test_an_export_of_the_first_format_still_reads_with_the_newer_columns_null(transcripts, tmp_path, name):
    rows = read_export(export(tmp_path, "now.jsonl", "--all")[0], include_unconsented=True)
    older = tmp_path / name
    with older.open("w", newline="") as handle:
        if name.endswith(".csv"):
            writer = csv.DictWriter(handle, fieldnames=FIRST_EXPORT)
            writer.writeheader()
            writer.writerows({column: csv_cell(row[column]) for column in FIRST_EXPORT} for row in rows)
        else:
            handle.writelines(json.dumps({column: row[column] for column in FIRST_EXPORT}) + "\n" for row in rows)
    read_back = read_export(older, include_unconsented=True)
    newer = [column for column in rows[0] if column not in FIRST_EXPORT]
    assert newer and [row["message_id"] for row in read_back] == [row["message_id"] for row in rows]
    assert all(row[column] is None for row in read_back for column in newer)


@pytest.mark.parametrize("name", ["feedback.jsonl", "feedback.csv"])
def test_export_becomes_training_samples_and_preference_pairs(transcripts, tmp_path, name):
    output, _ = export(tmp_path, name)
    rows = read_export(output)
    # b1 (rated 5) and b2 (labelled great) are well rated; b1b is off-character and
    # b5 repetitive. b2's context is what alice saw: u1 and the shown b1b.
    seen_before_trains = ("What is your favourite number?", "I do not have a favourite.")
    source = f"feedback/conversation-{transcripts.numbers.pk}"
    assert set(well_rated_samples(rows)) == {
        Sample((), "What is your favourite number?", "73. It is the best number.", source),
        *(
            Sample(seen_before_trains[start:], "Do you like trains?", "Trains are the pinnacle of human engineering.", source)
            for start in range(3)
        ),
    }
    assert preference_pairs(rows) == [
        PreferencePair(
            context=(),
            question="What is your favourite number?",
            chosen="73. It is the best number.",
            rejected="I do not have a favourite.",
            source=f"conversation-{transcripts.numbers.pk}/message-{transcripts.u1.pk}",
        )
    ]


def test_the_exports_rated_pairs_preference_tune_the_generator(transcripts, tiny_chat, tmp_path):
    """Staff and user ratings in the app become DPO pairs: the better rated reply chosen."""
    output, _ = export(tmp_path, "feedback.jsonl")
    stdout = io.StringIO()
    call_command(
        "train_preference", model=str(tiny_chat), extra_export=str(output), pairs=0, validation_pairs=0,
        batch_size=1, output=str(tmp_path / "dpo"), threads=1, stdout=stdout,
    )
    assert "1 rated pairs from" in stdout.getvalue() and "1 training pairs (1 from the export)" in stdout.getvalue()
    assert json.loads((tmp_path / "dpo" / "metrics.json").read_text())["metrics"]["pairs"] == 1


def test_admin_action_asks_then_exports_the_selection(client, transcripts, tmp_path):
    client.force_login(transcripts.reviewer)
    changelist = reverse("admin:chat_conversation_changelist")
    everything = [transcripts.numbers.pk, transcripts.greeting.pk, transcripts.physics.pk]
    ask = client.post(changelist, {"action": "export_conversations", ACTION_CHECKBOX_NAME: everything})
    assert ask.status_code == 200
    assert "You selected <b>3</b> conversations" in ask.content.decode() and "<b>2</b> of them" in ask.content.decode()

    for scope, expected_titles, file_format in (("consented", {"numbers", "physics"}, "csv"),
                                                 ("all", {"numbers", "greeting", "physics"}, "jsonl")):
        response = client.post(changelist, {"action": "export_conversations", ACTION_CHECKBOX_NAME: everything,
                                             "export_format": file_format, "scope": scope})
        assert response.status_code == 200
        disposition = response["Content-Disposition"]
        assert disposition.startswith('attachment; filename="transcripts-') and disposition.endswith(f'.{file_format}"')
        assert ("ALL-for-review" in disposition) == (scope == "all")
        downloaded = tmp_path / f"download.{file_format}"
        downloaded.write_bytes(response.content)
        titles = {row["conversation_title"] for row in read_export(downloaded, include_unconsented=True)}
        assert titles == expected_titles


def test_admin_action_exports_everything_a_filter_selects(client, transcripts, tmp_path):
    client.force_login(transcripts.reviewer)
    url = reverse("admin:chat_conversation_changelist") + "?rating=2-"
    action = {"action": "export_conversations", "select_across": "1", "export_format": "jsonl", "scope": "all"}
    response = client.post(url, {**action, ACTION_CHECKBOX_NAME: [transcripts.numbers.pk]})
    downloaded = tmp_path / "filtered.jsonl"
    downloaded.write_bytes(response.content)
    titles = {row["conversation_title"] for row in read_export(downloaded, include_unconsented=True)}
    assert titles == {"numbers", "greeting"}


@pytest.mark.parametrize("options, message", [
    (["--output", "out.txt"], "name it .jsonl or .csv"),
    (["--output", "missing-folder/out.jsonl"], "does not exist"),
    (["--output", "out.jsonl", "--since", "2026-11-20", "--until", "2026-11-01"], "--since is after --until"),
    (["--output", "out.jsonl", "--since", "last week"], "YYYY-MM-DD"),
])
def test_command_rejects_bad_input_clearly(db, tmp_path, monkeypatch, options, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CommandError, match=message):
        call_command("export_transcripts", *options, verbosity=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, content, message", [
    ("missing.jsonl", None, "not found"),
    ("export.txt", "", "expected a .jsonl or .csv"),
    ("broken.jsonl", '{"conversation_id": 1\n', "line 1: not JSON"),
    ("partial.jsonl", '{"conversation_id": 1}\n', "lacks"),
    ("other.csv", "a,b\n1,2\n", "lacks the column"),
])
def test_reader_names_the_problem_with_a_bad_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(FeedbackError, match=message):
        read_export(path)
