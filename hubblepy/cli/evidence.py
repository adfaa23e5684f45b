"""`hubble evidence export|verify|keygen`: audit evidence bundles (see docs/evidence.md).

``export`` takes `hubble observe`'s filter, time and source flags (``--input-file`` or ``--server``
and its TLS flags) plus ``--output DIR``, ``--sign-key FILE`` and ``--policies-from auto|lab|none``.
``flows.jsonl`` is written by the observe machinery itself (the file reader of
:mod:`hubblepy.cli.observe`, or :func:`hubblepy.cli.observe_live.stream_records` with observe's printer), so
it is byte for byte what ``hubble observe -o json`` prints for the same flags; a live export without
``--first``/``--last``/``--all`` asks for ``--all``. Relative ``--since``/``--until`` are fixed to
absolute times once, and the manifest records both.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn, TextIO

from hubblepy import __version__

USAGE = """Usage:
  hubble evidence export --output DIR [--sign-key KEY.pem] [--policies-from auto|lab|none] [observe flags]
  hubble evidence verify DIR [--pub-key KEY.pub.pem]
  hubble evidence keygen --private KEY.pem --public KEY.pub.pem

export writes a bundle (flows.jsonl, chain.txt, manifest.json, report.html, policies/, manifest.sig)
for the flows `hubble observe -o json` would print with the same observe flags (--input-file or
--server, --namespace, --verdict, --type, --pod, --since, --until, ...).
verify checks a bundle offline: exit 0 with one summary line when intact, 1 naming what changed.
"""

EXPORT_OWN_FLAGS = ("--output", "--sign-key", "--policies-from")
REFUSED_OBSERVE_FLAGS = {
    "-o": "flows.jsonl is always `-o json`",
    "--jq": "flows.jsonl holds whole records",
    "-f": "an export must end (no --follow)",
    "--follow": "an export must end (no --follow)",
    "--print-raw-filters": "not an export",
    "--field-mask": "flows.jsonl holds whole records",
    "--strict-last": "use --all or a --since window",
}


class EvidenceError(Exception):
    """Ends the command with one line on stderr and exit status 1."""


def main(argv: list[str], env: Mapping[str, str] | None = None, stderr: TextIO | None = None) -> int:
    env = os.environ if env is None else env
    err = sys.stderr if stderr is None else stderr
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 1
    command, rest = argv[0], argv[1:]
    try:
        if command == "export":
            return export(rest, env)
        if command == "verify":
            return verify(rest)
        if command == "keygen":
            return keygen(rest)
        raise EvidenceError(f'unknown command "{command}" for "hubble evidence" (export, verify, keygen)')
    except EvidenceError as exc:
        err.write(f"hubble evidence: {exc}\n")
        return 1
    except KeyboardInterrupt:
        err.write("hubble evidence: interrupted (no bundle was left behind)\n")
        return 1
    except OSError as exc:
        err.write(f"hubble evidence: {exc.filename or ''}: {(exc.strerror or str(exc)).lower()}\n")
        return 1


# -- keygen / verify --------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise EvidenceError(message)


def keygen(argv: list[str]) -> int:
    from hubblepy.evidence.signing import KeyError_, generate

    p = _Parser(prog="hubble evidence keygen")
    p.add_argument("--private", required=True, help="private key file to create (PEM, mode 0600)")
    p.add_argument("--public", required=True, help="public key file to create (PEM)")
    ns = p.parse_args(argv)
    try:
        print_fp = generate(Path(ns.private), Path(ns.public))
    except (KeyError_, OSError) as exc:
        raise EvidenceError(str(exc)) from None
    sys.stdout.write(f"wrote {ns.private} (keep it secret) and {ns.public}; key {print_fp}\n")
    return 0


def verify(argv: list[str]) -> int:
    from hubblepy.evidence.verify import verify_bundle

    p = _Parser(prog="hubble evidence verify")
    p.add_argument("bundle", help="the bundle directory")
    p.add_argument("--pub-key", default=None, help="the signer's public key (PEM), to check manifest.sig")
    ns = p.parse_args(argv)
    ok, line = verify_bundle(Path(ns.bundle), Path(ns.pub_key) if ns.pub_key else None)
    if ok:
        sys.stdout.write(line + "\n")
        return 0
    sys.stdout.write(f"FAILED: {line}\n")
    return 1


# -- export -------------------------------------------------------------------------------------------------


def _split_own_flags(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    own: dict[str, str] = {}
    rest: list[str] = []
    words = iter(argv)
    for word in words:
        name, eq, value = word.partition("=")
        if name in EXPORT_OWN_FLAGS:
            if not eq:
                value = _next_value(words, name)
            own[name] = value
            continue
        if name in REFUSED_OBSERVE_FLAGS or (
            word.startswith("-o") and not word.startswith("--") and len(word) > 2
        ):
            reason = REFUSED_OBSERVE_FLAGS.get(name, REFUSED_OBSERVE_FLAGS["-o"])
            raise EvidenceError(f"{name} cannot be used with export: {reason}")
        rest.append(word)
    return own, rest


def _next_value(words: Iterator[str], name: str) -> str:
    value = next(words, None)
    if value is None:
        raise EvidenceError(f"flag needs an argument: {name}")
    return value


def _absolute_times(argv: list[str], now_ns: int) -> tuple[list[str], dict[str, str]]:
    """``--since``/``--until`` values replaced by absolute RFC 3339 times resolved once against now."""
    from hubblepy.cli.timeparse import TimeParseError, parse_time_bound
    from hubblepy.codec.timestamps import format_ns

    out: list[str] = []
    given: dict[str, str] = {}
    words = iter(argv)
    for word in words:
        name, eq, value = word.partition("=")
        if name not in ("--since", "--until"):
            out.append(word)
            continue
        if not eq:
            value = _next_value(words, name)
        try:
            resolved = format_ns(parse_time_bound(value, now_ns))
        except TimeParseError as exc:
            raise EvidenceError(f"failed to parse the {name[2:]} time: {exc}") from None
        given[name[2:]] = value
        out += [name, resolved]
    return out, given


def export(argv: list[str], env: Mapping[str, str]) -> int:
    from hubblepy.cli.observe_args import HelpRequested, UsageError, parse_observe_args
    from hubblepy.codec.timestamps import format_ns
    from hubblepy.filters import FilterError, compile_flow_filters

    own, rest = _split_own_flags(argv)
    if "--output" not in own:
        raise EvidenceError("export needs --output DIR (a new or empty directory)")
    policies_from = own.get("--policies-from", "auto")
    if policies_from not in ("auto", "lab", "none"):
        raise EvidenceError("--policies-from must be auto, lab or none")
    sign_key = None
    if "--sign-key" in own:
        from hubblepy.evidence.signing import KeyError_, load_private

        try:
            sign_key = load_private(Path(own["--sign-key"]))
        except KeyError_ as exc:
            raise EvidenceError(str(exc)) from None
    now_ns = time.time_ns()
    rest, given_times = _absolute_times(rest, now_ns)
    live = not any(w == "--input-file" or w.startswith("--input-file=") for w in rest)
    if live and not any(w.split("=")[0] in ("--first", "--last", "--all") for w in rest):
        rest = [*rest, "--all"]
    observe_argv = [*rest, "-o", "json"]
    try:
        args = parse_observe_args(observe_argv, env, now=now_ns)
        compile_flow_filters(args.allow, args.deny)
    except HelpRequested:
        sys.stdout.write(USAGE)
        return 0
    except (UsageError, FilterError) as exc:
        raise EvidenceError(str(exc)) from None
    if args.legacy_json:
        raise EvidenceError("HUBBLE_COMPAT=legacy-json-output is not supported: bundles hold whole records")
    if args.input_file == "-":
        raise EvidenceError("--input-file - (stdin) cannot be hashed for the record: give a file")
    folder = Path(own["--output"])
    created = _make_folder(folder)
    try:
        scan, facts = _write_flows(folder, args, observe_argv, env, now_ns)
        facts.query.update(
            {
                "observe_command": "hubble observe " + shlex.join(observe_argv),
                "observe_args": observe_argv,
                "since": format_ns(args.since_ns) if args.since_ns is not None else "",
                "until": format_ns(args.until_ns) if args.until_ns is not None else "",
                "since_given": given_times.get("since", ""),
                "until_given": given_times.get("until", ""),
                "filters": {"whitelist": args.allow, "blacklist": args.deny},
            }
        )
        facts.created = format_ns(now_ns)
        facts.tool = {"name": "hubble (hubblepy)", "version": __version__}
        _add_policies(facts, policies_from, live)
        facts.fqdn_cache = {
            "present": False,
            "note": "absent: this node keeps no FQDN cache yet, so no DNS name to IP mapping is recorded",
        }
        from hubblepy.evidence.bundle import finish_bundle

        manifest = finish_bundle(folder, facts, scan, sign_key)
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for child in folder.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    counts = manifest["counts"]
    state = "complete" if manifest["completeness"]["complete"] else "NOT complete (see report.html)"
    sys.stdout.write(
        f"wrote {folder}: {counts['flows']} flows, {counts['lines']} lines, chain head "
        f"{manifest['integrity']['chain_head'][:16]}..., {'signed' if sign_key else 'not signed'}; {state}\n"
    )
    return 0


def _make_folder(folder: Path) -> bool:
    if folder.exists():
        if not folder.is_dir():
            raise EvidenceError(f"--output {folder} exists and is not a directory")
        if any(folder.iterdir()):
            raise EvidenceError(f"--output {folder} is not empty (a bundle is never overwritten)")
        return False
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise EvidenceError(f"cannot create {folder}: {(exc.strerror or 'error').lower()}") from None
    return True


class _UnreadableLines:
    """Observe's stderr, passed on, noting the input lines it could not read (they are skipped)."""

    _MARK = "Failed to unmarshal json to flow"

    def __init__(self, stderr: TextIO) -> None:
        self._stderr = stderr
        self.line_numbers: list[int] = []

    def write(self, text: str | bytes) -> int:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        for line in text.splitlines():
            if self._MARK in line:
                number = line.rpartition("line_number=")[2].strip()
                self.line_numbers.append(int(number) if number.isdigit() else 0)
        return self._stderr.write(text)

    def flush(self) -> None:
        self._stderr.flush()


