"""The `hubble` command: a typer application, with `observe` parsed like upstream's pflag flags.

`hubble observe` has order-dependent flags (``--not`` applies to the next filter flag) and upstream's
exact error texts, so its words go straight to :mod:`hubblepy.cli.observe`; every other command is a
regular typer command.
"""

from __future__ import annotations

import importlib
import sys

import typer

from hubblepy import __version__

app = typer.Typer(
    name="hubble",
    help="Observe network flows with their policy verdicts (Hubble-compatible).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Commands whose words are handed over unparsed to a module's ``main(argv) -> int``.
RAW_COMMANDS = {
    "observe": "hubblepy.cli.observe",
}


def _register_raw(name: str, help_text: str) -> None:
    @app.command(
        name,
        help=help_text,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )
    def _raw(ctx: typer.Context) -> None:  # pragma: no cover - main() dispatches before typer
        raise typer.Exit(_run_raw(name, list(ctx.args)))


_register_raw("observe", "Observe flows from a file (--input-file) or a Hubble server / relay.")


@app.command()
def version() -> None:
    """Print the version of this hubble CLI."""
    typer.echo(f"hubble v{__version__} (hubblepy)")


def _run_raw(name: str, argv: list[str]) -> int:
    module = importlib.import_module(RAW_COMMANDS[name])
    if name == "observe" and argv[:1] == ["flows"]:
        argv = argv[1:]
    return module.main(argv)


def _load_plugins() -> None:
    """Register the commands that live in their own modules (agent, status, list, lab, ...)."""
    for module_name in ("hubblepy.cli.commands",):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in RAW_COMMANDS and not _wants_help(argv):
        sys.exit(_run_raw(argv[0], argv[1:]))
    _load_plugins()
    app(args=argv, prog_name="hubble")


def _wants_help(argv: list[str]) -> bool:
    return any(word in ("-h", "--help") for word in argv[1:])


if __name__ == "__main__":
    main()
