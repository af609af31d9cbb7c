"""Reply systems for blind sheets: specs over the product's settings, replies from tiny models."""
import pytest

from data.corpus import DEMO_TRANSCRIPTS
from data.pipeline import build_exchanges, episode_names, read_transcripts, split_episodes
from inference.profiles import retrieval_threshold
from inference.systems import SystemSpecError, build_system, parse_spec
from training.blind import Item


def test_a_spec_overrides_only_what_it_names(tiny_chat_settings):
    tiny_chat_settings.REPLY_CANDIDATES = 4
    spec = parse_spec("candidates=2, temperature=0.5, min_p=0.1, fluency=0.3, adapter=none, sentences=1")
    assert (spec.candidates, spec.sentences, spec.adapter) == (2, 1, "")
    assert spec.sampling == {"temperature": 0.5, "min_p": 0.1} and spec.weights == {"fluency": 0.3}
    assert spec.scripted == tiny_chat_settings.SCRIPTED_CANDIDATES
    assert spec.threshold == retrieval_threshold(spec.retriever)
    assert parse_spec("").candidates == 4
    assert parse_spec("").prompt_hit == 1 and parse_spec("prompt_hit=0").prompt_hit == 0


@pytest.mark.parametrize(
    "spec, message",
    [
        ("candidates", "not key=value"),
        ("colour=blue", "Unknown key 'colour'"),
        ("candidates=two", "not a int"),
        ("candidates=-1", "at least 0"),
        ("candidates=0", "needs a retriever"),  # the tiny settings turn retrieval off
    ],
)
def test_a_bad_spec_says_what_is_wrong(tiny_chat_settings, spec, message):
    with pytest.raises(SystemSpecError, match=message):
        parse_spec(spec)


def demo_items(count):
    lines = read_transcripts(DEMO_TRANSCRIPTS)
    _, validation = split_episodes(episode_names(lines), seed=42)
    exchanges = [e for e in build_exchanges(lines, "Sheldon") if e.episode in validation][:count]
    return [
        Item(n, e.episode, e.scene, tuple(("Leonard", text) for text in e.context), ("Penny", e.question), e.answer)
        for n, e in enumerate(exchanges)
    ]


def test_systems_answer_every_item_generated_ranked_or_scripted(tiny_chat_settings, tiny_retriever, tmp_path):
    tiny_chat_settings.VAR_DIR = tmp_path
    tiny_chat_settings.RETRIEVAL_THRESHOLD = -1.0  # random weights: every retrieved line passes
    items = demo_items(3)
    assert len(items) == 3
    ranked = build_system(f"candidates=2,scripted=2,retriever={tiny_retriever}", DEMO_TRANSCRIPTS)
    assert len(ranked.replies(items)) == 3
    scripted = build_system(f"candidates=0,retriever={tiny_retriever}", DEMO_TRANSCRIPTS).replies(items)
    lines = read_transcripts(DEMO_TRANSCRIPTS)
    train, validation = split_episodes(episode_names(lines), seed=42)
    train_answers = {e.answer for e in build_exchanges(lines, "Sheldon") if e.episode in train}
    assert all(text in train_answers for text in scripted)  # never a line of the validation episodes


def test_a_pmi_weight_ranks_every_candidate_by_its_pmi_with_the_dialogue(tiny_chat_settings, tiny_retriever, tmp_path):
    """`pmi=W`: each candidate's pmi part is W times its dialogue_pmi; the choice is the best total."""
    from inference.likelihood import dialogue_pmi
    from inference.replier import RequestState, Turn

    tiny_chat_settings.VAR_DIR = tmp_path
    tiny_chat_settings.RETRIEVAL_THRESHOLD = -1.0  # random weights: every retrieved line passes
    assert parse_spec("pmi=0.5").weights == {"pmi": 0.5}
    replier = build_system(f"candidates=2,scripted=2,pmi=0.5,retriever={tiny_retriever}", DEMO_TRANSCRIPTS).replier()
    history = [Turn("user", "Sheldon, I can't find my keys.")]
    [reply] = replier.reply_many([RequestState(history, "Where did you put them?")])
    texts = [candidate.text for candidate in reply.candidates]
    assert len(texts) == 4
    expected = dialogue_pmi(replier.backend, history, "Where did you put them?", texts)
    for candidate, pmi in zip(reply.candidates, expected, strict=True):
        # A candidate the hard filters leave out is not scored.
        assert candidate.scores["pmi"] == pytest.approx(0.0 if candidate.rejected else 0.5 * pmi, abs=1e-4)
    assert reply.chosen is max((c for c in reply.candidates if not c.rejected), key=lambda c: c.score)


def test_a_pmi_weight_needs_a_chat_generator(tiny_chat_settings, tiny_t5):
    with pytest.raises(ValueError, match="pmi weight needs a chat"):
        build_system(f"pmi=0.5,generator={tiny_t5}", DEMO_TRANSCRIPTS).replier()


def test_a_system_generates_with_its_specs_sampling_and_the_products_roles(tiny_chat_settings):
    """A sheet's system is the product with the spec's changes, dialogue roles included: Sheldon's lines are the
    bot's turns, everyone else's the user's."""
    system = build_system("temperature=0.9,top_k=5")
    sampling = system.replier().backend.sampling
    assert (sampling["temperature"], sampling["top_k"]) == (0.9, 5)
    assert sampling["top_p"] == build_system("").replier().backend.sampling["top_p"]  # the rest as served
    item = Item(1, "E", 1, (("Sheldon", "I am not crazy."), ("Leonard", "Sure.")), ("Penny", "Hi."), "Hello.")
    [request] = system._requests([item])
    assert [(turn.role, turn.text) for turn in request.history] == [("bot", "I am not crazy."), ("user", "Sure.")]
    assert request.message == "Hi."
