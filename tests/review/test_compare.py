"""The staff "Compare replies" page: loading sheets and real turns, blind rating, the scoreboard, access, export."""

import json
import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.urls import reverse

from chat.models import Message
from review.comparison import blind_order, items_from_replies, load_sheet, reply_version
from review.models import ComparisonCandidate, ComparisonItem, ComparisonRating
from training.blind import RUBRIC, Item, score, write_sheet

from .conftest import SMOLLM, message, reply

SYSTEMS = ("scripted", "tuned-v2", "untuned-v1")


@pytest.fixture
def sheet(tmp_path):
    """Six items answered by three systems; on item 1 `tuned-v2` said the scripted line."""
    items = [
        Item(i, "Episode", 1, (("Leonard", f"Context {i}."),), ("Penny", f"Question {i}?"), f"True {i}.")
        for i in range(1, 7)
    ]
    replies = {
        "scripted": [f"True {i}." for i in range(1, 7)],
        "tuned-v2": ["True 1."] + [f"Bazinga {i}." for i in range(2, 7)],
        "untuned-v1": [f"Hmm {i}." for i in range(1, 7)],
    }
    write_sheet(tmp_path / "run1", items, replies, seed=5)
    return tmp_path / "run1"


@pytest.fixture
def raters(db):
    """Two staff raters who may rate and see the scoreboard."""
    codenames = ["add_comparisonrating", "view_comparisonrating"]
    permissions = Permission.objects.filter(codename__in=codenames)
    made = []
    for name in ("rater-a", "rater-b"):
        user = User.objects.create_user(name, is_staff=True)
        user.user_permissions.set(permissions)
        made.append(user)
    return made


def given_score(candidate, rater):
    """What the test raters give: by the first system's name, a little harsher for rater-b."""
    base = {"scripted": 5, "tuned-v2": 3, "untuned-v1": 1}.get(candidate.systems[0], 3)
    harsh = 1 if rater.username == "rater-b" and base > 1 else 0
    return {"sense": base - harsh, "character": base, "fit": base - harsh, "bad": candidate.systems[0] == "untuned-v1"}


def rate_on_page(client, rater, item):
    """Post this rater's ratings of `item` through the page, by the labels the page showed."""
    page = client.get(reverse("review:compare_item", args=[item.pk])).content.decode()
    form = {}
    for label, candidate in blind_order(item, rater):
        assert f"<b>{label}</b>" in page and candidate.text in page
        values = given_score(candidate, rater)
        form.update({f"{candidate.pk}-{scale}": str(values[scale]) for scale in ("sense", "character", "fit")})
        if values["bad"]:
            form[f"{candidate.pk}-bad"] = "on"
    return client.post(reverse("review:compare_item", args=[item.pk]), form)


@pytest.mark.django_db
def test_a_sheet_loads_once_with_its_systems(sheet):
    assert load_sheet(sheet) == (6, 0)
    assert load_sheet(sheet) == (0, 6)
    first = ComparisonItem.objects.get(set_name="run1", sheet_item=1)
    assert first.dialogue == [["Leonard", "Context 1."], ["Penny", "Question 1?"]]
    assert sorted(map(sorted, first.candidates.values_list("systems", flat=True))) == [
        ["scripted", "tuned-v2"],
        ["untuned-v1"],
    ]
    assert ComparisonCandidate.objects.count() == 2 + 5 * 3
    out = call_command("load_comparison", str(sheet), "--set", "again")
    assert out is None and ComparisonItem.objects.filter(set_name="again").count() == 6
    with pytest.raises(CommandError, match="No key.json"):
        call_command("load_comparison", str(sheet.parent))