def _write_flows(
    folder: Path, args: Any, observe_argv: list[str], env: Mapping[str, str], now_ns: int
) -> Any:
    from hubblepy.evidence import FLOWS_FILE
    from hubblepy.evidence.bundle import Facts, scan_flows

    path = folder / FLOWS_FILE
    if args.input_file is not None:
        from hubblepy.cli import observe
        from hubblepy.cli.file_input import InputError

        digest = _file_sha256(args.input_file)
        warnings = _UnreadableLines(sys.stderr)
        with open(path, "wb") as fh:
            try:
                observe.run(observe_argv, env, sys.stdin.buffer, fh, warnings)  # type: ignore[arg-type]
            except (observe.ObserveError, InputError) as exc:
                raise EvidenceError(str(exc)) from None
        from hubblepy.evidence.live import file_completeness, input_lost_events

        scan = scan_flows(folder)
        summary = scan.summary
        return scan, Facts(
            query={
                "source": {"kind": "file", "path": os.path.abspath(args.input_file), "sha256": digest},
                "source_text": f"the file {args.input_file}",
            },
            completeness=file_completeness(
                args.input_file,
                digest,
                summary.nodes,
                input_lost_events(Path(args.input_file)),
                args.since_ns,
                args.until_ns,
                warnings.line_numbers,
            ),
            policies_source={},
        )
    return _write_live_flows(folder, path, args, now_ns)


