"""`hubble lab`: a one-machine lab of pods (network namespaces) with the eBPF datapath and a relay.

Commands: ``up [--scenario FILE]``, ``down``, ``status``, ``exec NAMESPACE/POD -- CMD...``,
``policy apply|delete FILE``, ``audit enable|disable NAMESPACE/POD | NAMESPACE/ | --namespace NS |
--policy NAME``, ``pod recreate NAMESPACE/POD``, ``fqdn cache list [-o json]``.
``up`` starts the lab node process (:mod:`hubblepy.lab.node`) in the background and waits until it
answers; the other commands talk to it through its control socket or read its state file. Every
error is one line on stderr and a non-zero exit. The lead wires this in with ``register(app)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

lab_app = typer.Typer(
    name="lab",
    help="Run a one-machine lab: pods, eBPF policy, agent and relay.",
    no_args_is_help=True,
    add_completion=False,
)
policy_app = typer.Typer(help="Apply or delete policy files in the running lab.", no_args_is_help=True)
audit_app = typer.Typer(
    help="Policy audit mode of a pod, a namespace or one policy: denied packets pass with verdict AUDIT.",
    no_args_is_help=True,
)
pod_app = typer.Typer(help="Manage the lab's pods.", no_args_is_help=True)
lab_app.add_typer(policy_app, name="policy")
lab_app.add_typer(audit_app, name="audit")
lab_app.add_typer(pod_app, name="pod")
fqdn_app = typer.Typer(help="The node's FQDN cache (names learned from DNS answers).", no_args_is_help=True)
fqdn_cache_app = typer.Typer(help="The FQDN cache, as cilium-dbg fqdn cache.", no_args_is_help=True)
fqdn_app.add_typer(fqdn_cache_app, name="cache")
lab_app.add_typer(fqdn_app, name="fqdn")

REPO_ROOT = Path(__file__).resolve().parents[2]


def register(app: typer.Typer) -> None:
    """Adds the ``lab`` command group to the ``hubble`` application."""
    app.add_typer(lab_app, name="lab")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"hubble lab: {message}", err=True)
    return typer.Exit(code)


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise _fail(f"{what} needs root (network namespaces, veths and eBPF): run it as root")


def _request(op: str, **fields: Any) -> dict[str, Any]:
    from hubblepy.lab.control import ControlError, request

    try:
        return request(op, **fields)
    except ControlError as exc:
        raise _fail(str(exc)) from None


def _node_pid() -> int | None:
    from hubblepy.lab.state import pid_path, read_pid

    return read_pid(pid_path())


def _wait_port(address: str, timeout: float) -> bool:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            s.settimeout(0.3)
            if s.connect_ex((host or "127.0.0.1", int(port))) == 0:
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


@lab_app.command()
def up(
    scenario: str = typer.Option(
        "", "--scenario", help="scenario YAML or built-in name: payments (default), pci-cde, policy-lab"
    ),
    no_datapath: bool = typer.Option(
        False, "--no-datapath", help="only namespaces and servers: no eBPF, no flows"
    ),
    listen_address: str = typer.Option("127.0.0.1:4244", help="the node agent's gRPC address"),
    relay_address: str = typer.Option("127.0.0.1:4245", help="the relay's gRPC address"),
    monitor_aggregation: str = typer.Option(
        "medium",
        help="datapath trace events: medium (new connections and TCP flag changes) or none (every packet)",
    ),
    timeout: float = typer.Option(180.0, help="seconds to wait for the lab to come up"),
    metrics_address: str = typer.Option(
        "127.0.0.1:9965", help="the node's Prometheus /metrics address ('' disables; busy: a warning)"
    ),
    metrics: str = typer.Option(
        "", "--metrics", help="the node's metric families (default: drop, flow, policy, dns, httpV2)"
    ),
    prometheus: bool = typer.Option(
        False, "--prometheus", help="start Prometheus scraping the node and relay"
    ),
    prometheus_address: str = typer.Option("127.0.0.1:9090", help="Prometheus' address with --prometheus"),
    relay_metrics_address: str = typer.Option(
        "127.0.0.1:9966", help="the relay's /metrics address with --prometheus"
    ),
    monitor_num_pages: str = typer.Option(
        "4096",
        "--monitor-num-pages",
        help="perf ring pages per CPU for datapath events (a power of two; Cilium's MonitorNumPages)",
    ),
    tofqdns_min_ttl: int = typer.Option(
        0,
        "--tofqdns-min-ttl",
        min=0,
        help="lowest TTL (s) of FQDN cache entries (Cilium's default 3600; 0 keeps the answers' TTLs)",
    ),
) -> None:
    """Create the scenario's pods, load the datapath, apply the policies, start agent and relay."""
    metrics_args = ["--metrics-server", metrics_address]  # issue 11: metrics and Prometheus
    if metrics:
        from hubblepy.metrics import MetricsConfigError, parse_metrics

        try:
            parse_metrics(metrics)
        except MetricsConfigError as exc:
            raise _fail(str(exc)) from None
        metrics_args += ["--metrics", metrics]
    if prometheus:
        metrics_args += [
            "--prometheus-address",
            prometheus_address,
            "--relay-metrics-address",
            relay_metrics_address,
        ]
    metrics_args += ["--tofqdns-min-ttl", str(tofqdns_min_ttl)]
    from hubblepy.monitor.options import NUM_PAGES_FLAG, check_num_pages

    try:
        metrics_args += [NUM_PAGES_FLAG, str(check_num_pages(monitor_num_pages))]
    except ValueError as exc:
        raise _fail(str(exc)) from None
    bring_up(scenario, no_datapath, listen_address, relay_address, monitor_aggregation, timeout, metrics_args)