@pytest.mark.django_db
def test_page_shows_one_item_blind_and_saves_ratings_then_the_next(client, sheet, raters):
    load_sheet(sheet)
    rater = raters[0]
    client.force_login(rater)
    response = client.get(reverse("review:compare"))
    assert response.status_code == 200
    page = response.content.decode()
    first = ComparisonItem.objects.order_by("id").first()
    assert RUBRIC.replace('"', "&quot;") in page
    assert "Leonard: Context 1." in page and "Penny: Question 1? &lt;- the last line" in page
    assert "6 items left for you" in page
    for system in SYSTEMS[1:]:
        assert system not in page  # no system named
    assert [label for label, _ in blind_order(first, rater)] == ["A", "B"]

    # A candidate left unrated: refused, nothing stored, the page says which.
    label, candidate = blind_order(first, rater)[1]
    incomplete = {f"{c.pk}-{s}": "3" for _, c in blind_order(first, rater) for s in ("sense", "character", "fit")}
    del incomplete[f"{candidate.pk}-fit"]
    response = client.post(reverse("review:compare_item", args=[first.pk]), incomplete)
    assert response.status_code == 400 and f"Rate {label} on fit" in response.content.decode()
    assert not ComparisonRating.objects.exists()
    for bad_value in ("0", "6", "x"):
        response = client.post(
            reverse("review:compare_item", args=[first.pk]), {**incomplete, f"{candidate.pk}-fit": bad_value}
        )
        assert response.status_code == 400
    assert not ComparisonRating.objects.exists()

    response = rate_on_page(client, rater, first)
    assert response.status_code == 302 and response["Location"] == reverse("review:compare")
    stored = {r.candidate.systems[0]: r for r in ComparisonRating.objects.filter(rater=rater)}
    assert (stored["scripted"].sense, stored["untuned-v1"].sense, stored["untuned-v1"].bad) == (5, 1, True)
    page = client.get(reverse("review:compare")).content.decode()
    assert "5 items left for you" in page and "Question 2?" in page
    # Rating again changes the rater's rating, never adds a second.
    rate_on_page(client, rater, first)
    assert ComparisonRating.objects.filter(rater=rater).count() == 2
    assert "Question 3?" in client.get(reverse("review:compare") + f"?after={first.pk + 1}").content.decode()
    for bad in ("\u00b2", "1" * 5000, "x", "-1"):  # a superscript two is a digit to str.isdigit, not to int
        assert client.get(reverse("review:compare"), {"after": bad}).status_code == 400, bad


@pytest.mark.django_db
def test_candidates_are_shuffled_per_rater(sheet, raters):
    load_sheet(sheet)
    orders = {
        rater.username: [[c.pk for _, c in blind_order(item, rater)] for item in ComparisonItem.objects.all()]
        for rater in raters
    }
    assert orders["rater-a"] != orders["rater-b"]
    assert orders["rater-a"] == [[c.pk for _, c in blind_order(i, raters[0])] for i in ComparisonItem.objects.all()]
    assert len({tuple(order) for order in orders["rater-a"][1:]}) > 1  # not one fixed order for every item


@pytest.mark.django_db
def test_scoreboard_is_the_blind_score_of_the_same_ratings(client, sheet, raters, tmp_path):
    load_sheet(sheet)
    items = list(ComparisonItem.objects.prefetch_related("candidates"))
    files = []
    for rater in raters:
        client.force_login(rater)
        for item in items:
            assert rate_on_page(client, rater, item).status_code == 302
        # The same ratings as the rater's JSON lines, by the sheet's labels (loaded in label order).
        lines = []
        for item in items:
            labels = sorted(json.loads((sheet / "key.json").read_text())["items"][str(item.sheet_item)]["labels"])
            line = {"item": item.sheet_item}
            for label, candidate in zip(labels, item.candidates.order_by("id")):
                line[label] = given_score(candidate, rater)
            lines.append(json.dumps(line))
        files.append(tmp_path / f"{rater.username}.jsonl")
        files[-1].write_text("\n".join(lines))
    rows, _ = score(sheet, files)

    response = client.get(reverse("review:compare_scoreboard"))
    assert response.status_code == 200
    page = response.content.decode()
    for row in rows:
        cells = re.search(rf'<tr data-system="{row["system"]}">(.*?)</tr>', page, re.DOTALL).group(1)
        numbers = re.findall(r"<td>([\d.]+)", cells)
        assert numbers[:2] == [str(row["items"]), str(row["raters"])]
        assert numbers[2:7] == [f"{row[m]:.2f}" for m in ("sense", "character", "fit", "good", "flagged")]
        assert numbers[7] == f"{row['rater_gap']:.2f}"
    scripted = next(row for row in rows if row["system"] == "scripted")
    assert (scripted["sense"], scripted["good"], scripted["rater_gap"]) == (4.5, 1.0, 1.0)
    tuned = next(row for row in rows if row["system"] == "tuned-v2")
    assert tuned["sense"] == pytest.approx((4.5 + 5 * 2.5) / 6)  # item 1 was the scripted line
    assert "No ratings yet" in client.get(reverse("review:compare_scoreboard") + "?set=none").content.decode()


