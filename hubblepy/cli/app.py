"""The `hubble` command: which module runs each sub-command, root help, version and completion.

Commands that take upstream's flags (``observe``, ``status``, ``list``, ``watch``, ``config``...) get
their words unparsed and parse them with the pflag port; ``lab`` and ``policy`` are typer commands
whose help is printed in the same layout (:func:`hubblepy.cli.help.click_help`). ``hubble``,
``hubble -h``, ``hubble help [COMMAND]``, ``hubble --version`` and ``hubble completion SHELL`` are
answered here without loading typer.
"""

import importlib
import sys

from hubblepy import __version__

# Commands whose words are handed over unparsed to a module's ``main(argv) -> int``.
RAW_COMMANDS = {
    "observe": "hubblepy.cli.observe",
    "agent": "hubblepy.cli.agent",
    "status": "hubblepy.cli.status",
    "list": "hubblepy.cli.list",
    "watch": "hubblepy.cli.watch",
    "config": "hubblepy.cli.config",
    "evidence": "hubblepy.cli.evidence",
    "ui": "hubblepy.ui.cli",
}

#: Every command with its one-line description, for the root help and completion.
COMMANDS = {
    "agent": "Run a node agent: the Observer gRPC server with a flow source (e.g. --replay FILE)",
    "completion": "Print the completion script for bash, zsh or fish",
    "config": "Show or change the CLI's settings",
    "evidence": "Audit evidence bundles: export, verify, keygen",
    "help": "Help about any command",
    "lab": "Run a one-machine lab: pods, eBPF policy, agent and relay",
    "list": "List the nodes or namespaces a relay knows",
    "observe": "Observe flows and events of a Hubble server, a relay or a file",
    "policy": "Check, audit and suggest network policies",
    "status": "Show the health and flow counters of a Hubble server or relay",
    "ui": "Serve the live service map in the browser",
    "version": "Print the version of this hubble CLI",
    "watch": "Watch peer changes of a server",
}

# Modules that add their commands to the typer app with ``register(app)``.
COMMAND_MODULES = ("hubblepy.cli.lab", "hubblepy.cli.policy")

ROOT_DESCRIPTION = """hubble (hubblepy): observe network flows with their policy verdicts.

Hubble-compatible: the same gRPC API, the same `hubble observe` output as upstream hubble 1.19.4."""


def version_line() -> str:
    return f"hubble v{__version__} (hubblepy)\n"


def root_help() -> str:
    from hubblepy.cli.connection_flags import GLOBAL_FLAGS
    from hubblepy.cli.help import render_help

    return render_help(
        ROOT_DESCRIPTION,
        ["hubble [command]"],
        GLOBAL_FLAGS,
        ("Global Flags",),
        commands=sorted(COMMANDS.items()),
        footer='Use "hubble [command] --help" for more information about a command.',
    )


def build_app():  # noqa: ANN201 - typer is imported lazily
    """The typer application of the typer-based commands, with help in the CLI's one style."""
    import os

    os.environ.setdefault("TYPER_USE_RICH", "0")
    import typer

    from hubblepy.cli.help import click_help

    def format_help(self, ctx, formatter) -> None:  # noqa: ANN001 - click's signature
        formatter.write(click_help(self, ctx))

    from typer._click.core import Command  # typer vendors click

    Command.format_help = format_help  # type: ignore[method-assign]
    app = typer.Typer(
        name="hubble",
        help=ROOT_DESCRIPTION,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(app)
    return app


def run_raw(name: str, argv: list[str]) -> int:
    """Run a raw command's ``main(argv)``; ``observe flows ...`` is the same as ``observe ...``."""
    if name == "observe" and argv[:1] in (["agent-events"], ["debug-events"]):
        from hubblepy.cli import observe_events

        return observe_events.main(argv[0], argv[1:])
    module = importlib.import_module(RAW_COMMANDS[name])
    if name == "observe" and argv[:1] == ["flows"]:
        argv = argv[1:]
    return module.main(argv)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    argv = sys.argv[1:] if argv is None else argv
    first = argv[0] if argv else ""
    if first in RAW_COMMANDS:
        sys.exit(run_raw(first, argv[1:]))
    if first in ("", "-h", "--help") or (first == "help" and len(argv) == 1):
        sys.stdout.write(root_help())
        sys.exit(0)
    if first == "help":
        main([*argv[1:], "--help"])
        return
    if first in ("version", "--version", "-v"):
        if len(argv) > 1 and argv[1] in ("-h", "--help"):
            sys.stdout.write("Print the version of this hubble CLI.\n\nUsage:\n  hubble version\n")
        else:
            sys.stdout.write(version_line())
        sys.exit(0)
    if first == "__complete":
        from hubblepy.cli.completion import main as completion_main

        sys.exit(completion_main(["__complete", *argv[1:]]))
    if first == "completion":
        from hubblepy.cli.completion import main as completion_main

        sys.exit(completion_main(argv[1:]))
    if first.startswith("-"):
        from hubblepy.cli.connection_flags import GLOBAL_FLAGS
        from hubblepy.cli.pflag import FlagSet, UsageError

        try:
            FlagSet(GLOBAL_FLAGS).parse(argv[:1])
        except UsageError as exc:
            sys.stderr.write(f"{exc}\n")
            sys.exit(1)
    if first not in COMMANDS and not first.startswith("-"):
        sys.stderr.write(f'unknown command "{first}" for "hubble"\n')
        sys.exit(1)
    build_app()(args=argv, prog_name="hubble")


if __name__ == "__main__":
    main()