def bring_up(
    scenario: str = "",
    no_datapath: bool = False,
    listen_address: str = "127.0.0.1:4244",
    relay_address: str = "127.0.0.1:4245",
    monitor_aggregation: str = "medium",
    timeout: float = 180.0,
    metrics_args: list[str] | None = None,
) -> None:
    """``hubble lab up`` with plain defaults (also used by ``verify``)."""
    _need_root("hubble lab up")
    if monitor_aggregation not in ("medium", "none"):
        raise _fail(f"--monitor-aggregation must be medium or none, not {monitor_aggregation!r}")
    from hubblepy.lab.scenario import ScenarioError, load_scenario, scenario_path
    from hubblepy.lab.state import lab_dir, load_state
    from hubblepy.policy import PolicyError

    if not no_datapath:
        try:
            from hubblepy.datapath import DatapathUnavailable, check_environment
        except ImportError as exc:
            raise _fail(
                f"the eBPF datapath is not available ({exc}); use --no-datapath for pods only"
            ) from None
        try:
            check_environment()
        except DatapathUnavailable as exc:
            raise _fail(str(exc)) from None
    if shutil.which("ip") is None:
        raise _fail("the `ip` tool (iproute2) is missing: apt-get install iproute2")
    try:
        sc = load_scenario(scenario or None)
    except (ScenarioError, PolicyError) as exc:
        raise _fail(str(exc)) from None
    if _node_pid() is not None:
        raise _fail("the lab is already up (run: hubble lab down)")
    _teardown(quiet=True)
    for what, address in (("agent", listen_address), ("relay", relay_address)):
        if _wait_port(address, 0.01):
            raise _fail(f"the {what} address {address} is already in use (another agent or relay?)")
    folder = lab_dir()
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "node.log"
    args = [
        sys.executable,
        "-m",
        "hubblepy.lab.node",
        "--listen-address",
        listen_address,
        "--relay-address",
        relay_address,
    ]
    if scenario:
        args += ["--scenario", str(scenario_path(scenario).resolve())]
    if no_datapath:
        args.append("--no-datapath")
    args += metrics_args or []
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd=str(REPO_ROOT),
        )
    deadline = time.monotonic() + timeout
    from hubblepy.lab.control import ControlError, request

    state = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _fail(_last_line(log_path) or f"the lab node exited with status {proc.returncode}")
        with contextlib.suppress(ControlError):
            state = request("status", timeout=5)["state"]
            break
        time.sleep(0.2)
    if state is None:
        _teardown(quiet=True)
        raise _fail(f"the lab did not come up within {timeout:.0f}s (log: {log_path})")
    if state.get("relay") and not _wait_port(state["relay"], 20):
        typer.echo(f"hubble lab: warning: the relay does not answer on {state['relay']} yet", err=True)
    for policy in sc.policies:
        for warning in policy.warnings:
            typer.echo(f"warning: {warning}", err=True)
    _print_status(load_state() or state)
    _print_metrics(load_state() or state)
    if state.get("relay"):
        server = (
            "" if state["relay"] in ("127.0.0.1:4245", "localhost:4245") else f" --server {state['relay']}"
        )
        typer.echo(f"\nWatch: hubble observe{server} --namespace {sc.pods[0].namespace} -f")


def _print_metrics(state: dict[str, Any]) -> None:
    """Where the lab's metrics are (issue 11)."""
    if state.get("metrics"):
        typer.echo(f"Metrics: curl -s {state['metrics']}/metrics")
    if state.get("prometheus"):
        typer.echo(f"Prometheus: http://{state['prometheus']} (relay metrics on {state['relay_metrics']})")


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    line = lines[-1] if lines else ""
    return line[len("lab: ") :] if line.startswith("lab: ") else line


