"""Client settings and `hubble config view|get|set|reset`, with upstream's keys and lookup order.

A setting comes from the command-line flag, else the ``HUBBLE_<KEY>`` environment variable, else
the config file (``--config``, ``HUBBLE_CONFIG``, or ``<user config dir>/hubble/config.yaml``), else
its default. ``view`` prints every setting as YAML (sorted keys); ``set``/``reset`` write only the
config file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from hubblepy.cli.connection_flags import GLOBAL_FLAGS
from hubblepy.cli.help import render_help
from hubblepy.cli.pflag import FlagSet, HelpRequested, UsageError, go_parse_bool
from hubblepy.cli.settings import KEYS, Settings, load_config_file

#: pflag's type names, which upstream's ``config set`` errors name.
_KIND_NAMES = {
    "bool": "bool",
    "duration": "duration",
    "uint": "uint16",
    "string_slice": "stringSlice",
    "string": "string",
}


class ConfigError(Exception):
    """A `hubble config` problem, printed as one line."""


def to_yaml(value: Any) -> str:
    """YAML text like Go's yaml.v2 for our value types (sorted mappings, "" for empty strings)."""
    if isinstance(value, dict):
        out = []
        for key in sorted(value):
            item = value[key]
            if isinstance(item, list) and item:
                out.append(f"{key}:\n" + "".join(f"- {_scalar(v)}\n" for v in item))
            else:
                out.append(f"{key}: {_scalar(item)}\n")
        return "".join(out)
    if isinstance(value, list):
        return "".join(f"- {_scalar(v)}\n" for v in value) if value else "[]\n"
    return _scalar(value) + "\n"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[]"
    text = str(value)
    if (
        text == ""
        or text.lower() in ("true", "false", "yes", "no", "on", "off", "null", "~")
        or text[0] in "-?:,[]{}#&*!|>'\"%@`"
        or ": " in text
        or text.strip() != text
    ):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _convert(key: str, text: str) -> Any:
    """``hubble config set`` conversion, as upstream's (spf13/cast for bool and duration)."""
    kind, _ = KEYS[key]
    try:
        if kind == "bool":
            return go_parse_bool(text)
        if kind == "duration":
            from hubblepy.cli.timeparse import parse_go_duration

            parse_go_duration(text if any(ch in "nsuµmh" for ch in text) else text + "ns")
            return text
        if kind == "uint":
            from hubblepy.gotext import go_parse_uint

            return go_parse_uint(text, 0, 16)
        if kind == "string_slice":
            import csv

            body = text.removeprefix("[").removesuffix("]")
            return next(csv.reader([body], strict=True)) if body else []
        return text
    except (ValueError, csv_error()) as exc:
        raise ConfigError(
            f"cannot assign value={text} for key={key}, expected type={_KIND_NAMES.get(kind, kind)}: {exc}"
        ) from None


def csv_error() -> type[Exception]:
    import csv

    return csv.Error


def _write_key(path: str, key: str, value: Any) -> None:
    if not path:
        raise ConfigError("config file undefined")
    data = load_config_file(path) or {}
    data[key] = value
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o750, exist_ok=True)
    with open(path, "w") as fh:
        fh.write(to_yaml(data))


def config_help() -> str:
    return render_help(
        "Show or change the CLI's settings (flags, HUBBLE_* variables, config file).",
        ["hubble config [command]"],
        GLOBAL_FLAGS,
        ("Global Flags",),
        commands=(
            ("get", "Print one setting, or all of them"),
            ("reset", "Put one setting, or all of them, back to its default in the config file"),
            ("set", "Write a setting to the config file"),
            ("view", "Print every setting as YAML"),
        ),
        footer='Use "hubble config [command] --help" for more information about a command.',
    )


def config_main(
    argv: list[str],
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`hubble config view|get [KEY]|set KEY [VALUE]|reset [KEY] [--config FILE]`."""
    env = os.environ if env is None else env
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        values, words = FlagSet(GLOBAL_FLAGS).parse(argv)
        if values.get("help") or not words or words[0] == "help":
            raise HelpRequested()
        action, words = words[0], words[1:]
        settings = Settings(env, config_flag=values.get("config"))
        if action == "view" or (action == "get" and not words):
            if action == "view" and words:
                raise ConfigError(f"invalid arguments: view takes no argument: got '{' '.join(words)}'")
            out.write(to_yaml({key: settings.typed(key) for key in KEYS}))
        elif action == "get":
            if len(words) != 1:
                raise ConfigError(
                    f"invalid arguments: get requires exactly 0 or 1 argument: got '{' '.join(words)}'"
                )
            key = words[0]
            if key not in KEYS:
                raise ConfigError(f"unknown key: {key}")
            out.write(to_yaml(settings.typed(key)))
        elif action == "set":
            if len(words) not in (1, 2):
                raise ConfigError(
                    f"invalid arguments: set requires exactly 1 or 2 argument(s): got '{' '.join(words)}'"
                )
            key = words[0]
            if key not in KEYS:
                raise ConfigError(f"unknown key: {key}")
            text = words[1] if len(words) == 2 and words[1] != "" else None
            value = _default_text(key) if text is None else _convert(key, text)
            _write_key(settings.path, key, value)
        elif action == "reset":
            if len(words) > 1:
                raise ConfigError(
                    f"invalid arguments: reset requires exactly 0 or 1 argument: got '{' '.join(words)}'"
                )
            keys = words or [k for k in KEYS if k != "config"]
            for key in keys:
                if key not in KEYS:
                    raise ConfigError(f"unknown key: {key}")
                _write_key(settings.path, key, _default_text(key))
        else:
            raise ConfigError(f'unknown command "{action}" for "hubble config"')
    except HelpRequested:
        out.write(config_help())
    except (ConfigError, UsageError) as exc:
        err.write(f"{exc}\n")
        return 1
    except OSError as exc:
        err.write(f"cannot write config file: {exc.strerror}\n")
        return 1
    return 0


def _default_text(key: str) -> Any:
    kind, default = KEYS[key]
    if kind == "duration":
        from hubblepy.cli.timeparse import format_go_duration

        return format_go_duration(default)
    return default


def main(argv: list[str]) -> int:
    """Raw-argv entry point of `hubble config` (the words after `config`)."""
    return config_main(argv)
