"""python manage.py train_preference: preference-tune the generator (DPO) after its fine-tuning.

His scripted line is preferred over a reply the generator samples itself, as
served; an app export adds the pairs its ratings order. A chat model trains its
adapter further (the active profile's, or --adapter), a T5 model trains whole.
The result goes to a new versioned folder under models/ unless --output names one.
"""

import json
import logging
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from data.pipeline import TranscriptError
from inference.backends import CHAT_SAMPLING, REFERENCE_SAMPLING
from inference.loading import ModelNotFoundError, apply_adapter, device, read_generator
from inference.profiles import DISABLED
from training.arguments import add_config_options, config_from_options
from training.command_options import add_shared_arguments, apply_shared_options, command_profile, export_rows
from training.feedback import preference_pairs
from training.generator import load_training_data
from training.management.commands.train_generator import output_name
from training.preference import PreferenceConfig, scripted_pairs, train_preference, trainable_policy
from training.reporting import generator_setting, next_version_folder


class Command(BaseCommand):
    help = (
        "Preference-tune the generator (DPO): the character's scripted lines preferred over its own samples, "
        "plus the pairs an app export's ratings order; saved with its metrics and card under models/."
    )

    def add_arguments(self, parser):
        add_shared_arguments(
            parser,
            model_help="hub id, local folder or .gguf (default: the active profile's generator)",
            output_help="output folder (default: models/<character>-<model>-dpo-vN)",
        )
        parser.add_argument(
            "--adapter",
            default="",
            help=f"the chat model's LoRA adapter to train further (default: the profile's; {DISABLED!r}: a new one)",
        )
        parser.add_argument("--extra-export", default="", help="a chat export (JSONL/CSV) whose rated pairs are added")
        add_config_options(parser, PreferenceConfig, exclude=("seed",))  # --seed is a shared option

    def handle(self, **options):
        logging.getLogger("training").setLevel(logging.INFO)
        transcripts = apply_shared_options(options)
        profile = command_profile()
        model_name = options["model"] or profile.generator_model
        adapter = options["adapter"] or (profile.generator_adapter if not options["model"] else "")
        adapter = "" if adapter.lower() == DISABLED else adapter
        config = config_from_options(
            PreferenceConfig, options, extra={"command": "python manage.py train_preference", "adapter": adapter}
        )
        try:
            data = load_training_data(transcripts, options["character"], seed=options["seed"])
        except (TranscriptError, OSError) as error:
            raise CommandError(str(error)) from error
        app_pairs = self.export_pairs(options["extra_export"])

        self.stdout.write(f"Loading {model_name}" + (f" + {adapter}" if adapter else ""))
        try:
            model, tokenizer, seq2seq = read_generator(model_name)
            if seq2seq and adapter:
                raise CommandError("A seq2seq model trains whole: --adapter is for chat models.")
            # The replies are sampled from a copy with the adapter merged: as fast as the base model.
            sampler = apply_adapter(read_generator(model_name)[0], adapter) if adapter else model
        except ModelNotFoundError as error:
            raise CommandError(str(error)) from error
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.to(device())
        sampler.to(device())

        sampling = REFERENCE_SAMPLING if seq2seq else CHAT_SAMPLING

        training_pairs, validation_pairs = (
            scripted_pairs(sampler, tokenizer, samples, data.own_lines, config, sampling, options["character"], desc)
            for samples, desc in (
                (data.train_samples[: config.pairs], "Sampling rejected replies"),
                (data.validation_samples[: config.validation_pairs], "Sampling held-out replies"),
            )
        )
        pairs = app_pairs + training_pairs
        del sampler
        self.stdout.write(
            f"{len(pairs)} training pairs ({len(app_pairs)} from the export), {len(validation_pairs)} held out"
        )
        if not pairs:
            raise CommandError("No preference pairs: raise --pairs or give an --extra-export with rated pairs.")

        output = (
            Path(options["output"])
            if options["output"]
            else next_version_folder(
                settings.BASE_DIR / "models", output_name(model_name) + ("-dpo" if seq2seq else "-lora-dpo")
            )
        )
        policy = trainable_policy(model, adapter, config)
        try:
            result = train_preference(
                policy,
                tokenizer,
                data,
                pairs,
                validation_pairs,
                output,
                config,
                base_model_name=model_name,
                adapter_name=adapter,
            )
        except FileExistsError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(json.dumps(result.metrics, indent=2))
        self.stdout.write(
            self.style.SUCCESS(
                f"Saved to {output} in {result.seconds:.0f} s of training. "
                f"Use it: {generator_setting(model_name, output, seq2seq)}"
            )
        )

    def export_pairs(self, path):
        if not path:
            return []
        pairs = preference_pairs(export_rows(path))
        self.stdout.write(f"{len(pairs)} rated pairs from {path}")
        return pairs
