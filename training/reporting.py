"""What a training run leaves beside its model: a versioned folder, a loss curve and a model card."""

import json
import re
from datetime import UTC, datetime
from pathlib import Path


def next_version_folder(models_dir, name):
    """`models_dir/name-vN` for the first N not yet taken (v1, v2, ...)."""
    models_dir = Path(models_dir)
    pattern = re.compile(rf"^{re.escape(name)}-v(\d+)$")
    taken = [int(m.group(1)) for p in models_dir.glob(f"{name}-v*") if (m := pattern.match(p.name))]
    return models_dir / f"{name}-v{max(taken, default=0) + 1}"


def plot_loss_curve(log_history, path, title, ylabel="cross-entropy loss"):
    """Training loss per logged step and evaluation loss per evaluation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for key, label, style in (("loss", "training loss", "-"), ("eval_loss", "validation loss", "o-")):
        points = [(entry["step"], entry[key]) for entry in log_history if key in entry]
        if points:
            axes.plot(*zip(*points), style, label=label)
    axes.set_xlabel("step")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# Licences of the base models this project trains on; a run on any other
# base model says `unknown` until someone reads that model's card.
BASE_MODEL_LICENCES = {"smollm2": "apache-2.0", "google/flan-t5": "apache-2.0", "google-t5/t5": "apache-2.0"}


def base_model_licence(base_model_name: str) -> str:
    """The licence of a known base model (hub id, folder or GGUF file), else `unknown`."""
    name = (base_model_name or "").lower()
    return next((licence for key, licence in BASE_MODEL_LICENCES.items() if key in name), "unknown")


def card_metadata(base_model_name: str, method: str, data_source: str) -> str:
    """The card's YAML front matter (the Hugging Face model-card fields): base model, licence, data."""
    library = "peft" if method.startswith("causal") else "transformers"
    return (
        "---\n"
        f"base_model: {json.dumps(base_model_name or 'unknown')}\n"
        f"library_name: {library}\n"
        f"license: {base_model_licence(base_model_name)}\n"
        "language: [en]\n"
        "pipeline_tag: text-generation\n"
        f"tags: [{'lora, ' if library == 'peft' else ''}sheldon-chat]\n"
        f"training_data: {json.dumps(data_source)}\n"
        "---\n"
    )


def generator_setting(base_model_name, output_dir, seq2seq):
    """The settings that serve a trained generator: a chat model's adapter over its base, or a whole model."""
    if seq2seq:
        return f"GENERATOR_MODEL={output_dir}"
    return f"GENERATOR_MODEL={base_model_name} GENERATOR_ADAPTER={output_dir}"


def write_model_card(
    output_dir,
    data,
    config,
    metrics,
    base_model_name,
    method,
    examples,
    made_by="`training.generator.train_generator` (`python manage.py train_generator`)",
    example_heading="Validation replies (greedy decoding)",
    trained_on="",
):
    """README.md in the output folder: metadata, data, parameters, metrics, time, and how to use it.

    `trained_on`: the Data section's lines on what the run trained on (default: the fine-tuning samples)."""
    output_dir = Path(output_dir)
    trained_on = trained_on or (
        f"- {len(data.train_samples)} training samples (reference augmentation: one per context suffix),\n"
        f"  of which {data.extra_samples} from a chat export\n"
        f"- {len(data.validation_samples)} validation exchanges (full context)"
    )
    use = generator_setting(base_model_name, output_dir, seq2seq=not method.startswith("causal"))
    metric_rows = "\n".join(f"| {name} | {_format(value)} |" for name, value in metrics.items())
    parameter_rows = "\n".join(f"| {name} | {value} |" for name, value in vars(config).items() if name != "extra")
    parameter_rows += "".join(f"\n| {name} | {value} |" for name, value in config.extra.items())
    example_lines = "\n".join(
        f"- **{e['question']}**\n  - scripted: {e['answer']}\n  - model: {e['reply']}" for e in examples[:5]
    )
    card = (
        card_metadata(base_model_name, method, data.source)
        + f"""
# {output_dir.name}

{method} fine-tuning of `{base_model_name or "the generator"}` to answer as {data.character},
made {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by {made_by}.

Use it: `{use}`

## Data

- transcripts: `{data.source}`, character {data.character}
- split by episode (seed {data.seed}): {data.train_episodes} training episodes,
  {data.validation_episodes} validation episodes
{trained_on}

## Parameters

| parameter | value |
| --- | --- |
{parameter_rows}

## Metrics

| metric | value |
| --- | --- |
{metric_rows}

![loss curve](loss_curve.png)

## {example_heading}

{example_lines}
"""
    )
    (output_dir / "README.md").write_text(card)


def _format(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