@pytest.mark.django_db
def test_a_real_turn_with_replies_of_two_versions_becomes_an_item(client, transcripts):
    numbers, u1 = transcripts.numbers, transcripts.u1
    other = reply(
        numbers, 5, u1, "Seventy-three, obviously.", "sheldon-v2.gguf", parameters={"temperature": 0.3}, is_chosen=False
    )
    client.force_login(transcripts.reviewer)
    url = reverse("admin:chat_message_changelist")
    response = client.post(url, {"action": "compare_replies", ACTION_CHECKBOX_NAME: [transcripts.b1.pk]}, follow=True)
    assert response.status_code == 200
    item = ComparisonItem.objects.get(turn=u1)
    assert item.set_name == "conversations" and item.dialogue == [["User", "What is your favourite number?"]]
    by_text = {c.text: c for c in item.candidates.all()}
    assert set(by_text) == {transcripts.b1.text, transcripts.b1b.text, other.text}
    assert by_text[other.text].systems == ["sheldon-v2.gguf T=0.3"] and by_text[other.text].message == other
    assert by_text[transcripts.b1.text].systems == [f"{SMOLLM} T=0.7"]
    assert "Rate them" in response.content.decode()

    # Again: nothing new. A turn whose replies come from one version: refused with the reason.
    client.post(url, {"action": "compare_replies", ACTION_CHECKBOX_NAME: [other.pk, transcripts.b2.pk]}, follow=True)
    assert ComparisonItem.objects.count() == 1
    response = client.post(url, {"action": "compare_replies", ACTION_CHECKBOX_NAME: [transcripts.b2.pk]}, follow=True)
    assert "do not come from two or more versions" in response.content.decode()

    # A later turn carries the conversation so far, oldest first, chosen replies only.
    later = message(numbers, 6, "user", "And your least favourite?")
    for minute, model in ((7, SMOLLM), (8, "sheldon-v2.gguf")):
        reply(numbers, minute, later, f"Answer of {model}.", model)
    items_made = client.post(url, {"action": "compare_replies", ACTION_CHECKBOX_NAME: [later.replies.first().pk]})
    assert items_made.status_code == 302
    assert ComparisonItem.objects.get(turn=later).dialogue[-3:] == [
        ["User", "Do you like trains?"],
        ["Sheldon", "Trains are the pinnacle of human engineering."],
        ["User", "And your least favourite?"],
    ]
    assert transcripts.b1.text not in json.dumps(ComparisonItem.objects.get(turn=later).dialogue)  # not chosen


@pytest.mark.sqlite
@pytest.mark.django_db
def test_a_turn_stored_as_the_chat_stores_it_is_in_its_dialogue_once(client, transcripts):
    """Times as the database writes them (on SQLite, another text format than Django's): the turn is not earlier
    than itself."""
    numbers = transcripts.numbers
    question = Message.objects.create(conversation=numbers, role=Message.Role.USER, text="And trains again?")
    for model in (SMOLLM, "sheldon-v2.gguf"):
        Message.objects.create(
            conversation=numbers, role=Message.Role.BOT, reply_to=question, text=f"Answer of {model}.",
            generator_model=model, parameters={"temperature": 0.7},
        )
    client.force_login(transcripts.reviewer)
    url = reverse("admin:chat_message_changelist")
    client.post(url, {"action": "compare_replies", ACTION_CHECKBOX_NAME: [question.replies.first().pk]})
    dialogue = ComparisonItem.objects.get(turn=question).dialogue
    assert dialogue[-2:] == [["Sheldon", "Trains are the pinnacle of human engineering."], ["User", "And trains again?"]]


def test_reply_version_prefers_a_recorded_version():
    record = Message(generator_model="/models/x.gguf", parameters={"temperature": 0.7, "version": "rank-n8"})
    assert reply_version(record) == "rank-n8"
    assert reply_version(Message(generator_model="/models/x.gguf", parameters={})) == "x.gguf"
    assert reply_version(Message(profile="offline", parameters={"temperature": 1})) == "offline T=1"