def _write_live_flows(folder: Path, path: Path, args: Any, now_ns: int) -> Any:
    import grpc

    from hubblepy.cli.connection import Connection, LiveError, dial, hangup, rpc_error_line
    from hubblepy.cli.observe_live import build_flows_request, stream_records
    from hubblepy.evidence.bundle import Facts, scan_flows
    from hubblepy.evidence.live import StreamWatcher, completeness, known_nodes, oldest_flow_ns
    from hubblepy.printer import Printer
    from hubblepy.printer.options import observe_print_options as print_options

    conn: Connection = args.connection
    try:
        channel = dial(conn)
    except LiveError as exc:
        raise EvidenceError(str(exc)) from None
    try:
        nodes = known_nodes(channel, conn.request_timeout_s)
        request = build_flows_request(args)
        with open(path, "wb") as fh:
            err = sys.stderr.buffer
            watcher = StreamWatcher(Printer(print_options(args, fh), fh, err))
            try:
                stream_records(channel, request, None, watcher, False, [])
            except grpc.RpcError as exc:
                raise EvidenceError(rpc_error_line(exc)) from None
            finally:
                watcher.close()
        oldest = {n["name"]: oldest_flow_ns(channel, n["name"], conn.request_timeout_s) for n in nodes}
    finally:
        hangup(channel)
    scan = scan_flows(folder)
    return scan, Facts(
        query={
            "source": {"kind": "server", "address": conn.server},
            "source_text": f"the server {conn.server}",
        },
        completeness=completeness(
            nodes, watcher, oldest, args.since_ns, args.until_ns, now_ns, scan.summary.lost_events
        ),
        policies_source={},
    )


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise EvidenceError(f"open {path}: {(exc.strerror or 'error').lower()}") from None
    return digest.hexdigest()


