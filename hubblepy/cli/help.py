"""Help text in one style for every command, laid out as cobra and pflag print it.

A command's help is its description, ``Usage:``, its sub-commands, then its flags by group
(``Selectors Flags:``, ``Server Flags:``...), each flag as ``-s, --name type   description
(default x)`` with the descriptions of a group aligned, then ``Global Flags:`` and ``Get help:``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hubblepy.cli.pflag import TYPE_NAMES, FlagSpec


def flag_column(spec: FlagSpec) -> str:
    """``  -o, --output string`` (the left column of one flag)."""
    head = f"  -{spec.short}, --{spec.name}" if spec.short else f"      --{spec.name}"
    type_name = TYPE_NAMES.get(spec.kind, "")
    if spec.kind == "bool":
        return head
    if spec.no_opt_default:
        return f"{head} {type_name}[={spec.no_opt_default}]"
    return f"{head} {type_name}" if type_name else head


def flag_lines(specs: Sequence[FlagSpec]) -> str:
    """pflag's FlagUsages: descriptions aligned three spaces after the widest left column."""
    columns = [flag_column(spec) for spec in specs]
    width = max((len(c) for c in columns), default=0)
    out = []
    for spec, column in zip(specs, columns, strict=True):
        text = spec.help
        if spec.default:
            text += f" (default {spec.default})"
        lines = text.split("\n")
        out.append(column.ljust(width) + "   " + lines[0])
        out.extend(" " * (width + 3) + line for line in lines[1:])
    return "".join(line.rstrip() + "\n" for line in out)


def render_help(
    description: str,
    usage: Iterable[str],
    specs: Sequence[FlagSpec],
    groups: Sequence[str],
    commands: Sequence[tuple[str, str]] = (),
    examples: str = "",
    footer: str = "",
) -> str:
    """The full help of one command."""
    parts = [description.rstrip("\n") + "\n", "\nUsage:\n" + "".join(f"  {u}\n" for u in usage)]
    if commands:
        width = max(len(name) for name, _ in commands)
        parts.append(
            "\nAvailable Commands:\n"
            + "".join(f"  {name.ljust(width)}  {short}\n" for name, short in commands)
        )
    if examples:
        parts.append("\nExamples:\n" + examples.rstrip("\n") + "\n")
    for group in groups:
        members = [s for s in specs if s.group == group]
        if members:
            title = group if group.endswith("Flags") else f"{group} Flags"
            parts.append(f"\n{title}:\n" + flag_lines(members))
    parts.append("\nGet help:\n  -h, --help   help for this command\n")
    if footer:
        parts.append("\n" + footer.rstrip("\n") + "\n")
    return "".join(parts)


def click_help(command, ctx) -> str:  # noqa: ANN001 - click.Command, click.Context
    """The help of a typer/click command in the same layout as :func:`render_help`."""
    description = (command.help or command.short_help or "").strip() or f"The {ctx.command_path} command."
    description = "\n".join(line.strip() for line in description.splitlines())
    pieces = " ".join(command.collect_usage_pieces(ctx)).replace("[OPTIONS]", "[flags]")
    commands: list[tuple[str, str]] = []
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                commands.append((name, (sub.short_help or sub.help or "").strip().split("\n")[0]))
        pieces = "[command]"
    rows: list[tuple[str, str]] = []
    for param in command.get_params(ctx):
        if param.param_type_name != "option" or param.hidden:
            continue
        longs = [o for o in param.opts if o.startswith("--")]
        shorts = [o for o in param.opts if not o.startswith("--")]
        name = longs[0] if longs else param.opts[0]
        if name == "--help":
            continue
        left = f"  {shorts[0]}, {name}" if shorts else f"      {name}"
        if not param.is_flag:
            annotation = getattr(getattr(param, "type_descriptor", None), "annotation", str)
            type_name = getattr(annotation, "__name__", "string")
            left += " " + {"str": "string", "Path": "string"}.get(type_name, type_name)
        text = (param.help or "").strip()
        if param.show_default and param.default not in (None, "", False, ()):
            default = param.default
            text += f' (default "{default}")' if isinstance(default, str) else f" (default {default})"
        rows.append((left, text))
    arguments = [p for p in command.get_params(ctx) if p.param_type_name == "argument"]
    parts = [description + "\n", f"\nUsage:\n  {ctx.command_path} {pieces}\n"]
    if commands:
        width = max(len(n) for n, _ in commands)
        parts.append("\nAvailable Commands:\n" + "".join(f"  {n.ljust(width)}  {s}\n" for n, s in commands))
    if arguments:
        parts.append("\nArguments:\n" + "".join(f"  {a.human_readable_name}\n" for a in arguments))
    if rows:
        width = max(len(left) for left, _ in rows)
        parts.append(
            "\nFlags:\n" + "".join(f"{left.ljust(width)}   {text}".rstrip() + "\n" for left, text in rows)
        )
    parts.append("\nGet help:\n  -h, --help   help for this command\n")
    if commands:
        parts.append(f'\nUse "{ctx.command_path} [command] --help" for more information about a command.\n')
    return "".join(parts)