@pytest.mark.django_db
def test_only_staff_with_the_permissions_reach_the_pages(client, sheet, transcripts, staff_without_permissions):
    load_sheet(sheet)
    item = ComparisonItem.objects.first()
    urls = [
        reverse("review:compare"),
        reverse("review:compare_item", args=[item.pk]),
        reverse("review:compare_scoreboard"),
    ]
    for visitor in (None, transcripts.alice):
        client.logout()
        if visitor:
            client.force_login(visitor)
        for url in urls:
            response = client.get(url)
            assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login")), url
        assert client.post(urls[1], {}).status_code == 302
    client.force_login(staff_without_permissions)
    for url in urls:
        assert client.get(url).status_code == 403, url
    assert client.post(urls[1], {}).status_code == 403
    action = {"action": "compare_replies", ACTION_CHECKBOX_NAME: [transcripts.b1.pk]}
    client.post(reverse("admin:chat_message_changelist"), action)
    assert not ComparisonItem.objects.filter(turn__isnull=False).exists()
    assert not ComparisonRating.objects.exists()


@pytest.mark.django_db
def test_ratings_export_and_item_admin(client, sheet, raters, transcripts, tmp_path):
    load_sheet(sheet)
    item = ComparisonItem.objects.first()
    client.force_login(raters[0])
    rate_on_page(client, raters[0], item)
    call_command("export_comparisons", "--output", str(tmp_path / "ratings.jsonl"))
    rows = [json.loads(line) for line in (tmp_path / "ratings.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and {row["rater"] for row in rows} == {"rater-a"}
    scripted = next(row for row in rows if "scripted" in row["systems"])
    assert scripted["systems"] == ["scripted", "tuned-v2"] and scripted["sense"] == 5 and scripted["set"] == "run1"
    assert scripted["dialogue"][-1] == ["Penny", "Question 1?"] and scripted["sheet_item"] == 1
    with pytest.raises(CommandError, match="does not exist"):
        call_command("export_comparisons", "--output", str(tmp_path / "no" / "x.jsonl"))

    client.force_login(transcripts.reviewer)
    assert client.get(reverse("admin:review_comparisonitem_changelist")).status_code == 200
    assert "scripted" in client.get(reverse("admin:review_comparisonitem_change", args=[item.pk])).content.decode()
    response = client.post(
        reverse("admin:review_comparisonitem_changelist"),
        {"action": "export_comparison_ratings", ACTION_CHECKBOX_NAME: [item.pk]},
    )
    assert response.status_code == 200 and len(response.content.decode().splitlines()) == 2


@pytest.mark.django_db
def test_real_turns_export_only_with_consent_and_go_with_their_conversation(client, transcripts, tmp_path):
    """alice allows training use, bob does not: his turn stays out of the export unless --all."""
    client.force_login(transcripts.reviewer)
    turns = {}
    for name, conversation in (("alice", transcripts.numbers), ("bob", transcripts.greeting)):
        question = message(conversation, 20, "user", f"A question of {name}?")
        first = reply(conversation, 21, question, f"Old model answers {name}.", "old.gguf")
        reply(conversation, 22, question, f"New model answers {name}.", "new.gguf", is_chosen=False)
        client.post(
            reverse("admin:chat_message_changelist"), {"action": "compare_replies", ACTION_CHECKBOX_NAME: [first.pk]}
        )
        turns[name] = ComparisonItem.objects.get(turn=question)
        rate_on_page(client, transcripts.reviewer, turns[name])

    def exported(*options):
        call_command("export_comparisons", "--output", str(tmp_path / "out.jsonl"), *options)
        return {json.loads(line)["item_id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()}

    assert exported() == {turns["alice"].pk}
    assert exported("--all") == {turns["alice"].pk, turns["bob"].pk}
    response = client.post(
        reverse("admin:review_comparisonitem_changelist"),
        {"action": "export_comparison_ratings", ACTION_CHECKBOX_NAME: [turns["alice"].pk, turns["bob"].pk]},
    )
    assert {json.loads(line)["item_id"] for line in response.content.decode().splitlines()} == {turns["alice"].pk}

    transcripts.greeting.delete()  # the item holds bob's words: it goes too, with its ratings
    assert not ComparisonItem.objects.filter(pk=turns["bob"].pk).exists()
    assert ComparisonRating.objects.filter(candidate__item=turns["alice"]).count() == 2


def test_replies_of_one_version_make_no_item(transcripts):
    """Two replies of the same model and settings compare nothing: raters would score a system against itself."""
    question = message(transcripts.numbers, 30, "user", "Two answers, one model?")
    first = reply(transcripts.numbers, 31, question, "One answer.", SMOLLM)
    reply(transcripts.numbers, 32, question, "Another answer.", SMOLLM, is_chosen=False)
    outcome = items_from_replies([first])
    assert outcome.created == [] and not ComparisonItem.objects.filter(turn=question).exists()
    assert "two or more versions" in outcome.skipped[0][1]
