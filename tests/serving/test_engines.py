"""Which engine serves a generator, and the OpenVINO engine's export: int8 weights, made once, replies."""
import pytest

from inference.backends import OpenVINOChatBackend, backend_for
from inference.backends.chat import CHAT_SAMPLING
from inference.backends.openvino import TYPICAL_CANDIDATE_LOGIT
from inference.cleanup import streamed_as
from inference.loading import Engine, engine_for, load_generator, openvino_export
from inference.profiles import Profile
from inference.replier import Replier
from inference.requests import FinishReason, RequestState, Sequence


def test_auto_serves_chat_models_with_openvino_and_seq2seq_with_torch(tiny_chat, tiny_t5, settings):
    settings.INFERENCE_ENGINE = "auto"
    assert engine_for(str(tiny_chat)) == Engine.OPENVINO
    assert engine_for(str(tiny_t5)) == Engine.TORCH


def test_openvino_is_refused_for_a_seq2seq_model_and_unknown_engines_are_refused(tiny_t5, settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.INFERENCE_ENGINE = "openvino"
    with pytest.raises(ImproperlyConfigured, match="chat models only"):
        engine_for(str(tiny_t5))
    settings.INFERENCE_ENGINE = "onnx"
    with pytest.raises(ImproperlyConfigured, match="auto, openvino or torch"):
        engine_for(str(tiny_t5))


def test_an_unknown_precision_is_refused(tiny_chat, settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.INFERENCE_ENGINE, settings.INFERENCE_PRECISION = "openvino", "int4"
    with pytest.raises(ImproperlyConfigured, match="f32, bf16, f16 or auto"):
        load_generator(str(tiny_chat), "")


def _greedy_log_probabilities(tiny_chat, settings, precision: str) -> list[float]:
    settings.INFERENCE_ENGINE, settings.INFERENCE_PRECISION = "openvino", precision
    backend = backend_for(load_generator(str(tiny_chat), ""), max_new_tokens=6)
    backend.eos_ids = set()
    backend.sampling = {**backend.sampling, "do_sample": False}
    rows = [Sequence() for _ in range(2)]
    backend.generate([backend.prompt([], message, None) for message in ("Hi.", "Tell me about trains.")], rows)
    return [row.log_probability for row in rows]


def test_the_engine_computes_in_float32_even_where_openvino_would_choose_bfloat16(tiny_chat, settings):
    """The replies were rated computed in float32; OpenVINO's own choice on a CPU with AMX is bfloat16."""
    import openvino

    own_choice = str(openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
    if "bf16" not in own_choice and "bfloat16" not in own_choice:
        pytest.skip(f"OpenVINO computes in {own_choice} on this CPU anyway: no bfloat16 to tell apart")
    float32 = _greedy_log_probabilities(tiny_chat, settings, "f32")
    assert _greedy_log_probabilities(tiny_chat, settings, "auto") != float32, "auto computes in bfloat16 here"
    assert _greedy_log_probabilities(tiny_chat, settings, "bf16") != float32
    assert _greedy_log_probabilities(tiny_chat, settings, "f32") == float32


def test_the_openvino_export_has_int8_weights_is_made_once_and_replies(tiny_chat, settings):
    import openvino

    settings.INFERENCE_ENGINE = "openvino"
    folder = openvino_export(str(tiny_chat))
    made = (folder / "openvino_model.xml").stat().st_mtime_ns
    assert openvino_export(str(tiny_chat)) == folder and (folder / "openvino_model.xml").stat().st_mtime_ns == made
    model = openvino.Core().read_model(folder / "openvino_model.xml")
    weight_types = {op.get_output_element_type(0).get_type_name() for op in model.get_ops() if op.get_type_name() == "Constant"}
    assert "i8" in weight_types or "u8" in weight_types, weight_types

    generator = load_generator(str(tiny_chat), "")
    backend = backend_for(generator, max_new_tokens=12)
    assert isinstance(backend, OpenVINOChatBackend)
    replier = Replier(Profile("test", "", str(tiny_chat), ""), backend)
    pieces = []
    reply = replier.reply([], "Hello there.", on_piece=pieces.append)
    assert not reply.fallback and reply.new_tokens > 0, "the engine generated nothing"
    assert reply.text and streamed_as("".join(pieces), reply.text)


def test_the_openvino_engine_takes_the_products_sampling_and_stops_each_row(tiny_chat, settings):
    settings.INFERENCE_ENGINE = "openvino"
    backend = backend_for(load_generator(str(tiny_chat), ""), max_new_tokens=8)
    backend.eos_ids = set()
    stop_now = Sequence()
    stop_now.finish(FinishReason.STOPPED)  # finished before its first step: never computed
    runs = [Sequence() for _ in range(2)]
    # The chat sampling (repetition penalty 1.2 as presence and frequency penalties), end to end.
    backend.generate([backend.prompt([], message, None) for message in ("Hi.", "Trains?", "Bazinga!")], [stop_now, *runs])
    assert stop_now.stopped and stop_now.token_ids == []
    assert [len(row.token_ids) for row in runs] == [8, 8]
    assert all(row.finish_reason is FinishReason.LENGTH for row in runs)
    assert all(row.log_probability < 0 for row in runs), "the sampled tokens' log-probabilities are kept"
    # The sampling controls reach the pipeline's config, min-p among them (off unless set).
    config = backend.generation_config()
    assert config.do_sample and config.min_p == 0.0
    assert (config.temperature, config.top_p, config.top_k, config.no_repeat_ngram_size) == pytest.approx(
        tuple(CHAT_SAMPLING[name] for name in ("temperature", "top_p", "top_k", "no_repeat_ngram_size"))
    )
    penalty = TYPICAL_CANDIDATE_LOGIT * (1 - 1 / CHAT_SAMPLING["repetition_penalty"])
    assert config.presence_penalty + config.frequency_penalty == pytest.approx(penalty) and penalty > 0
    # The values the blind rounds rated (docs/evaluation.md): a change here is a change of the replies.
    assert CHAT_SAMPLING == {
        "do_sample": True, "temperature": 0.4, "top_p": 0.9, "top_k": 50,
        "repetition_penalty": 1.2, "no_repeat_ngram_size": 3,
    }
    backend.sampling = {**backend.sampling, "min_p": 0.1, "top_k": 20}
    config = backend.generation_config()
    assert config.min_p == pytest.approx(0.1) and config.top_k == 20


def test_the_candidates_of_one_prompt_are_sampled_each_with_its_own_seed(tiny_chat, settings):
    """Sample-and-rank needs different candidates: rows of one prompt that drew the same would be copies."""
    settings.INFERENCE_ENGINE = "openvino"
    backend = backend_for(load_generator(str(tiny_chat), ""), max_new_tokens=8)
    backend.eos_ids = set()
    rows = [Sequence() for _ in range(4)]
    backend.generate([backend.prompt([], "Hi.", None)] * 4, rows)
    assert len({tuple(row.token_ids) for row in rows}) >= 2


def test_sequences_stopped_at_the_last_step_free_their_cache_blocks(tiny_chat, settings):
    """The pipeline frees a stopped request's blocks at its next step; the batch takes one more when it is done
    (else they leak: "BlockManager leaked sequence block tables" at exit)."""
    settings.INFERENCE_ENGINE = "openvino"
    backend = backend_for(load_generator(str(tiny_chat), ""), max_new_tokens=20)
    backend.eos_ids = set()
    sequences = [Sequence(), Sequence()]

    def stop_at_three_tokens(changed):
        for sequence in changed:
            if len(sequence.token_ids) >= 3:
                sequence.finish(FinishReason.STOPPED)

    backend.generate([backend.prompt([], "Hi.", None)] * 2, sequences, stop_at_three_tokens)
    assert [len(sequence.token_ids) for sequence in sequences] == [3, 3]
    assert not backend.model.has_non_finished_requests()


def test_a_request_asked_to_stop_before_its_first_step_is_never_computed(tiny_chat, settings):
    """Stops are asked of every running request before each step, not only of those that got a token."""
    settings.INFERENCE_ENGINE = "openvino"
    backend = backend_for(load_generator(str(tiny_chat), ""), max_new_tokens=8)
    replier = Replier(Profile("test", "", str(tiny_chat), ""), backend)
    stopped, going = replier.reply_many([RequestState([], "Stop.", should_stop=lambda: True), RequestState([], "Go.")])
    assert stopped.stopped and stopped.new_tokens == 0 and going.new_tokens > 0
    assert not backend.model.has_non_finished_requests()


def test_a_changed_adapter_gets_a_new_export(tiny_chat, tmp_path, settings):
    from inference.loading import _export_key

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"one")
    first = _export_key(str(tiny_chat), str(adapter))
    (adapter / "adapter_model.safetensors").write_bytes(b"longer")
    assert _export_key(str(tiny_chat), str(adapter)) != first


def _run_out(batch, max_steps=50):
    """Step the batch until it is empty; a batch that never empties fails instead of hanging the run."""
    for _ in range(max_steps):
        if not batch:
            return
        batch.step()
    assert not batch, f"the batch still holds {len(batch)} sequences after {max_steps} steps"


def _all_started(backend, prompts, sequences):
    """Add the sequences and step until each has a token; the pipeline's key-value cache usage then (%)."""
    batch = backend.open_batch()
    batch.add(prompts, sequences)
    for _ in range(len(sequences)):
        batch.step()
        if all(sequence.token_ids for sequence in sequences):
            break
    usage = backend.model.get_metrics().cache_usage
    _run_out(batch)
    return usage


def test_the_candidates_of_one_request_compute_its_prompt_once(tiny_chat, settings):
    """The first candidate computes the prompt; the others start a step later from its blocks in the prefix
    cache. Four requests of as long prompts each compute their own."""
    settings.INFERENCE_ENGINE = "openvino"
    backend = backend_for(load_generator(str(tiny_chat), ""), max_new_tokens=4, prefix_cache_tokens=8192)
    backend.eos_ids = set()
    prompts = [backend.prompt([], f"Tell me about trains, timetables and railways, part {n}. " * 4, None) for n in range(4)]

    request = RequestState([], "Trains?")
    candidates = [Sequence(request) for _ in range(4)]
    shared = _all_started(backend, [prompts[0]] * 4, candidates)
    apart = _all_started(backend, prompts, [Sequence(RequestState([], "Trains?")) for _ in range(4)])
    assert all(len(candidate.token_ids) == 4 for candidate in candidates)
    assert shared < apart / 2, (shared, apart)
    assert not backend.model.has_non_finished_requests()


def test_candidates_stopped_while_they_wait_for_the_prompt_are_never_started(tiny_chat, settings):
    settings.INFERENCE_ENGINE = "openvino"
    backend = backend_for(load_generator(str(tiny_chat), ""), max_new_tokens=4, prefix_cache_tokens=8192)
    backend.eos_ids = set()
    request = RequestState([], "Stop the others.")
    first, *others = [Sequence(request) for _ in range(3)]
    batch = backend.open_batch()
    batch.add([backend.prompt([], "Hi.", None)] * 3, [first, *others])
    batch.step()
    assert first.token_ids and not any(other.token_ids for other in others), "the others wait for the prompt"
    for other in others:
        other.finish(FinishReason.STOPPED)
    _run_out(batch)
    assert len(first.token_ids) == 4 and all(other.token_ids == [] for other in others)
    assert not backend.model.has_non_finished_requests()


def test_candidates_start_when_the_first_ends_on_its_first_token(tiny_chat, settings):
    """A first candidate that ends at once (an end token) leaves no token to wait for: the others start anyway."""
    settings.INFERENCE_ENGINE = "openvino"
    backend = backend_for(load_generator(str(tiny_chat), ""), max_new_tokens=4, prefix_cache_tokens=8192)
    backend.eos_ids = set(range(len(backend.tokenizer)))  # every token ends a reply
    request = RequestState([], "End at once.")
    candidates = [Sequence(request) for _ in range(3)]
    batch = backend.open_batch()
    batch.add([backend.prompt([], "Hi.", None)] * 3, candidates)
    _run_out(batch)
    assert all(c.finish_reason is FinishReason.END and c.token_ids == [] for c in candidates)
    assert not backend.model.has_non_finished_requests()


def test_a_ranked_request_stopped_before_its_first_step_computes_nothing(tiny_chat, settings):
    settings.INFERENCE_ENGINE = "openvino"
    backend = backend_for(load_generator(str(tiny_chat), ""), max_new_tokens=8, prefix_cache_tokens=8192)
    replier = Replier(Profile("test", "", str(tiny_chat), ""), backend, max_candidates=4)
    stopped, going = replier.reply_many([RequestState([], "Stop.", should_stop=lambda: True), RequestState([], "Go.")])
    assert stopped.stopped and stopped.new_tokens == 0
    assert going.parameters["candidates"] == 4 and len(going.candidates) == 4 and going.new_tokens > 0
    assert not backend.model.has_non_finished_requests()


@pytest.fixture(scope="module")
def tiny_adapter(tiny_chat, tmp_path_factory):
    """A LoRA adapter of the tiny chat model with random, non-zero weights: it changes what the model says."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_chat))
    config = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    folder = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, config).save_pretrained(folder)
    return str(folder)


def test_the_openvino_engine_and_its_scoring_model_carry_the_adapter(tiny_chat, tiny_adapter, settings):
    """On CPU the product serves its persona adapter through OpenVINO: the export must merge it, and the ranking's
    scoring model (a torch copy) must be the adapted model too."""
    import torch

    from inference.likelihood import scoring_model

    settings.INFERENCE_ENGINE = "openvino"

    def served(adapter):
        generator = load_generator(str(tiny_chat), adapter)
        backend = backend_for(generator, max_new_tokens=8)
        backend.eos_ids = set()
        rows = [Sequence() for _ in range(2)]
        torch.manual_seed(0)  # the rows' seeds: the same draws for both models
        backend.generate([backend.prompt([], "Hi.", None)] * 2, rows)
        ids = torch.tensor([backend.tokenizer("Hello there, Sheldon.").input_ids])
        with torch.inference_mode():
            logits = scoring_model(generator)(input_ids=ids).logits
        return [row.token_ids for row in rows], logits

    base_tokens, base_logits = served("")
    adapted_tokens, adapted_logits = served(tiny_adapter)
    assert adapted_tokens != base_tokens
    assert not torch.allclose(adapted_logits, base_logits, atol=1e-3)
