"""`hubble completion bash|zsh|fish`: shell completion, answered by `hubble __complete` as cobra does.

The scripts are small: on each TAB the shell runs ``hubble __complete WORD... PARTIAL`` and offers
the lines it prints. :func:`candidates` knows every command, sub-command and flag (from the same
tables that parse them) and the values of the flags that have a fixed set.
"""

from __future__ import annotations

import sys
from typing import Any

BASH = """# bash completion for hubble (hubblepy); load with: source <(hubble completion bash)
_hubble_complete() {
    local IFS=$'\\n'
    COMPREPLY=($(compgen -W "$(hubble __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)" -- "${COMP_WORDS[COMP_CWORD]}"))
}
complete -o default -F _hubble_complete hubble
"""

ZSH = """#compdef hubble
# zsh completion for hubble (hubblepy); load with: source <(hubble completion zsh)
_hubble() {
    local -a items
    items=("${(@f)$(hubble __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    compadd -a items
}
compdef _hubble hubble
"""

FISH = """# fish completion for hubble (hubblepy); load with: hubble completion fish | source
complete -c hubble -f -a '(hubble __complete (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)'
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}

_VALUES = {
    "output": ["compact", "dict", "json", "jsonpb", "table"],
    "color": ["auto", "always", "never"],
    "verdict": ["FORWARDED", "DROPPED", "AUDIT", "REDIRECTED", "ERROR", "TRACED", "TRANSLATED"],
    "protocol": ["icmp", "icmpv4", "icmpv6", "sctp", "tcp", "udp", "dns", "http", "kafka"],
    "type": ["capture", "drop", "l7", "policy-verdict", "trace", "trace-sock"],
    "ip-version": ["none", "v4", "v6"],
    "traffic-direction": ["ingress", "egress"],
    "http-method": ["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"],
}
_SUBCOMMANDS = {
    "observe": ["agent-events", "debug-events", "flows"],
    "list": ["namespaces", "nodes"],
    "watch": ["peers"],
    "config": ["get", "reset", "set", "view"],
    "completion": sorted(SCRIPTS),
    "evidence": ["export", "keygen", "verify"],
}


def _flag_specs(command: str, sub: str) -> list:
    from hubblepy.cli.connection_flags import GLOBAL_FLAGS

    if command == "observe" and sub in ("agent-events", "debug-events"):
        from hubblepy.cli.observe_events import event_flags

        return event_flags()
    if command == "observe":
        from hubblepy.cli.observe_args import OBSERVE_FLAGS

        return OBSERVE_FLAGS.specs
    if command == "status":
        from hubblepy.cli.status import STATUS_FLAGS

        return list(STATUS_FLAGS)
    if command == "list":
        from hubblepy.cli.list import LIST_FLAGS

        return list(LIST_FLAGS)
    if command == "watch":
        from hubblepy.cli.watch import WATCH_FLAGS

        return list(WATCH_FLAGS)
    if command == "ui":
        from hubblepy.ui.cli import _flags

        return _flags().specs
    return list(GLOBAL_FLAGS)


def _typer_words(words: list[str]) -> list[str]:
    """Sub-commands and options of a typer command (lab, policy) after ``words``."""
    import typer

    from hubblepy.cli.commands import build_app

    command = typer.main.get_command(build_app()).make_context("hubble", [], resilient_parsing=True)
    group: Any = command.command
    for word in words:
        if hasattr(group, "list_commands") and word in group.list_commands(command):
            group = group.get_command(command, word)
    if hasattr(group, "list_commands"):
        return list(group.list_commands(command))
    return [
        opt for p in group.params if p.param_type_name == "option" for opt in p.opts if opt.startswith("--")
    ]


def candidates(words: list[str]) -> list[str]:
    """What may come at the last position of ``words`` (the words after ``hubble``; the last is partial)."""
    from hubblepy.cli.commands import COMMANDS

    if len(words) <= 1:
        return sorted(COMMANDS)
    command, partial = words[0], words[-1]
    middle = words[1:-1]
    sub = middle[0] if middle and not middle[0].startswith("-") else ""
    if command in ("lab", "policy"):
        return _typer_words([command, *[w for w in middle if not w.startswith("-")]])
    if command not in COMMANDS:
        return []
    previous = middle[-1] if middle else ""
    if previous.startswith("-") and "=" not in previous:
        specs = {s.name: s for s in _flag_specs(command, sub)}
        name = previous.lstrip("-")
        by_short = {s.short: s for s in specs.values() if s.short}
        spec = specs.get(name) if previous.startswith("--") else by_short.get(name[-1:])
        if spec is not None and spec.kind != "bool" and not spec.no_opt_default:
            return list(_VALUES.get(spec.name, []))
    if partial.startswith("-"):
        return [f"--{s.name}" for s in _flag_specs(command, sub)]
    if not sub and command in _SUBCOMMANDS:
        return list(_SUBCOMMANDS[command])
    return []


def main(argv: list[str]) -> int:
    """``hubble completion SHELL`` prints the script; ``hubble completion __complete WORDS`` the candidates."""
    if argv[:1] == ["__complete"]:
        for item in candidates(argv[1:]):
            sys.stdout.write(item + "\n")
        return 0
    if len(argv) != 1 or argv[0] not in SCRIPTS:
        if argv and argv[0] in ("-h", "--help"):
            sys.stdout.write(completion_help())
            return 0
        sys.stderr.write('hubble completion needs one shell: "bash", "zsh" or "fish"\n')
        return 1
    sys.stdout.write(SCRIPTS[argv[0]])
    return 0


def completion_help() -> str:
    from hubblepy.cli.connection_flags import GLOBAL_FLAGS
    from hubblepy.cli.help import render_help

    return render_help(
        "Print the shell completion script of hubble for bash, zsh or fish.\n\n"
        "  bash:  source <(hubble completion bash)\n"
        "  zsh:   source <(hubble completion zsh)\n"
        "  fish:  hubble completion fish | source",
        ["hubble completion [bash|zsh|fish]"],
        GLOBAL_FLAGS,
        ("Global Flags",),
    )
