"""Client settings and `hubble config view|get|set|reset`, with upstream's keys and lookup order.

A setting comes from the command-line flag, else the ``HUBBLE_<KEY>`` environment variable, else
the config file (``--config``, ``HUBBLE_CONFIG``, or ``<user config dir>/hubble/config.yaml``), else
its default. ``view`` prints every setting as YAML (sorted keys); ``set``/``reset`` write only the
config file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn, TextIO

import yaml

from relay.durations import parse_duration

# key -> (type, default); types: string, bool, duration, int, stringSlice
KEYS: dict[str, tuple[str, Any]] = {
    "basic-auth-password": ("string", ""),
    "basic-auth-username": ("string", ""),
    "config": ("string", ""),
    "debug": ("bool", False),
    "kube-context": ("string", ""),
    "kube-namespace": ("string", "kube-system"),
    "kubeconfig": ("string", ""),
    "port-forward": ("bool", False),
    "port-forward-port": ("int", 4245),
    "request-timeout": ("duration", "12s"),
    "server": ("string", "localhost:4245"),
    "timeout": ("duration", "5s"),
    "tls": ("bool", False),
    "tls-allow-insecure": ("bool", False),
    "tls-ca-cert-files": ("stringSlice", []),
    "tls-client-cert-file": ("string", ""),
    "tls-client-key-file": ("string", ""),
    "tls-server-name": ("string", ""),
}


class ConfigError(Exception):
    """A `hubble config` problem, printed as one line."""


def default_config_path(env: Mapping[str, str]) -> str:
    xdg = env.get("XDG_CONFIG_HOME", "")
    home = env.get("HOME", "")
    if xdg and os.path.isabs(xdg):
        return str(Path(xdg) / "hubble" / "config.yaml")
    if home:
        return str(Path(home) / ".config" / "hubble" / "config.yaml")
    return ""


def read_config_file(path: str) -> dict[str, Any]:
    """The config file's mapping ({} when missing or unreadable)."""
    if not path:
        return {}
    try:
        with open(path, "rb") as fh:
            loaded = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return {str(k).lower(): v for k, v in loaded.items()} if isinstance(loaded, dict) else {}


class Settings:
    """Lookup of client settings: flags, then environment, then config file, then defaults."""

    def __init__(
        self, env: Mapping[str, str], config_path: str | None, flags: Mapping[str, Any] | None = None
    ) -> None:
        self.env = env
        self.path = config_path or env.get("HUBBLE_CONFIG", "") or default_config_path(env)
        self.file = read_config_file(self.path)
        self.flags = dict(flags or {})

    def raw(self, key: str) -> Any:
        if key == "config":
            return self.path
        if key in self.flags:
            return self.flags[key]
        value = self.env.get("HUBBLE_" + key.upper().replace("-", "_"), "")
        if value != "":
            return value
        if key in self.file:
            return self.file[key]
        return KEYS[key][1]

    def get(self, key: str) -> str:
        value = self.raw(key)
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if isinstance(value, bool):
            return value
        return str(value).lower() in ("1", "t", "true")

    def duration_s(self, key: str) -> float:
        value = self.raw(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value / 1e9
        try:
            return parse_duration(str(value))
        except ValueError:
            raise ValueError(f'invalid duration "{value}" for {key}') from None

    def string_list(self, key: str) -> list[str]:
        value = self.raw(key)
        if isinstance(value, list):
            return [str(v) for v in value]
        return [p for p in str(value).replace(",", " ").split() if p]

    def typed(self, key: str) -> Any:
        kind = KEYS[key][0]
        if kind == "bool":
            return self.boolean(key)
        if kind == "duration":
            value = self.raw(key)
            return value if isinstance(value, str) else _go_duration_text(self.duration_s(key))
        if kind == "int":
            return int(self.raw(key))
        if kind == "stringSlice":
            return self.string_list(key)
        return self.get(key)


def _go_duration_text(seconds: float) -> str:
    whole = int(seconds)
    if whole == seconds:
        h, rem = divmod(whole, 3600)
        m, s = divmod(rem, 60)
        if h:
            return f"{h}h{m}m{s}s"
        if m:
            return f"{m}m{s}s"
        return f"{s}s"
    return f"{seconds * 1000:g}ms"


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
    kind, default = KEYS[key]
    try:
        if kind == "bool":
            lowered = text.lower()
            if lowered in ("1", "t", "true"):
                return True
            if lowered in ("0", "f", "false"):
                return False
            raise ValueError(text)
        if kind == "duration":
            parse_duration(text)
            return text
        if kind == "int":
            return int(text)
        if kind == "stringSlice":
            body = text.strip().removeprefix("[").removesuffix("]")
            return [p.strip() for p in body.split(",")] if body else []
        return text
    except ValueError:
        raise ConfigError(f"cannot assign value={text} for key={key}, expected type={kind}") from None


def _write_key(path: str, key: str, value: Any) -> None:
    if not path:
        raise ConfigError("config file undefined")
    data = read_config_file(path)
    data[key] = value
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o750, exist_ok=True)
    with open(path, "w") as fh:
        fh.write(to_yaml(data))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


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
    p = _Parser(prog="hubble config")
    p.add_argument("action", choices=["view", "get", "set", "reset"])
    p.add_argument("words", nargs="*")
    p.add_argument("--config", default=None)
    try:
        ns = p.parse_args(argv)
        settings = Settings(env, ns.config)
        action, words = ns.action, ns.words
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
            value = KEYS[key][1] if text is None else _convert(key, text)
            _write_key(settings.path, key, value)
        else:
            if len(words) > 1:
                raise ConfigError(
                    f"invalid arguments: reset requires exactly 0 or 1 argument: got '{' '.join(words)}'"
                )
            keys = words or [k for k in KEYS if k != "config"]
            for key in keys:
                if key not in KEYS:
                    raise ConfigError(f"unknown key: {key}")
                _write_key(settings.path, key, KEYS[key][1])
    except ConfigError as exc:
        err.write(f"{exc}\n")
        return 1
    except OSError as exc:
        err.write(f"cannot write config file: {exc.strerror}\n")
        return 1
    return 0


def main(argv: list[str]) -> int:
    """Raw-argv entry point of `hubble config` (the words after `config`)."""
    return config_main(argv)
