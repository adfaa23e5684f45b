"""The table of `hubble` commands (which module runs each, their one-line help) and the typer app."""

import importlib
import re
import sys

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


def build_app():  # noqa: ANN201 - typer is imported lazily
    """The typer application of the typer-based commands, with help in the CLI's one style."""
    import os

    os.environ.setdefault("TYPER_USE_RICH", "0")
    import typer

    from hubblepy.cli.help import click_help

    def format_help(self, ctx, formatter) -> None:  # noqa: ANN001 - click's signature
        formatter.write(click_help(self, ctx))

    from typer._click.core import Command  # typer vendors click

    Command.format_help = format_help
    from typer._click.exceptions import UsageError

    def show_usage_error(self, file=None) -> None:  # noqa: ANN001 - click's signature
        sys.stderr.write(usage_error_line(self.format_message()) + "\n")

    UsageError.show = show_usage_error  # one line, as the pflag commands write them
    UsageError.exit_code = 1
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


def usage_error_line(message: str) -> str:
    """A typer/click usage error in the words of the pflag commands (``unknown flag: --x``)."""
    first = message.strip().splitlines()[0] if message.strip() else "invalid usage"
    first = re.sub(r"^No such option: (\S+)", r"unknown flag: \1", first)
    first = re.sub(r"^No such command '([^']*)'\.", r'unknown command "\1"', first)
    return first[:1].lower() + first[1:]
