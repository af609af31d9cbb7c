"""`manage.py evaluate_generator`: score the generator over sampling settings, with and without retrieval.

    python manage.py evaluate_generator --n 50 --adapter none --adapter models/sheldon-smollm2-lora

writes results.csv, results.md, replies.jsonl, metrics.png and run.json to
--output-dir and prints the table. See docs/evaluation.md.
"""

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from data.corpus import find_transcripts
from data.pipeline import TranscriptError
from inference.loading import ModelNotFoundError, load_generator, load_retriever
from inference.profiles import DISABLED, Profile, active_profile, retrieval_threshold
from training.evaluation import (
    REFERENCE_GRID,
    RETRIEVAL_ALONE,
    Condition,
    EvaluationData,
    Scorer,
    format_table,
    generated_replies,
    merge_runs,
    parse_samplings,
    product_sampling,
    reply_lines,
    retrieval_alone_replies,
    sampled_replier,
    scripted_replies,
    training_index,
    write_outputs,
)
from training.style import StyleScorer

DEFAULT_GRID = ",".join(f"{t:g}/{p:g}" for t, p in REFERENCE_GRID) + ",default"


class Command(BaseCommand):
    help = (
        "Evaluate reply generation on validation exchanges over (temperature, top_p) settings, "
        "with and without retrieval: style, relevance, similarity to the answer, ROUGE-L, distinct-n, "
        "length and speed. Writes a CSV, a Markdown table, the replies and PNG plots."
    )

    def add_arguments(self, parser):
        parser.add_argument("--n", type=int, default=50, help="validation exchanges to answer (default 50)")
        parser.add_argument(
            "--seed", type=int, default=42, help="the episode split, the sample and sampling (default 42)"
        )
        parser.add_argument("--transcripts", help="transcripts CSV (default: the one the product imports)")
        parser.add_argument("--generator", help="generator model (default: the profile's)")
        parser.add_argument(
            "--adapter",
            action="append",
            help="LoRA adapter folder, or `none` for the bare generator; repeat to compare "
            "(default: the profile's adapter)",
        )
        parser.add_argument(
            "--retriever", help="retriever model for retrieval and the embedding metrics (default: the profile's)"
        )
        parser.add_argument(
            "--grid",
            default=DEFAULT_GRID,
            help="TEMPERATURE/TOP_P points, comma-separated; `default` is the product's sampling "
            f"(default {DEFAULT_GRID})",
        )
        modes = parser.add_mutually_exclusive_group()
        modes.add_argument("--no-retrieval", action="store_true", help="only generation without retrieval")
        modes.add_argument(
            "--retrieval-only", action="store_true", help="only generation with retrieval (and retrieval alone)"
        )
        parser.add_argument("--batch-size", type=int, default=8, help="dialogues per generate call (default 8)")
        parser.add_argument("--max-new-tokens", type=int, default=settings.MAX_NEW_TOKENS)
        parser.add_argument("--output-dir", help="where the results go (default var/evaluation/<date-time>)")
        parser.add_argument(
            "--merge",
            nargs="+",
            metavar="RUN_DIR",
            help="instead of evaluating, combine the output folders of runs on the same exchanges into one",
        )
        parser.add_argument(
            "--cache-dir",
            help="where the style classifier and the training-episode index are kept (default var/evaluation/cache)",
        )

    def handle(self, **options):
        started = time.perf_counter()
        # One progress bar for the whole run, not one per embedding call.
        logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
        if options["n"] < 1 or options["batch_size"] < 1 or options["max_new_tokens"] < 1:
            raise CommandError("--n, --batch-size and --max-new-tokens must be at least 1.")
        character = settings.SHELDON_CHARACTER
        transcripts = Path(options["transcripts"]) if options["transcripts"] else find_transcripts()[0]
        output_dir = Path(
            options["output_dir"] or settings.VAR_DIR / "evaluation" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        )
        if options["merge"]:
            return self.merge(options["merge"], output_dir)
        modes = [False] if options["no_retrieval"] else [True] if options["retrieval_only"] else [False, True]

        try:
            profile = self.profile(options)
            data = EvaluationData.load(transcripts, character, seed=options["seed"], n=options["n"])
        except (ModelNotFoundError, TranscriptError, ValueError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"{len(data.exchanges)} exchanges of {character} from {data.validation_episodes} validation episodes "
            f"of {transcripts} (seed {data.seed})."
        )

        cache_dir = Path(options["cache_dir"] or settings.VAR_DIR / "evaluation" / "cache")
        self.stdout.write(f"Style classifier: {len(data.train_lines)} lines of the training episodes.")
        style_scorer = StyleScorer.cached(data.train_lines, character, cache_dir, seed=data.seed)
        try:
            embedder = load_retriever(profile.retriever_model)
            index = training_index(cache_dir, profile.retriever_model, data.train_exchanges) if True in modes else None
            adapters = (
                [self.adapter(a) for a in options["adapter"]] if options["adapter"] else [profile.generator_adapter]
            )
            generators = {adapter: load_generator(profile.generator_model, adapter) for adapter in adapters}
        except ModelNotFoundError as error:
            raise CommandError(str(error)) from error

        default = product_sampling(next(iter(generators.values())))
        try:
            samplings = parse_samplings(options["grid"], default)
        except ValueError as error:
            raise CommandError(str(error)) from error

        scorer = Scorer(data.exchanges, style_scorer, embedder)
        all_replies = [scripted_replies(data.exchanges)]
        conditions = [
            (adapter, Condition(self.system_name(adapter), sampling, retrieval))
            for adapter in adapters
            for sampling in samplings
            for retrieval in modes
        ]
        total = len(data.exchanges) * (len(conditions) + (index is not None))
        with tqdm(total=total, desc="Replies", unit="reply") as progress:
            if index is not None:
                all_replies.append(retrieval_alone_replies(index, data.exchanges, progress))
            for adapter, condition in conditions:
                progress.set_postfix_str(condition.label)
                replier = sampled_replier(
                    generators[adapter],
                    condition.sampling,
                    index if condition.retrieval else None,
                    Profile("evaluation", profile.retriever_model, profile.generator_model, adapter),
                    options["max_new_tokens"],
                    character,
                )
                all_replies.append(
                    generated_replies(
                        replier, condition, data.exchanges, character, data.seed, options["batch_size"], progress
                    )
                )

        rows = [scorer.score(replies) for replies in all_replies]
        run = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "transcripts": str(transcripts),
            "character": character,
            "seed": data.seed,
            "exchanges": len(data.exchanges),
            "generator": profile.generator_model,
            "adapters": adapters,
            "retriever": profile.retriever_model,
            "retrieval_threshold": retrieval_threshold(profile.retriever_model),
            "default_sampling": {"temperature": default.temperature, "top_p": default.top_p},
            "max_new_tokens": options["max_new_tokens"],
            "batch_size": options["batch_size"],
            "style_classifier_held_out_accuracy": style_scorer.held_out_accuracy,
            "seconds": round(time.perf_counter() - started, 1),
        }
        write_outputs(output_dir, rows, reply_lines(all_replies, data.exchanges), run, self.title(run))
        self.report(rows, run, output_dir)

    def report(self, rows, run, output_dir):
        self.stdout.write(format_table(rows))
        accuracy = run["style_classifier_held_out_accuracy"]
        self.stdout.write(
            f"Style classifier held-out accuracy: {accuracy or float('nan'):.3f}. "
            f"{RETRIEVAL_ALONE}: the best scripted line of the training episodes as the reply. "
            f"Retrieval gives the generator a scripted line only at a score of {run['retrieval_threshold']} or more."
        )
        self.stdout.write(self.style.SUCCESS(f"Results in {output_dir}."))

    def merge(self, folders, output_dir):
        """One table and plot from runs made apart on the same exchanges."""
        try:
            rows, replies, runs = merge_runs(folders)
        except (OSError, KeyError, ValueError) as error:
            raise CommandError(f"Cannot merge {', '.join(folders)}: {error}") from error
        run = {
            **runs[0],
            "merged": [str(folder) for folder in folders],
            "adapters": [adapter for each in runs for adapter in each["adapters"]],
            "seconds": sum(each["seconds"] for each in runs),
        }
        write_outputs(output_dir, rows, replies, run, self.title(run))
        self.report(rows, run, output_dir)

    @staticmethod
    def title(run):
        return f"{Path(run['generator']).name}: {run['exchanges']} validation exchanges (seed {run['seed']})"

    def profile(self, options):
        """The active profile with this command's model overrides."""
        profile = active_profile()
        retriever = options["retriever"] or profile.retriever_model
        if not retriever or retriever.lower() == DISABLED:
            raise ValueError(
                "The evaluation needs a retriever model for its embedding metrics: "
                "pass --retriever or set RETRIEVER_MODEL to a sentence-transformers model."
            )
        generator = options["generator"] or profile.generator_model
        # The profile's adapter belongs to the profile's generator.
        adapter = profile.generator_adapter if not options["generator"] else ""
        return Profile(profile.name, retriever, generator, adapter)

    @staticmethod
    def adapter(name):
        return "" if name.lower() == DISABLED else name

    @staticmethod
    def system_name(adapter):
        return Path(adapter).name if adapter else "base"