def _address_key(address: str) -> str:
    """``host:port`` with loopback spellings made equal (``localhost``, ``0.0.0.0``, ``:PORT``)."""
    address = address.removeprefix("tls://")
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in ("", "localhost", "0.0.0.0", "::", "::1"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def _lab_serves(server: str) -> str:
    """Why the lab node's policies are not the server's, or '' when the lab serves ``server``."""
    from hubblepy.lab.state import lab_dir, load_state

    state = load_state()
    if state is None:
        return f"no lab state at {lab_dir()}"
    served = {_address_key(state.get(key) or "") for key in ("relay", "agent") if state.get(key)}
    if _address_key(server) in served:
        return ""
    return f"the lab at {lab_dir()} serves {', '.join(sorted(served)) or 'no address'}, not {server}"


def _add_policies(facts: Any, policies_from: str, live: bool) -> None:
    """The policies in force on the lab node (its control socket): with ``lab`` always, with ``auto``
    when the exported server is that lab's relay or agent."""
    from hubblepy.evidence.bundle import PolicyDocument

    if policies_from == "none" or (policies_from == "auto" and not live):
        facts.policies_source = {
            "source": "none",
            "note": "Policies in force were not recorded"
            + (
                " (--policies-from none)."
                if policies_from == "none"
                else " (the source is a file; use --policies-from lab)."
            ),
        }
        return
    from hubblepy.lab.control import ControlError, request
    from hubblepy.lab.state import lab_dir

    if policies_from == "auto":
        elsewhere = _lab_serves(facts.query["source"]["address"])
        if elsewhere:
            facts.policies_source = {
                "source": "none",
                "note": f"Policies in force were not recorded: {elsewhere} (--policies-from lab records "
                "the lab node's policies anyway).",
            }
            return
    try:
        reply = request("policies", timeout=10.0)
    except ControlError as exc:
        if policies_from == "lab":
            raise EvidenceError(f"--policies-from lab: {exc}") from None
        facts.policies_source = {
            "source": "none",
            "note": f"Policies in force were not recorded: no lab node answered at {lab_dir()} ({exc}).",
        }
        return
    from hubblepy.policy import PolicyError
    from hubblepy.policy.parse import parse_document

    for row in reply.get("policies", []):
        document = row.get("document") or {}
        try:  # the lab's own reading of the document: kind, namespace (defaulted) and name
            ref = parse_document(document, row.get("source", "lab"), 1).ref
            kind, namespace, name = ref.kind, ref.namespace, ref.name
        except PolicyError:
            meta = document.get("metadata") or {}
            kind, namespace, name = document.get("kind", ""), meta.get("namespace", ""), meta.get("name", "")
        facts.policies.append(PolicyDocument(kind=kind, namespace=namespace, name=name, document=document))
    facts.policies_source = {
        "source": "lab",
        "lab_dir": str(lab_dir()),
        "revision": reply.get("revision", 0),
        "note": f"{len(facts.policies)} policies were in force on the lab node ({lab_dir()}) at export "
        f"(policy revision {reply.get('revision', 0)}); their documents are in policies/.",
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
