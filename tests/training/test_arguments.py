"""Hyper-parameters defined once: the commands' options are the config dataclasses' fields, defaults included."""

import argparse
from dataclasses import dataclass, fields

import pytest
from django.core.management import load_command_class

from training.arguments import add_config_options, config_from_options, option
from training.generator import LORA_LEARNING_RATE, SEQ2SEQ_LEARNING_RATE, TrainingConfig
from training.retriever import RetrieverConfig


def command_parser(name):
    return load_command_class("training", name).create_parser("manage.py", name)


@pytest.mark.parametrize(
    "command, config_class", [("train_generator", TrainingConfig), ("train_retriever", RetrieverConfig)]
)
def test_each_config_field_is_an_option_with_the_fields_default(command, config_class):
    parser = command_parser(command)
    defaults = vars(parser.parse_args([]))
    assert {field.name for field in fields(config_class) if "help" in field.metadata} <= defaults.keys()
    assert config_from_options(config_class, defaults) == config_class()
    changed = config_from_options(config_class, vars(parser.parse_args(["--epochs", "0.5", "--seed", "7"])))
    assert (changed.epochs, changed.seed) == (0.5, 7)


def test_zero_leaves_the_learning_rate_and_lora_scale_to_the_kind_of_model():
    assert TrainingConfig().for_model(seq2seq=True).learning_rate == SEQ2SEQ_LEARNING_RATE
    lora = TrainingConfig(lora_rank=4).for_model(seq2seq=False)
    assert (lora.learning_rate, lora.lora_alpha) == (LORA_LEARNING_RATE, 8)
    assert TrainingConfig(learning_rate=1e-3, lora_alpha=3).for_model(seq2seq=False).learning_rate == 1e-3


def test_options_are_typed_booleans_flip_and_values_override():
    @dataclass
    class Config:
        steps: int = option(3, "steps")
        rate: float = option(0.5, "rate")
        name: str = option("a", "name")
        fast: bool = option(False, "fast")
        note: str = "not an option"

    parser = argparse.ArgumentParser()
    add_config_options(parser, Config)
    parsed = vars(parser.parse_args(["--steps", "4", "--fast", "--rate", "1e-3"]))
    assert "note" not in parsed
    assert config_from_options(Config, parsed, name="b") == Config(steps=4, rate=1e-3, name="b", fast=True)
    with pytest.raises(SystemExit):
        parser.parse_args(["--steps", "four"])
