"""Config dataclasses whose fields are also command options, like transformers' HfArgumentParser.

A hyper-parameter is defined once: a field of a config dataclass, with its
default and its help (`option`). `add_config_options` turns each field into
`--field-name` of the field's type and default, `config_from_options` builds
the config back from the parsed options, so a default can never differ
between the library and the command. Plain Python with no Django, like the
training code that defines its configs with it.
"""

import argparse
import dataclasses
from typing import Any


def option(default: Any, help: str = "") -> Any:
    """A config field that is also a command option; `help` is the option's."""
    return dataclasses.field(default=default, metadata={"help": help})


def add_config_options(parser: argparse.ArgumentParser, config_class: type, exclude: tuple = ()) -> None:
    """One `--name` per `option` field of the dataclass (underscores become dashes), typed and defaulted like it."""
    for field in dataclasses.fields(config_class):
        if field.name in exclude or "help" not in field.metadata:
            continue
        if field.type not in (int, float, str, bool) or field.default is dataclasses.MISSING:
            raise TypeError(
                f"{config_class.__name__}.{field.name}: only int, float, str and bool fields with a default"
            )
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata['help']} (default {field.default})"
        if field.type is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
        else:
            parser.add_argument(flag, type=field.type, default=field.default, help=help_text)


def config_from_options(config_class: type, options: dict, **values: Any) -> Any:
    """The config of the parsed options: every `option` field, then `values` on top."""
    names = {field.name for field in dataclasses.fields(config_class) if "help" in field.metadata}
    return config_class(**{**{name: options[name] for name in names if name in options}, **values})
