"""`hubble observe --help`: every flag in upstream's groups, from :mod:`hubblepy.cli.observe_flags`."""

from __future__ import annotations

from hubblepy.cli.help import render_help
from hubblepy.cli.observe_flags import OBSERVE_GROUPS

DESCRIPTION = """Observe flows and events of a Hubble server, a relay, or a file of saved flows.

A flow is shown when it matches every filter flag given, and for each flag at least one of its values
(repeat a flag for OR, combine flags for AND). --not before a filter flag hides the flows that match
it instead."""

EXAMPLES = """  hubble observe --namespace payments --verdict DROPPED
  hubble observe --since 5m --protocol http --http-status 5+ -o json
  hubble observe --not --namespace kube-system --follow
  hubble observe -o jsonpb --last 1000 > flows.json; hubble observe --input-file flows.json --to-port 443
  hubble observe --input-file flows.json --jq '.flow.source.pod_name'"""

COMMANDS = (
    ("agent-events", "Observe the agent's events (policy updates, endpoints added or removed...)"),
    ("debug-events", "Observe the datapath's debug events"),
    ("flows", "Observe flows (the same as `hubble observe`)"),
)


def observe_help() -> str:
    """The help text of `hubble observe`."""
    from hubblepy.cli.filter_flags import FILTER_FLAG_NAMES
    from hubblepy.cli.observe_flags import observe_flag_specs

    return render_help(
        DESCRIPTION,
        ["hubble observe [flags]", "hubble observe [command]"],
        observe_flag_specs(FILTER_FLAG_NAMES),
        OBSERVE_GROUPS,
        commands=COMMANDS,
        examples=EXAMPLES,
        footer='Use "hubble observe [command] --help" for more information about a command.',
    )
