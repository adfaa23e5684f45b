"""``-P``/``--port-forward``: reach the relay through ``kubectl port-forward``, as upstream does.

Upstream forwards a local port to port 80 of the ``hubble-relay`` service in ``--kube-namespace``
with the Kubernetes client; we run ``kubectl port-forward`` with the same context, namespace and
kubeconfig, wait for its "Forwarding from" line (which also tells the port when
``--port-forward-port 0`` asked for a free one) and connect to that address. Without ``kubectl`` or
a kubeconfig the command ends with one line saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

RELAY_SERVICE = "svc/hubble-relay"
RELAY_PORT = 80


class PortForwardError(Exception):
    """Port forwarding could not start (one line)."""


@dataclass
class Forwarder:
    """A running ``kubectl port-forward`` and the local address it listens on."""

    process: subprocess.Popen
    address: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def kubeconfig_path(conn: Any, env: Any = None) -> str:
    """The kubeconfig kubectl would read: --kubeconfig, else $KUBECONFIG, else ~/.kube/config."""
    env = os.environ if env is None else env
    if conn.kubeconfig:
        return conn.kubeconfig
    from_env = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if from_env:
        return next((p for p in from_env if os.path.exists(p)), from_env[0])
    return os.path.join(os.path.expanduser("~"), ".kube", "config")


def kubectl_command(conn: Any, kubectl: str, kubeconfig: str) -> list[str]:
    """The ``kubectl port-forward`` command line for ``conn``."""
    command = [kubectl, "port-forward", "--address", "127.0.0.1", "--namespace", conn.kube_namespace]
    command += ["--kubeconfig", kubeconfig]
    if conn.kube_context:
        command += ["--context", conn.kube_context]
    command += [RELAY_SERVICE, f"{conn.port_forward_port}:{RELAY_PORT}"]
    return command


def start_port_forward(conn: Any) -> Forwarder:
    """Start ``kubectl port-forward`` and return once it forwards (or raise with its reason)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise PortForwardError("--port-forward needs kubectl, which is not in PATH")
    kubeconfig = kubeconfig_path(conn)
    if not os.path.isfile(kubeconfig):
        raise PortForwardError(
            f"--port-forward needs a kubeconfig: {kubeconfig} does not exist (set --kubeconfig or KUBECONFIG)"
        )
    process = subprocess.Popen(
        kubectl_command(conn, kubectl, kubeconfig),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    found: list[str] = []
    errors: deque[str] = deque(maxlen=5)
    ready = threading.Event()

    def read_out() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if not found and line.startswith("Forwarding from 127.0.0.1:"):
                found.append(line.split()[2])
                ready.set()
        ready.set()

    def read_err() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if line.strip():
                errors.append(line.strip())

    threading.Thread(target=read_out, daemon=True).start()
    err_reader = threading.Thread(target=read_err, daemon=True)
    err_reader.start()
    ready.wait(max(conn.timeout_s, 1.0))
    if found:
        return Forwarder(process, found[0])
    forwarder = Forwarder(process, "")
    forwarder.stop()
    err_reader.join(1)
    reason = errors[-1] if errors else "it did not start forwarding in time"
    raise PortForwardError(f"failed to port-forward to {conn.kube_namespace}/{RELAY_SERVICE}: {reason}")
