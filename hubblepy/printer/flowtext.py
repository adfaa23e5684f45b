"""The building blocks shared by compact, dict and table output (upstream hubble 1.19's printer).

`FlowText` turns the parts of one canonical flow dict into printed text: host strings, identities,
TYPE, VERDICT and SUMMARY. Colour codes are added here when colours are on (section 11); the
terminal-safety escaping happens later, on whole lines.
"""

from __future__ import annotations

from .escape import go_path_join
from .tables import (
    AUTH_TYPE_NAMES,
    DEBUG_CAPTURE_POINT_NAMES,
    DROP_REASON_BY_CODE,
    L7_TYPE_LOWER,
    POLICY_MATCH_TEXT,
    RESERVED_IDENTITY_NAMES,
    SOCK_XLATE_TEXT,
    TRACE_POINT_BY_SUBTYPE,
    TRAFFIC_DIRECTION_NAMES,
    VERDICT_NAMES,
)

CYAN = "\x1b[36m"
YELLOW = "\x1b[33m"
MAGENTA = "\x1b[35m"
GREEN = "\x1b[32m"
RED = "\x1b[31m"
RESET = "\x1b[0m"

# Cilium monitor message types (CiliumEventType.type).
EVENT_DROP = 1
EVENT_CAPTURE = 3
EVENT_TRACE = 4
EVENT_POLICY_VERDICT = 5
EVENT_TRACE_SOCK = 7

_ALLOWED_VERDICTS = frozenset(("FORWARDED", "REDIRECTED"))
_DENIED_VERDICTS = frozenset(("DROPPED", "ERROR"))
_IDENTITY_CACHE_LIMIT = 65536


def _policy_list(policies: list[dict] | None) -> str:
    """`name (Kind), ...` for the policies that have both a name and a kind."""
    if not policies:
        return ""
    names = [f"{p['name']} ({p['kind']})" for p in policies if p.get("name") and p.get("kind")]
    return ", ".join(names)


