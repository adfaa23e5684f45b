"""The eBPF datapath: tc programs on pod veths, their maps, and the typed Python API over them."""

from hubblepy.datapath import proxy_routing
from hubblepy.datapath.datapath import (
    Datapath,
    MetricCount,
    PolicyDiff,
    PolicyEntry,
    check_environment,
    port_blocks,
)
from hubblepy.datapath.errors import DatapathError, DatapathUnavailable, VerifierRejected
from hubblepy.datapath.layout import (
    DIR_EGRESS,
    DIR_INGRESS,
    EP_AUDIT,
    EP_ENFORCE_EGRESS,
    EP_ENFORCE_INGRESS,
)

__all__ = [
    "DIR_EGRESS",
    "DIR_INGRESS",
    "EP_AUDIT",
    "EP_ENFORCE_EGRESS",
    "EP_ENFORCE_INGRESS",
    "Datapath",
    "DatapathError",
    "DatapathUnavailable",
    "MetricCount",
    "PolicyDiff",
    "PolicyEntry",
    "VerifierRejected",
    "check_environment",
    "port_blocks",
    "proxy_routing",
]
