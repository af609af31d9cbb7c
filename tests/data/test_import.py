"""`manage.py import_transcripts` against the real database."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from data.models import Episode, Exchange, Line

from .test_pipeline import EP1, SMALL_TRANSCRIPT, write_transcript

pytestmark = pytest.mark.django_db


def run_import(*args):
    out = StringIO()
    call_command("import_transcripts", *map(str, args), stdout=out, stderr=StringIO())
    return out.getvalue()


def snapshot():
    return (
        list(Episode.objects.values_list("id", "name", "content_hash")),
        list(Line.objects.values_list("id", "episode_id", "scene", "position", "speaker", "text")),
        list(Exchange.objects.values_list("id", "character", "question", "answer", "context")),
    )


def test_import_stores_lines_and_exchanges_and_summarises(tmp_path):
    path = write_transcript(tmp_path / "small.csv", SMALL_TRANSCRIPT)
    output = run_import(path)
    assert "2 episodes, 15 lines" in output
    assert "exchanges of Sheldon: 4" in output
    assert Episode.objects.get(name=EP1).season == 1
    exchange = Exchange.objects.get(answer="Fine, thank you.")
    assert exchange.question == "How are you?"
    assert exchange.context == ["Hello.", "Greetings."]
    assert exchange.answer_line.speaker == "Sheldon"
    assert exchange.episode.name == EP1 and exchange.scene == 1


def test_import_twice_changes_nothing(tmp_path):
    path = write_transcript(tmp_path / "small.csv", SMALL_TRANSCRIPT)
    run_import(path)
    before = snapshot()
    output = run_import(path)
    assert "0 episodes written" in output
    assert snapshot() == before


def test_changed_episode_is_replaced_and_others_kept(tmp_path):
    path = write_transcript(tmp_path / "small.csv", SMALL_TRANSCRIPT)
    run_import(path)
    untouched = list(Line.objects.exclude(episode__name=EP1).values_list("id", flat=True))
    edited = [row if row[1] != "Greetings." else (row[0], "Salutations.", row[2]) for row in SMALL_TRANSCRIPT]
    output = run_import(write_transcript(tmp_path / "edited.csv", edited))
    assert "1 episodes written" in output
    assert Exchange.objects.filter(answer="Salutations.").count() == 1
    assert not Exchange.objects.filter(answer="Greetings.").exists()
    assert list(Line.objects.exclude(episode__name=EP1).values_list("id", flat=True)) == untouched
    assert Exchange.objects.filter(character="Sheldon").count() == 4


def test_second_character_adds_its_exchanges(tmp_path):
    path = write_transcript(tmp_path / "small.csv", SMALL_TRANSCRIPT)
    run_import(path)
    output = run_import(path, "--character", "Sheldon", "--character", "Penny")
    assert "exchanges of Penny: 3" in output and "exchanges of Sheldon: 4" in output
    assert Line.objects.count() == 15


@pytest.mark.parametrize(
    "make_file, message",
    [
        (lambda tmp: tmp / "missing.csv", "not found"),
        (lambda tmp: write_transcript(tmp / "cols.csv", [("a", "b")], header=("title", "text")), "lacks the column"),
        (lambda tmp: write_transcript(tmp / "empty.csv", []), "has no dialogue lines"),
        (lambda tmp: write_transcript(tmp / "nosheldon.csv", [(EP1, "Hi.", "Penny"), (EP1, "Hey.", "Leonard")]),
         "has no lines of Sheldon"),
    ],
)
def test_bad_files_give_a_clear_error(tmp_path, make_file, message):
    with pytest.raises(CommandError, match=message):
        run_import(make_file(tmp_path))
    assert not Episode.objects.exists()


@pytest.mark.slow
def test_real_seasons_import_is_idempotent(show_transcripts):
    output = run_import(show_transcripts)
    assert "178 episodes, 39484 lines" in output and "exchanges of Sheldon: 8681" in output
    counts = (Episode.objects.count(), Line.objects.count(), Exchange.objects.count())
    assert counts == (178, 39484, 8681)
    assert "0 episodes written" in run_import(show_transcripts)
    assert (Episode.objects.count(), Line.objects.count(), Exchange.objects.count()) == counts


def test_bootstrap_prepares_everything_make_run_needs_in_one_process(tmp_path, settings, tiny_retriever):
    """`make run` runs `bootstrap --migrate --collectstatic` once (each start of Django costs seconds):
    migrations, static files, transcripts, index and demo account, then nothing again when nothing changed."""
    from django.contrib.auth import get_user_model

    settings.TRANSCRIPTS = str(write_transcript(tmp_path / "small.csv", SMALL_TRANSCRIPT))
    settings.VAR_DIR = tmp_path
    settings.STATIC_ROOT = tmp_path / "static"
    settings.RETRIEVER_MODEL = str(tiny_retriever)
    settings.RETRIEVAL_INDEX_PATH = tmp_path / "index"
    out = StringIO()
    call_command("bootstrap", migrate=True, collectstatic=True, stdout=out, stderr=StringIO())
    assert "Demo login: username 'demo'" in out.getvalue()
    assert any((tmp_path / "static").rglob("*.js")), "the static files were collected"
    assert (tmp_path / "index").is_dir() and Exchange.objects.count() == 4
    assert get_user_model().objects.filter(username="demo").exists()
    before = snapshot()
    call_command("bootstrap", migrate=True, collectstatic=True, stdout=StringIO(), stderr=StringIO())
    assert snapshot() == before  # the second run changes nothing



def test_transcripts_imported_before_stay_when_their_file_is_not_found(tmp_path, settings, tiny_retriever, monkeypatch):
    """No demo corpus joins them: its notice would show while the replies come from the show."""
    from data.corpus import DEMO_TRANSCRIPTS, demo_corpus_in_use
    from data.management.commands import bootstrap

    settings.TRANSCRIPTS = str(write_transcript(tmp_path / "small.csv", SMALL_TRANSCRIPT))
    settings.VAR_DIR = tmp_path
    settings.RETRIEVER_MODEL = str(tiny_retriever)
    settings.RETRIEVAL_INDEX_PATH = tmp_path / "index"
    call_command("bootstrap", stdout=StringIO(), stderr=StringIO())
    before = snapshot()
    monkeypatch.setattr(bootstrap, "find_transcripts", lambda: (DEMO_TRANSCRIPTS, True))  # the file moved away
    out = StringIO()
    call_command("bootstrap", stdout=out, stderr=StringIO())
    assert "serving the ones imported before" in out.getvalue()
    assert snapshot() == before and not demo_corpus_in_use()


def test_an_over_long_episode_name_stores_nothing(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("episode_name,dialogue,person_scene\nep,Hi.,Penny\nep,Yo.,Sheldon\n" + "E" * 301 + ",Hi.,Sheldon\n")
    with pytest.raises(CommandError, match="line 4"):
        run_import(path)
    assert not Episode.objects.exists()


def test_an_edited_file_imported_again_for_fewer_characters_changes_nothing(tmp_path):
    """The episode's new content hash is saved: the next import of the same file writes nothing, and an import
    for Sheldon alone does not rewrite the episode (which would delete Penny's exchanges with its lines)."""
    run_import(write_transcript(tmp_path / "a.csv", SMALL_TRANSCRIPT), "--character", "Sheldon", "--character", "Penny")
    edited = [row if row[1] != "Greetings." else (row[0], "Salutations.", row[2]) for row in SMALL_TRANSCRIPT]
    path = write_transcript(tmp_path / "b.csv", edited)
    assert "1 episodes written" in run_import(path, "--character", "Sheldon", "--character", "Penny")
    lines = list(Line.objects.values_list("id", flat=True))
    penny = Exchange.objects.filter(character="Penny").count()
    assert "0 episodes written" in run_import(path, "--character", "Sheldon")
    assert list(Line.objects.values_list("id", flat=True)) == lines
    assert Exchange.objects.filter(character="Penny").count() == penny > 0


def bootstrap_settings(settings, tmp_path, tiny_retriever):
    settings.VAR_DIR = tmp_path
    settings.RETRIEVER_MODEL = str(tiny_retriever)
    settings.RETRIEVAL_INDEX_PATH = tmp_path / "index"


def test_the_shows_transcripts_replace_the_demo_corpus(tmp_path, settings, tiny_retriever, monkeypatch):
    from data.corpus import DEMO_TRANSCRIPTS, demo_corpus_in_use
    from data.management.commands import bootstrap

    bootstrap_settings(settings, tmp_path, tiny_retriever)
    monkeypatch.setattr(bootstrap, "find_transcripts", lambda: (DEMO_TRANSCRIPTS, True))
    call_command("bootstrap", stdout=StringIO(), stderr=StringIO())
    assert demo_corpus_in_use()
    real = write_transcript(tmp_path / "small.csv", SMALL_TRANSCRIPT)
    monkeypatch.setattr(bootstrap, "find_transcripts", lambda: (real, False))
    call_command("bootstrap", stdout=StringIO(), stderr=StringIO())
    assert not demo_corpus_in_use()  # no demo notice, no demo lines in the index
    assert Exchange.objects.count() == 4  # the small transcript's


def test_bootstrap_gives_the_demo_account_the_password_it_prints(tmp_path, settings, tiny_retriever, django_user_model):
    bootstrap_settings(settings, tmp_path, tiny_retriever)
    settings.TRANSCRIPTS = str(write_transcript(tmp_path / "small.csv", SMALL_TRANSCRIPT))
    (tmp_path / "demo-password").write_text("generated-one-xyz")
    django_user_model.objects.create_user("demo", password="bazinga-demo")  # the password older sources printed
    out = StringIO()
    call_command("bootstrap", stdout=out, stderr=StringIO())
    assert "'generated-one-xyz'" in out.getvalue()
    assert django_user_model.objects.get(username="demo").check_password("generated-one-xyz")
