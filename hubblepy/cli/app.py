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
from hubblepy.cli.commands import COMMANDS, RAW_COMMANDS, ROOT_DESCRIPTION, build_app


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


def run_raw(name: str, argv: list[str]) -> int:
    """Run a raw command's ``main(argv)``; ``observe flows ...`` is the same as ``observe ...``."""
    if name == "observe" and argv[:1] in (["agent-events"], ["debug-events"]):
        from hubblepy.cli import observe_events

        return observe_events.main(argv[0], argv[1:])
    module = importlib.import_module(RAW_COMMANDS[name])
    if name == "observe" and argv[:1] == ["flows"]:
        argv = argv[1:]
    return module.main(argv)


def _global_flags_last(argv: list[str]) -> list[str]:
    """``hubble -D --config F status ...`` is ``hubble status -D --config F ...`` (cobra's persistent flags)."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in ("-D", "--debug") or word.startswith(("--config=", "--debug=")):
            index += 1
        elif word == "--config":
            index += 2
        else:
            break
    if index == 0 or index >= len(argv) or argv[index] not in RAW_COMMANDS:
        return argv
    return [argv[index], *argv[:index], *argv[index + 1 :]]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    argv = sys.argv[1:] if argv is None else argv
    argv = _global_flags_last(argv)
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