def _teardown(quiet: bool = False) -> bool:
    """Stops the node (politely, then by force) and removes every leftover; True if anything was there."""
    from hubblepy.lab import netns
    from hubblepy.lab.control import ControlError, request
    from hubblepy.lab.state import lab_dir, load_state

    found = False
    state = load_state()
    pid = _node_pid()
    if pid is not None:
        found = True
        with contextlib.suppress(ControlError):
            request("shutdown", timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            netns.terminate([pid], timeout=5)
    for orphan in _orphan_nodes(lab_dir()):  # a lab node whose pid file is gone
        found = True
        netns.terminate([orphan], timeout=5)
    relay_pid = (state or {}).get("relay_pid") or 0
    if relay_pid and _alive(relay_pid) and b"relay" in _cmdline(relay_pid):
        found = True
        netns.terminate([relay_pid])
    prometheus_pid = (state or {}).get("prometheus_pid") or 0
    if prometheus_pid and _alive(prometheus_pid) and b"prometheus" in _cmdline(prometheus_pid):
        found = True
        netns.terminate([prometheus_pid])
    if netns.sweep():
        found = True
    folder = lab_dir()
    if folder.exists():
        found = found or (folder / "state.json").exists()
        shutil.rmtree(folder, ignore_errors=True)
    return found


def _orphan_nodes(folder: Path) -> list[int]:
    """Lab node processes of this lab directory (by command line and HUBBLEPY_LAB_DIR)."""
    from hubblepy.lab.state import DEFAULT_DIR

    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if b"hubblepy.lab.node" not in _cmdline(int(entry.name)):
            continue
        try:
            environ = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        value = next((e.split(b"=", 1)[1] for e in environ if e.startswith(b"HUBBLEPY_LAB_DIR=")), None)
        their = Path(value.decode()) if value else Path(DEFAULT_DIR)
        if their.resolve() == folder.resolve():
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@lab_app.command()
def down() -> None:
    """Remove the lab: processes, namespaces, veths, datapath, state. Safe to run twice."""
    _need_root("hubble lab down")
    typer.echo("lab removed" if _teardown() else "no lab to remove")


def _load_state_or_fail() -> dict[str, Any]:
    from hubblepy.lab.state import load_state

    state = load_state()
    if state is None or _node_pid() is None:
        raise _fail("the lab is not up (run: hubble lab up)")
    return state


def _audit_cell(pod: dict[str, Any]) -> str:
    """``on (namespace)``, ``on (pod)``, ``default deny ingress`` (per-policy audit) or ``off``."""
    if pod.get("audit"):
        scope = pod.get("audit_scope", "")
        return f"on ({scope.split()[0]})" if scope else "on"
    if pod.get("default_deny_audited"):
        return "default deny " + "+".join(pod["default_deny_audited"])
    return "off"


def _print_status(state: dict[str, Any]) -> None:
    dp = "eBPF datapath" if state.get("datapath") else "no datapath"
    typer.echo(
        f"Lab {state['name']} on node {state['node']} ({dp}; agent {state.get('agent') or '-'}, "
        f"relay {state.get('relay') or '-'})"
    )
    rows = [("POD", "IP", "IDENTITY", "ENDPOINT", "INGRESS", "EGRESS", "AUDIT", "SERVERS")]
    for p in state["pods"]:
        servers = ",".join(f"{s['kind']}:{s['port']}" for s in p["servers"]) or "-"
        rows.append(
            (
                f"{p['namespace']}/{p['name']}",
                p["ip"],
                str(p["identity"]),
                str(p["ep_id"]),
                "enforced" if p["ingress_enforced"] else "allow-all",
                "enforced" if p["egress_enforced"] else "allow-all",
                _audit_cell(p),
                servers,
            )
        )
    from hubblepy.cli.tables import renderer_for

    for line in renderer_for(sys.stdout)(rows):
        typer.echo(line)
    world = state.get("world") or {}
    if world.get("hosts"):
        hosts = "; ".join(
            f"{h['name']} {','.join(h['addresses'])}"
            + (f" ({', '.join(h['servers'])})" if h["servers"] else "")
            for h in world["hosts"]
        )
        typer.echo(f"World: {hosts}; resolver {world['resolver']}")
    names = ", ".join(p["ref"] for p in state.get("policies", [])) or "none"
    typer.echo(f"Policies: {names}")
    audit = state.get("audit") or {}
    scopes = [f"pod {x}" for x in audit.get("pods", [])]
    scopes += [f"namespace {x}" for x in audit.get("namespaces", [])]
    scopes += [f"policy {x}" for x in audit.get("policies", [])]
    if scopes:
        typer.echo(f"Audit mode: {', '.join(scopes)}")
    _print_proxy(state)
    _print_dns_proxy(state)
    if state.get("datapath"):
        typer.echo(
            f"Flows: {state.get('flows_published', 0)} published, "
            f"{state.get('lost_samples', 0)} perf samples lost"
        )


def _print_dns_proxy(state: dict[str, Any]) -> None:
    """The DNS proxy's line: port, process, restarts and its query counters."""
    proxy = state.get("dns_proxy")
    if not proxy:
        return
    running = f"pid {proxy['pid']}" if proxy.get("running") else "DOWN (redirected DNS is dropped)"
    typer.echo(
        f"DNS proxy: port {proxy['port']}, {running}, {proxy.get('restarts', 0)} restarts; "
        f"{proxy.get('queries', 0)} queries, {proxy.get('denied', 0)} refused, "
        f"{proxy.get('malformed', 0) + proxy.get('oversized', 0)} malformed or oversized"
    )


def _print_proxy(state: dict[str, Any]) -> None:
    """The L7 proxy's line and the endpoint ports redirected to it (identities named by their pods)."""
    proxy = state.get("proxy")
    if not proxy:
        return
    running = f"pid {proxy['pid']}" if proxy.get("running") else "DOWN (redirected connections are dropped)"
    if proxy.get("running") and proxy.get("compiled"):
        running += " (mypyc build)"
    typer.echo(
        f"L7 proxy: port {proxy['port']}, {running}, {proxy.get('restarts', 0)} restarts; "
        f"{proxy.get('requests', 0)} requests, {proxy.get('denied', 0)} denied; "
        f"{proxy.get('published', 0)} L7 flows published, {proxy.get('lost', 0)} records lost"
    )
    names: dict[str, list[str]] = {}
    for p in state["pods"]:
        names.setdefault(str(p["identity"]), []).append(f"{p['namespace']}/{p['name']}")
    lines = []
    for p in state["pods"]:
        for text in p.get("redirects", []):
            identity = text.split(" identity ", 1)[1].split(" ", 1)[0] if " identity " in text else ""
            pods = f" ({', '.join(names[identity])})" if identity in names else ""
            lines.append(
                f"  {p['namespace']}/{p['name']}: {text.replace(f'identity {identity} ', f'identity {identity}{pods} ') if pods else text}"
            )
    typer.echo("Redirected to the L7 proxy:" + ("\n" + "\n".join(lines) if lines else " none"))


@lab_app.command()
def status(output: str = typer.Option("table", "--output", "-o", help="table or json")) -> None:
    """Show the lab's pods, identities, enforcement and policies."""
    _load_state_or_fail()
    state = _request("status")["state"]
    if output == "json":
        typer.echo(json.dumps(state, indent=2))
    elif output == "table":
        _print_status(state)
    else:
        raise _fail(f"unknown output format {output!r} (table, json)")


def _find_pod(state: dict[str, Any], ref: str) -> dict[str, Any]:
    if ref == "world" and state.get("world"):  # the hosts outside the cluster (scenario `world`)
        return state["world"]
    namespace, sep, name = ref.partition("/")
    if not sep:
        raise _fail(f"pod must be NAMESPACE/POD, got {ref!r}")
    for p in state["pods"]:
        if p["namespace"] == namespace and p["name"] == name:
            return p
    raise _fail(f"no pod {ref} in the lab (see: hubble lab status)")


@lab_app.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
def exec_(
    pod: str = typer.Argument(..., help="NAMESPACE/POD"),
    command: Annotated[list[str] | None, typer.Argument(help="command and arguments (after --)")] = None,
) -> None:
    """Run a command inside a pod's network namespace (with the lab's cluster DNS).

    The exit status is the command's; 127 when it does not exist, 126 when it is not executable.
    """
    _need_root("hubble lab exec")
    state = _load_state_or_fail()
    target = _find_pod(state, pod)
    command = list(command or [])
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise _fail("nothing to run: hubble lab exec NAMESPACE/POD -- CMD [ARGS...]")
    _check_runnable(command[0])
    sys.stdout.flush()
    try:
        os.execvp("ip", ["ip", "netns", "exec", target["netns"], *command])
    except OSError as exc:
        raise _fail(f"cannot run ip netns exec: {exc.strerror}") from None


EXIT_NOT_EXECUTABLE = 126  # as shells and kubectl exec: found but cannot be run
EXIT_NOT_FOUND = 127  # as shells and kubectl exec: no such command


def _check_runnable(program: str) -> None:
    """Exits 127 when ``program`` does not exist (on ``$PATH`` or as a path), 126 when it cannot run.

    ``ip netns exec`` itself reports both as status 1; checking first gives the shell's codes. The pod
    sees the same files as we do (only /etc and /sys differ inside ``ip netns exec``).
    """
    if "/" in program:
        if not os.path.exists(program):
            raise _fail(f"{program}: no such file or directory", EXIT_NOT_FOUND)
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            raise _fail(f"{program}: permission denied (not an executable file)", EXIT_NOT_EXECUTABLE)
        return
    if shutil.which(program) is not None:
        return
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if os.path.isfile(os.path.join(folder or ".", program)):
            raise _fail(f"{program}: permission denied (not an executable file)", EXIT_NOT_EXECUTABLE)
    raise _fail(f"{program}: command not found", EXIT_NOT_FOUND)


def _policy_file(path: str) -> tuple[str, str]:
    """The file's text, read as ``hubble policy validate`` and scenarios read it (bounded)."""
    from hubblepy.policy import PolicyError
    from hubblepy.policy.parse import read_policy_file

    try:
        return read_policy_file(path), path
    except PolicyError as exc:
        raise _fail(str(exc)) from None


@policy_app.command("apply")
def policy_apply(file: str = typer.Argument(..., help="policy YAML (several documents allowed)")) -> None:
    """Validate a policy file and apply it whole (only changed map entries are written)."""
    _load_state_or_fail()
    text, name = _policy_file(file)
    reply = _request("policy-apply", text=text, filename=name)
    for warning in reply["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    e = reply["entries"]
    typer.echo(
        f"applied {', '.join(reply['policies'])}: policy map {e['added']} added, {e['changed']} changed, "
        f"{e['removed']} removed"
    )


@policy_app.command("delete")
def policy_delete(file: str = typer.Argument(..., help="the policy file that was applied")) -> None:
    """Delete the policies named in a file."""
    _load_state_or_fail()
    text, name = _policy_file(file)
    reply = _request("policy-delete", text=text, filename=name)
    for missing in reply["missing"]:
        typer.echo(f"warning: policy {missing} was not applied", err=True)
    e = reply["entries"]
    typer.echo(
        f"deleted {', '.join(reply['policies']) or 'nothing'}: policy map {e['added']} added, "
        f"{e['changed']} changed, {e['removed']} removed"
    )


def _audit(target: str, namespace: str, policy: str, enabled: bool) -> None:
    state = _load_state_or_fail()
    given = [x for x in (target, namespace, policy) if x]
    if len(given) != 1:
        raise _fail("name exactly one of NAMESPACE/POD, NAMESPACE/ (or --namespace NS), --policy NAME")
    fields: dict[str, str] = {}
    if policy:
        fields["policy"] = policy
    elif namespace or target.endswith("/"):
        fields["namespace"] = namespace or target[:-1]
        if not fields["namespace"] or "/" in fields["namespace"]:
            raise _fail(f"namespace must be NAMESPACE or NAMESPACE/, got {namespace or target!r}")
    else:
        pod = _find_pod(state, target)
        fields["pod"] = f"{pod['namespace']}/{pod['name']}"
    reply = _request("audit", enabled=enabled, **fields)
    typer.echo(f"policy audit mode {'enabled' if enabled else 'disabled'} for {reply['scope']}")


_TARGET_HELP = "NAMESPACE/POD, or NAMESPACE/ for a whole namespace"
_NAMESPACE_HELP = "every pod of this namespace (also pods created later)"
_POLICY_HELP = "only what this policy denies: NAMESPACE/NAME (CNP or NetworkPolicy) or NAME (cluster-wide)"


@audit_app.command("enable")
def audit_enable(
    target: str = typer.Argument("", help=_TARGET_HELP),
    namespace: str = typer.Option("", "--namespace", help=_NAMESPACE_HELP),
    policy: str = typer.Option("", "--policy", help=_POLICY_HELP),
) -> None:
    """Denied packets pass and are reported with verdict AUDIT (pod, namespace or one policy)."""
    _audit(target, namespace, policy, True)


@audit_app.command("disable")
def audit_disable(
    target: str = typer.Argument("", help=_TARGET_HELP),
    namespace: str = typer.Option("", "--namespace", help=_NAMESPACE_HELP),
    policy: str = typer.Option("", "--policy", help=_POLICY_HELP),
) -> None:
    """Enforce again what audit mode let through (same scopes as enable)."""
    _audit(target, namespace, policy, False)


@pod_app.command("recreate")
def pod_recreate(pod: str = typer.Argument(..., help="NAMESPACE/POD")) -> None:
    """Delete a pod and create it again: new IP and endpoint, same labels, so the same identity."""
    _need_root("hubble lab pod recreate")
    state = _load_state_or_fail()
    target = _find_pod(state, pod)
    r = _request("recreate", pod=f"{target['namespace']}/{target['name']}")
    typer.echo(
        f"recreated {pod}: IP {r['old_ip']} -> {r['ip']}, endpoint {r['old_endpoint']} -> {r['endpoint']}, "
        f"identity {r['old_identity']} -> {r['identity']}"
    )


__all__ = ["lab_app", "register"]


@fqdn_cache_app.command("list")
def fqdn_cache_list(
    endpoint: str = typer.Option("", "--endpoint", "-e", help="only this pod's lookups (NAMESPACE/POD)"),
    name: str = typer.Option("", "--matchName", "-n", help="only this name"),
    output: str = typer.Option("table", "--output", "-o", help="table or json"),
) -> None:
    """The names each endpoint looked up, their IPs, TTL and expiry (columns of cilium-dbg fqdn cache list)."""
    if output not in ("table", "json"):
        raise _fail(f"--output must be table or json, not {output!r}")
    reply = _request("fqdn-cache", endpoint=endpoint, name=name)
    from hubblepy.fqdn.table import render_table

    rows = reply["lookups"]
    if output == "json":
        typer.echo(json.dumps(rows, indent=2))
    else:
        typer.echo(render_table(rows), nl=False)


def _step(command: str, note: str = "") -> None:
    typer.echo(f"\n$ {command}" + (f"   # {note}" if note else ""))


def _curl(netns_name: str, url: str, *extra: str) -> str:
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns_name,
            "curl",
            "-s",
            "-m",
            "3",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return "timeout" if out.returncode == 28 else (out.stdout.strip() or f"curl exit status {out.returncode}")


def _observe(relay: str, *args: str) -> None:
    shown = " ".join(args)
    _step(f"hubble observe {shown}")
    server = [] if relay in ("127.0.0.1:4245", "localhost:4245") else ["--server", relay]
    sys.stdout.flush()
    subprocess.run(
        [sys.executable, "-m", "hubblepy.cli", "observe", *server, *args],
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def _flows(relay: str, *args: str) -> list[dict[str, Any]]:
    """Flows of ``hubble observe ARGS -o json`` (not printed)."""
    server = [] if relay in ("127.0.0.1:4245", "localhost:4245") else ["--server", relay]
    out = subprocess.run(
        [sys.executable, "-m", "hubblepy.cli", "observe", *server, *args, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    flows = []
    for line in out.stdout.splitlines():
        with contextlib.suppress(ValueError):
            flows.append(json.loads(line).get("flow", {}))
    return flows


def _fqdn_cache(output: str = "table") -> list[dict[str, Any]]:
    _step("hubble lab fqdn cache list" + (" -o json" if output == "json" else ""))
    from hubblepy.fqdn.table import render_table

    rows = _request("fqdn-cache")["lookups"]
    typer.echo(json.dumps(rows, indent=2) if output == "json" else render_table(rows).rstrip("\n"))
    return rows


def _dns_queries(relay: str, namespace: str) -> set[str]:
    return {
        f.get("l7", {}).get("dns", {}).get("query", "").rstrip(".")
        for f in _flows(relay, "--namespace", namespace, "--protocol", "dns", "--last", "200")
    }


def _verify_fqdn_step(state: dict[str, Any], pods: dict[str, Any], expect: Any, failures: list[str]) -> None:
    """Verify step 4: toFQDNs lets api reach api.stripe.com and nothing else on the internet."""
    relay = state["relay"]
    api = pods["payments/api"]["netns"]
    _step(
        "hubble lab exec payments/api -- curl -s -o /dev/null -w '%{http_code}' https://api.stripe.com",
        "expect: 200 (toFQDNs api.stripe.com)",
    )
    expect(_curl(api, "https://api.stripe.com"), "200", "api -> https://api.stripe.com")
    _step("hubble lab exec payments/api -- curl -m 3 https://example.com", "expect: timeout (no toFQDNs)")
    expect(_curl(api, "https://example.com"), "timeout", "api -> https://example.com")
    time.sleep(0.5)
    _observe(relay, "--namespace", "payments", "--protocol", "dns", "--last", "20")
    _observe(
        relay,
        "--from-pod",
        "payments/api",
        "--to-port",
        "443",
        "--verdict",
        "DROPPED",
        "--print-policy-names",
        "--last",
        "3",
    )
    drops = _flows(
        relay, "--from-pod", "payments/api", "--to-port", "443", "--verdict", "DROPPED", "--last", "50"
    )
    named = [f for f in drops if f.get("drop_reason_desc") == "POLICY_DENIED" and f.get("egress_denied_by")]
    if not named:
        failures.append("api -> example.com:443: no Policy denied DROPPED flow naming the policies")
    queries = _dns_queries(relay, "payments")
    for name in ("api.stripe.com", "example.com"):
        if name not in queries:
            failures.append(f"no DNS flow for {name}")
    rows = _fqdn_cache()
    if not any(r["fqdn"] == "api.stripe.com." and r.get("pod") == "payments/api" for r in rows):
        failures.append("the FQDN cache has no api.stripe.com for payments/api")


@lab_app.command()
def verify() -> None:
    """The seed article's "Verify" story on the payments lab (brings the lab up when it is not);
    on the pci-cde scenario, the seed's PCI audit workflow."""
    _need_root("hubble lab verify")
    if _node_pid() is None:
        _step("hubble lab up")
        bring_up()
    state = _load_state_or_fail()
    if not state.get("datapath"):
        raise _fail("the lab runs without the datapath (--no-datapath): nothing to verify")
    if state.get("name") == "pci-cde":
        _verify_pci(state)
        return
    pods = {f"{p['namespace']}/{p['name']}": p for p in state["pods"]}
    for needed in ("default/probe", "payments/frontend", "payments/api"):
        if needed not in pods:
            raise _fail(f"verify needs the payments scenario (no pod {needed})")
    relay = state["relay"]
    failures = []

    def expect(got: str, wanted: str, what: str) -> None:
        typer.echo(got)
        if got != wanted:
            failures.append(f"{what}: expected {wanted}, got {got}")

    _step(
        "hubble lab exec default/probe -- curl -m 3 http://api.payments:8080/api/v1/orders", "expect: timeout"
    )
    expect(
        _curl(pods["default/probe"]["netns"], "http://api.payments:8080/api/v1/orders"),
        "timeout",
        "probe -> api",
    )
    _step(
        "hubble lab exec payments/frontend -- curl -s -o /dev/null -w '%{http_code}' http://api:8080/api/v1/orders",
        "expect: 200",
    )
    expect(
        _curl(pods["payments/frontend"]["netns"], "http://api:8080/api/v1/orders"), "200", "frontend -> api"
    )
    if state.get("proxy"):  # Verify step 3's second half: L7 rules refuse the POST at the proxy
        _step(
            "hubble lab exec payments/frontend -- curl -s -o /dev/null -w '%{http_code}' "
            "-X POST http://api:8080/api/v1/orders",
            "expect: 403 (proxy denied)",
        )
        expect(
            _curl(pods["payments/frontend"]["netns"], "http://api:8080/api/v1/orders", "-X", "POST"),
            "403",
            "frontend POST -> api",
        )
    time.sleep(0.5)  # let the last events reach the ring
    _observe(relay, "--namespace", "payments", "--last", "25")
    _observe(relay, "--namespace", "payments", "--verdict", "DROPPED", "--last", "3", "--print-policy-names")
    if state.get("proxy"):  # Verify step 5: the L7 flow of the refused POST
        _observe(
            relay, "--namespace", "payments", "--protocol", "http", "--http-method", "POST", "--last", "20"
        )
    fqdn = "payments/api-egress-fqdn" in {p["ref"] for p in state.get("policies", [])}
    if fqdn:
        _verify_fqdn_step(state, pods, expect, failures)
    _step("hubble lab audit enable payments/api")
    _request("audit", pod="payments/api", enabled=True)
    try:
        _step(
            "hubble lab exec default/probe -- curl -m 3 http://api.payments:8080/api/v1/orders",
            "expect: 200, verdict AUDIT",
        )
        expect(
            _curl(pods["default/probe"]["netns"], "http://api.payments:8080/api/v1/orders"),
            "200",
            "probe -> api in audit mode",
        )
        time.sleep(0.5)
        _observe(relay, "--namespace", "payments", "--verdict", "AUDIT", "--last", "3")
        _step("hubble policy audit-report --namespace payments", "what enforcement would break")
        sys.stdout.flush()
        server = [] if relay in ("127.0.0.1:4245", "localhost:4245") else ["--server", relay]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "hubblepy.cli",
                "policy",
                "audit-report",
                *server,
                "--namespace",
                "payments",
            ],
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
    finally:
        _step("hubble lab audit disable payments/api")
        _request("audit", pod="payments/api", enabled=False)
    if failures:
        raise _fail("verify failed: " + "; ".join(failures))
    typer.echo(
        "\nverified: default deny drops the probe, the frontend may GET"
        + (" but its POST gets 403 from the L7 proxy" if state.get("proxy") else "")
        + (", api reaches api.stripe.com but not example.com (toFQDNs)" if fqdn else "")
        + ", audit mode reports AUDIT"
    )


def _wait_world_https(state: dict[str, Any], timeout: float = 60.0) -> None:
    """Waits until the world's HTTPS servers answer TLS (they may still be starting after ``lab up``)."""
    world = state.get("world") or {}
    addresses = [a for srv in world.get("servers", []) if srv["kind"] == "https" for a in srv.get("bind", [])]
    deadline = time.monotonic() + timeout
    for address in addresses:
        while _curl(world["netns"], f"https://{address}", "-k") not in ("200", "404"):
            if time.monotonic() > deadline:
                raise _fail(f"the world's HTTPS server on {address} does not answer")
            time.sleep(0.5)


PCI_PROCESSORS = ("eu.cardprocessor.com", "us.cardprocessor.com")
PCI_METRICS = "198.51.100.50"
PCI_ELSEWHERE = "198.51.100.80"  # example.com


def _verify_pci(state: dict[str, Any]) -> None:
    """The seed's PCI workflow: audit first, the forgotten metrics endpoint, enforcement, evidence."""
    pods = {f"{p['namespace']}/{p['name']}": p for p in state["pods"]}
    chd = pods.get("cde/cardholder-data-0")
    if chd is None:
        raise _fail("verify needs the pci-cde scenario (no pod cde/cardholder-data-0)")
    relay, failures = state["relay"], []
    metrics_file = REPO_ROOT / "hubblepy/lab/scenarios/pci-cde/chd-egress-metrics.yaml"
    applied = {p["ref"] for p in state.get("policies", [])}
    if "cde/chd-egress-metrics" in applied:  # a second run replays the story from the start
        _request("policy-delete", text=metrics_file.read_text(), filename=metrics_file.name)
    _wait_world_https(state)

    def expect(got: str, ok: bool, what: str) -> None:
        typer.echo(got)
        if not ok:
            failures.append(f"{what}: got {got}")

    def traffic(note_metrics: str) -> None:
        for name in PCI_PROCESSORS:
            _step(
                f"hubble lab exec cde/cardholder-data-0 -- curl -s -o /dev/null -w '%{{http_code}}' https://{name}",
                "expect: 200",
            )
            got = _curl(chd["netns"], f"https://{name}")
            expect(got, got == "200", f"cardholder-data -> {name}")
        _step(
            f"hubble lab exec cde/cardholder-data-0 -- curl -m 3 http://{PCI_METRICS}/metrics", note_metrics
        )
        return_code = _curl(chd["netns"], f"http://{PCI_METRICS}/metrics")
        expect(return_code, return_code in ("200", "404"), "cardholder-data -> the metrics endpoint")

    typer.echo("# 1. audit mode first: nothing is dropped, what enforcement would drop is AUDIT")
    _step("hubble lab audit enable --namespace cde")
    _request("audit", namespace="cde", enabled=True)
    try:
        traffic("expect: an HTTP answer (audit mode lets it through)")
        time.sleep(0.5)
        _observe(relay, "--namespace", "cde", "--verdict", "AUDIT", "--last", "10")
        audited = _flows(relay, "--namespace", "cde", "--verdict", "AUDIT", "--last", "500")
        targets = {
            (f.get("destination_names") or [f.get("IP", {}).get("destination", "")])[0] for f in audited
        }
        allowed = set(PCI_PROCESSORS) | {PCI_METRICS}
        if PCI_METRICS not in targets:
            failures.append("audit mode did not show the metrics endpoint")
        if not targets <= allowed:
            failures.append(f"audit mode shows other destinations: {sorted(targets - allowed)}")
        typer.echo("\n# 2. the forgotten metrics endpoint is added explicitly")
        _step(f"hubble lab policy apply {metrics_file.relative_to(REPO_ROOT)}")
        _request("policy-apply", text=metrics_file.read_text(), filename=metrics_file.name)
    finally:
        typer.echo("\n# 3. enforcement")
        _step("hubble lab audit disable --namespace cde")
        _request("audit", namespace="cde", enabled=False)
    traffic("expect: an HTTP answer (chd-egress-metrics)")
    _step(f"hubble lab exec cde/cardholder-data-0 -- curl -m 3 -k https://{PCI_ELSEWHERE}", "expect: timeout")
    got = _curl(chd["netns"], f"https://{PCI_ELSEWHERE}", "-k")
    expect(got, got == "timeout", "cardholder-data -> example.com's address")
    _step(
        "hubble lab exec cde/cardholder-data-0 -- curl -m 3 https://example.com",
        "expect: no answer (DNS refused)",
    )
    got = _curl(chd["netns"], "https://example.com")
    expect(got, got != "200", "cardholder-data -> https://example.com")
    time.sleep(0.5)
    typer.echo("\n# 4. the evidence")
    _step("hubble observe --namespace cde --type drop -o json --last 3")
    drops = _flows(relay, "--namespace", "cde", "--type", "drop", "--last", "500")
    for flow in drops[-3:]:
        typer.echo(json.dumps({"flow": flow}))
    if not any(
        f.get("drop_reason_desc") == "POLICY_DENIED" and f.get("IP", {}).get("destination") == PCI_ELSEWHERE
        for f in drops
    ):
        failures.append(f"no Policy denied drop of the connection to {PCI_ELSEWHERE}")
    rows = _fqdn_cache("json")
    learned = {r["fqdn"].rstrip(".") for r in rows if r.get("pod", "").startswith("cde/")}
    if not set(PCI_PROCESSORS) <= learned:
        failures.append(f"the FQDN cache lacks {sorted(set(PCI_PROCESSORS) - learned)}")
    if failures:
        raise _fail("verify failed: " + "; ".join(failures))
    typer.echo(
        "\nverified: audit mode showed only the processor and the forgotten metrics endpoint; after adding it "
        "and enforcing, cardholder-data reaches *.cardprocessor.com and the metrics endpoint only "
        "(drops and the FQDN cache are the evidence)"
    )


def main() -> None:
    """``python -m hubblepy.cli.lab ...``: the lab commands on their own (same as ``hubble lab ...``)."""
    lab_app(prog_name="hubble lab")


if __name__ == "__main__":
    main()
