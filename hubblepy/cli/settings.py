"""One settings layer for every command: upstream's viper lookup with spf13/cast conversions.

A setting is the command-line flag when it was given, else the ``HUBBLE_<KEY>`` environment
variable (``-`` becomes ``_``; an empty variable counts as unset), else the config file's key, else
its default. The config file is ``--config``, else ``HUBBLE_CONFIG``, else
``<user config dir>/hubble/config.yaml``; a missing or unreadable file is ignored, as viper does.

Values are converted like viper's getters (spf13/cast), whatever their source:

* duration: a number is nanoseconds, a string without a unit gets ``ns`` (``HUBBLE_TIMEOUT=7`` is
  7 ns), a string with one is a Go duration; anything else is 0;
* bool: ``strconv.ParseBool`` of a string (anything else is false), non-zero for a number;
* string slice: a YAML list item by item, a string split on white space
  (``HUBBLE_TLS_CA_CERT_FILES=a,b`` is the one path ``a,b``), a flag's comma-separated list;
* unsigned integer: Go's base-0 integer syntax; anything else is 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Every key of ``hubble config``: its kind and default.
KEYS: dict[str, tuple[str, Any]] = {
    "basic-auth-password": ("string", ""),
    "basic-auth-username": ("string", ""),
    "config": ("string", ""),
    "debug": ("bool", False),
    "kube-context": ("string", ""),
    "kube-namespace": ("string", "kube-system"),
    "kubeconfig": ("string", ""),
    "port-forward": ("bool", False),
    "port-forward-port": ("uint", 4245),
    "request-timeout": ("duration", 12_000_000_000),
    "server": ("string", "localhost:4245"),
    "timeout": ("duration", 5_000_000_000),
    "tls": ("bool", False),
    "tls-allow-insecure": ("bool", False),
    "tls-ca-cert-files": ("string_slice", []),
    "tls-client-cert-file": ("string", ""),
    "tls-client-key-file": ("string", ""),
    "tls-server-name": ("string", ""),
}
#: Keys only `hubble observe` reads (its raw-filter flags), with the same lookup order.
OBSERVE_KEYS: dict[str, tuple[str, Any]] = {
    "allowlist": ("string_slice", []),
    "denylist": ("string_slice", []),
}


def default_config_path(env: Mapping[str, str]) -> str:
    """Upstream's default config file: ``<user config dir>/hubble/config.yaml`` (Go's os.UserConfigDir)."""
    xdg = env.get("XDG_CONFIG_HOME", "")
    home = env.get("HOME", "")
    if xdg and os.path.isabs(xdg):
        return str(Path(xdg) / "hubble" / "config.yaml")
    if not xdg and home:
        return str(Path(home) / ".config" / "hubble" / "config.yaml")
    if home:
        return str(Path(home) / ".hubble" / "config.yaml")
    return ""


def load_config_file(path: str) -> dict[str, Any] | None:
    """The config file's mapping with lower-case keys; None when it is missing or unreadable."""
    if not path:
        return None
    if Path(path).suffix.lower() not in ("", ".yaml", ".yml", ".json"):
        return None
    try:
        with open(path, "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    import yaml  # lazy: only when a config file exists (start-up time)

    try:
        loaded = yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        return None
    return {str(key).lower(): value for key, value in loaded.items()}


def config_path(env: Mapping[str, str], flag: str | None) -> str:
    """The config file a command uses: ``--config``, else ``HUBBLE_CONFIG``, else the default."""
    if flag is not None:
        return flag
    return env.get("HUBBLE_CONFIG", "") or default_config_path(env)


def cast_bool(value: Any) -> bool:
    """spf13/cast ``ToBool``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        from hubblepy.cli.pflag import go_parse_bool

        try:
            return go_parse_bool(value)
        except ValueError:
            return False
    return False


def cast_duration_ns(value: Any) -> int:
    """spf13/cast ``ToDuration`` in nanoseconds (0 when it cannot be read)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        from hubblepy.cli.timeparse import DurationError, parse_go_duration

        text = value if any(ch in "nsuµmh" for ch in value) else value + "ns"
        try:
            return parse_go_duration(text)
        except DurationError:
            return 0
    return 0


def cast_string_slice(value: Any) -> list[str]:
    """spf13/cast ``ToStringSlice``: a list item by item, a string split on white space."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [cast_string(item) for item in value]
    if isinstance(value, str):
        return value.split()
    return [cast_string(value)]


def cast_string(value: Any) -> str:
    """spf13/cast ``ToString``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cast_uint(value: Any) -> int:
    """spf13/cast ``ToUint`` (0 when it cannot be read or is negative)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float):
        return max(int(value), 0)
    if isinstance(value, str):
        from hubblepy.gotext import go_parse_uint

        try:
            return go_parse_uint(value.strip(), 0, 64)
        except ValueError:
            return 0
    return 0


class Settings:
    """The settings of one command run: changed flags, then environment, then config file, then default."""

    def __init__(
        self,
        env: Mapping[str, str],
        flags: Mapping[str, Any] | None = None,
        config_flag: str | None = None,
        keys: Mapping[str, tuple[str, Any]] | None = None,
    ) -> None:
        self.env = env
        self.flags = dict(flags or {})
        if config_flag is None and "config" in self.flags:
            config_flag = str(self.flags["config"])
        self.path = config_path(env, config_flag)
        loaded = load_config_file(self.path)
        self.file_used = self.path if loaded is not None else None
        self.file = loaded or {}
        self.keys = {**KEYS, **(keys or {})}

    def raw(self, key: str) -> Any:
        """The value as found (flag, variable, file or default), not converted."""
        if key == "config":
            return self.path
        if key in self.flags:
            return self.flags[key]
        value = self.env.get("HUBBLE_" + key.upper().replace("-", "_"), "")
        if value != "":
            return value
        if key in self.file:
            return self.file[key]
        return self.keys[key][1]

    def string(self, key: str) -> str:
        return cast_string(self.raw(key))

    def boolean(self, key: str) -> bool:
        return cast_bool(self.raw(key))

    def duration_ns(self, key: str) -> int:
        return cast_duration_ns(self.raw(key))

    def duration_s(self, key: str) -> float:
        return self.duration_ns(key) / 1e9

    def string_list(self, key: str) -> list[str]:
        return cast_string_slice(self.raw(key))

    def uint(self, key: str) -> int:
        return cast_uint(self.raw(key))

    def typed(self, key: str) -> Any:
        """The value converted by its kind (what ``hubble config get`` prints)."""
        kind = self.keys[key][0]
        if kind == "bool":
            return self.boolean(key)
        if kind == "duration":
            from hubblepy.cli.timeparse import format_go_duration

            return format_go_duration(self.duration_ns(key))
        if kind == "uint":
            return self.uint(key)
        if kind == "string_slice":
            return self.string_list(key)
        return self.string(key)