class FlowText:
    """Computes the printed pieces of a flow for one set of options."""

    def __init__(self, colour: bool, numeric: bool, policy_names: bool) -> None:
        self.colour = colour
        self.numeric = numeric
        self.policy_names = policy_names
        self._host_on = CYAN if colour else ""
        self._port_on = YELLOW if colour else ""
        self._off = RESET if colour else ""
        magenta = MAGENTA if colour else ""
        self._identities: dict[int, str] = {
            number: f"{magenta}({name}){self._off}" for number, name in RESERVED_IDENTITY_NAMES.items()
        }
        self._magenta = magenta
        # Verdict text for everything but policy-verdict events, colour included.
        self._verdicts: dict[object, str] = {}
        for key, name in VERDICT_NAMES.items():
            self._verdicts[key] = self._colour_verdict(name, name)
        self._auth: dict[object, str] = {}
        for key, name in AUTH_TYPE_NAMES.items():
            if name != "DISABLED":
                on = (RED if name == "TEST_ALWAYS_FAIL" else GREEN) if colour else ""
                self._auth[key] = f"; Auth: {on}{name}{self._off}"

    # ----------------------------------------------------------------- hosts
    def _host(
        self,
        ip: str,
        port: int,
        endpoint: dict | None,
        service: dict | None,
        names: list[str] | None,
    ) -> str:
        host = ip
        if not self.numeric:
            if endpoint:
                namespace = endpoint.get("namespace", "")
                pod = endpoint.get("pod_name", "")
            else:
                namespace = pod = ""
            if service is not None:
                namespace = service.get("namespace", "")
                name = pod or service.get("name", "")
            else:
                name = pod
            if name:
                # Go's path.Join(namespace, name); the fast path covers names without `/` or a leading dot.
                if "/" in name or name[0] == "." or "/" in namespace or namespace[:1] == ".":
                    host = go_path_join(namespace, name)
                elif namespace:
                    host = f"{namespace}/{name}"
                else:
                    host = name
            elif names:
                host = ",".join(names)
        if port:
            if ":" in host:
                host = f"[{host}]"
            if self.colour:
                return f"{CYAN}{host}:{YELLOW}{port}{RESET}{RESET}"
            return f"{host}:{port}"
        if self.colour:
            return f"{CYAN}{host}{RESET}"
        return host

    def hosts(self, flow: dict) -> tuple[str, str]:
        """(source, destination) host strings (section 5.2)."""
        ip = flow.get("IP")
        if ip is None:
            ethernet = flow.get("ethernet")
            if ethernet is None:
                return "", ""
            on, off = self._host_on, self._off
            return (
                f"{on}{ethernet.get('source', '')}{off}",
                f"{on}{ethernet.get('destination', '')}{off}",
            )
        source_port = destination_port = 0
        layer4 = flow.get("l4")
        if layer4:
            ports = layer4.get("TCP") or layer4.get("UDP") or layer4.get("SCTP")
            if ports:
                source_port = ports.get("source_port", 0)
                destination_port = ports.get("destination_port", 0)
        host = self._host
        return (
            host(
                ip.get("source", ""),
                source_port,
                flow.get("source"),
                flow.get("source_service"),
                flow.get("source_names"),
            ),
            host(
                ip.get("destination", ""),
                destination_port,
                flow.get("destination"),
                flow.get("destination_service"),
                flow.get("destination_names"),
            ),
        )

    # ------------------------------------------------------------ identities
    def identity(self, endpoint: dict | None) -> str:
        """`(name)` for reserved identities, `(ID:n)` otherwise (section 5.3)."""
        number = endpoint.get("identity", 0) if endpoint else 0
        text = self._identities.get(number)
        if text is None:
            text = f"{self._magenta}(ID:{number}){self._off}"
            if len(self._identities) < _IDENTITY_CACHE_LIMIT:
                self._identities[number] = text
        return text

    # ------------------------------------------------------------------ TYPE
    @staticmethod
    def flow_type(flow: dict) -> str:
        """The TYPE column (section 5.4)."""
        l7 = flow.get("l7")
        if l7 is not None:
            kind = l7.get("type")
            l7_type = L7_TYPE_LOWER.get(kind) if kind is not None else "unknown_l7_type"
            if l7_type is None:
                l7_type = str(kind).lower()
            if "http" in l7:
                return f"http-{l7_type}"
            if "dns" in l7:
                return f"dns-{l7_type} {l7['dns'].get('observation_source', '')}"
            if "kafka" in l7:
                return f"kafka-{l7_type}"
            return f"l7-{l7_type}"
        event = flow.get("event_type")
        if event is None:
            return "UNKNOWN"
        kind = event.get("type", 0)
        if kind == EVENT_TRACE:
            return TRACE_POINT_BY_SUBTYPE[event.get("sub_type", 0) & 0xFF]
        if kind == EVENT_DROP:
            return DROP_REASON_BY_CODE[event.get("sub_type", 0) & 0xFF]
        if kind == EVENT_POLICY_VERDICT:
            match = POLICY_MATCH_TEXT.get(flow.get("policy_match_type", 0), "unknown")
            direction = flow.get("traffic_direction")
            if direction is None:
                direction_text = "TRAFFIC_DIRECTION_UNKNOWN"
            else:
                direction_text = TRAFFIC_DIRECTION_NAMES.get(direction) or str(direction)
            return f"policy-verdict:{match} {direction_text}"
        if kind == EVENT_CAPTURE:
            point = flow.get("debug_capture_point")
            if point is None:
                return "DBG_CAPTURE_POINT_UNKNOWN"
            return DEBUG_CAPTURE_POINT_NAMES.get(point) or str(point)
        if kind == EVENT_TRACE_SOCK:
            point = flow.get("sock_xlate_point")
            if point is None:
                return "SOCK_XLATE_POINT_UNKNOWN"
            return SOCK_XLATE_TEXT.get(point) or str(point)
        return "UNKNOWN"

    # --------------------------------------------------------------- VERDICT
    def _colour_verdict(self, name: str, text: str) -> str:
        if not self.colour:
            return text
        if name in _ALLOWED_VERDICTS:
            return f"{GREEN}{text}{RESET}"
        if name in _DENIED_VERDICTS:
            return f"{RED}{text}{RESET}"
        if name in ("AUDIT", "TRACED", "TRANSLATED"):
            return f"{YELLOW}{text}{RESET}"
        return text

    def verdict(self, flow: dict) -> str:
        """The VERDICT column (section 5.5)."""
        verdict = flow.get("verdict", "VERDICT_UNKNOWN")
        event = flow.get("event_type")
        if event is None or event.get("type") != EVENT_POLICY_VERDICT:
            text = self._verdicts.get(verdict)
            return text if text is not None else str(verdict)
        name = VERDICT_NAMES.get(verdict)
        if name in _ALLOWED_VERDICTS:
            text = "ALLOWED"
            if self.policy_names:
                text += self._policies_by(flow, "egress_allowed_by", "ingress_allowed_by")
        elif name in _DENIED_VERDICTS:
            text = "DENIED"
            if self.policy_names:
                text += self._policies_by(flow, "egress_denied_by", "ingress_denied_by")
        elif name == "AUDIT":
            text = "AUDITED"
        else:
            text = self._verdicts.get(verdict)
            return text if text is not None else str(verdict)
        return self._colour_verdict(name, text)

    @staticmethod
    def _policies_by(flow: dict, egress_key: str, ingress_key: str) -> str:
        direction = TRAFFIC_DIRECTION_NAMES.get(flow.get("traffic_direction", 0))
        if direction == "EGRESS":
            listed = _policy_list(flow.get(egress_key))
        elif direction == "INGRESS":
            listed = _policy_list(flow.get(ingress_key))
        else:
            return ""
        return f" BY {listed}" if listed else ""

    # --------------------------------------------------------------- SUMMARY
    def summary(self, flow: dict) -> str:
        """The SUMMARY column (section 5.6), without compact's parentheses."""
        text = flow.get("Summary", "")
        trace = flow.get("ip_trace_id")
        if trace is not None:
            trace_id = int(trace.get("trace_id", 0))
            if trace_id > 0:
                text = f"IP Trace ID: {trace_id}; {text}"
        auth = flow.get("auth_type")
        if auth is not None:
            suffix = self._auth.get(auth)
            if suffix is None and auth != "DISABLED" and auth != 0:
                on = GREEN if self.colour else ""
                suffix = f"; Auth: {on}{auth}{self._off}"
            if suffix:
                text += suffix
        return text
