"""The `hubble` command: a typer application, with `observe` parsed like upstream's pflag flags.

`hubble observe` has order-dependent flags (``--not`` applies to the next filter flag) and upstream's
exact error texts, so its words go straight to :mod:`hubblepy.cli.observe` without loading typer
(which also keeps the start-up of the hot command short); every other command is a typer command.
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
}

RAW_HELP = {
    "agent": "Run a node agent: the Observer gRPC server with a flow source (e.g. --replay FILE).",
    "status": "Show the health and flow counters of a Hubble server or relay.",
    "list": "List the nodes or namespaces a relay knows (`list nodes`, `list namespaces`).",
    "watch": "Watch peer changes (`watch peers`).",
    "config": "View or change the CLI configuration (`config view|get|set|reset`).",
    "evidence": "Audit evidence bundles: `evidence export|verify|keygen` (see docs/evidence.md).",
}

# Modules that add their commands to the typer app with ``register(app)``.
COMMAND_MODULES = ("hubblepy.cli.lab", "hubblepy.cli.policy", "hubblepy.ui.cli")


def build_app():  # noqa: ANN201 - typer is imported lazily
    """The typer application with every command registered."""
    import typer

    app = typer.Typer(
        name="hubble",
        help="Observe network flows with their policy verdicts (Hubble-compatible).",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.command(
        "observe",
        help="Observe flows from a file (--input-file) or a Hubble server / relay (see `observe --help`).",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )
    def observe(ctx: typer.Context) -> None:
        raise typer.Exit(run_raw("observe", list(ctx.args)))

    for name, help_text in RAW_HELP.items():
        _add_raw_command(app, name, help_text)

    @app.command()
    def version() -> None:
        """Print the version of this hubble CLI."""
        typer.echo(version_text())

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(app)
    return app


def _add_raw_command(app, name: str, help_text: str) -> None:  # noqa: ANN001 - typer.Typer
    import typer

    @app.command(
        name,
        help=help_text,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )
    def _raw(ctx: typer.Context) -> None:
        raise typer.Exit(run_raw(name, list(ctx.args)))


def run_raw(name: str, argv: list[str]) -> int:
    """Run a raw command's ``main(argv)``; ``observe flows ...`` is the same as ``observe ...``."""
    module = importlib.import_module(RAW_COMMANDS[name])
    if name == "observe" and argv[:1] == ["flows"]:
        argv = argv[1:]
    return module.main(argv)


def version_text() -> str:
    """What `hubble version` prints."""
    return f"hubble v{__version__} (hubblepy)"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in RAW_COMMANDS:
        sys.exit(run_raw(argv[0], argv[1:]))
    if argv == ["version"]:  # answered without loading typer (start-up time)
        sys.stdout.write(version_text() + "\n")
        sys.exit(0)
    build_app()(args=argv, prog_name="hubble")


if __name__ == "__main__":
    main()
