"""`--metrics LIST` parsing: cilium-agent's --hubble-metrics syntax and start-up errors."""

from __future__ import annotations

import pytest

from hubblepy.metrics import MetricsConfigError, parse_metrics


def specs(text: str) -> list[str]:
    return [str(s) for s in parse_metrics(text)]


def test_space_and_comma_separated_names() -> None:
    assert specs("drop,flow,policy") == ["drop", "flow", "policy"]
    assert specs("  dns  tcp\tport-distribution ") == ["dns", "tcp", "port-distribution"]
    assert specs("") == []


def test_options_keep_upstream_spelling_and_values() -> None:
    (dns, http) = parse_metrics("dns:query;IGNOREaaaa http:destinationContext=workload-name|IP")
    assert dns.options == {"query": "", "ignoreAAAA": ""}
    assert http.options == {"destinationContext": "workload-name|ip"}


def test_labels_context_commas_continue_the_label_list() -> None:
    (http, flow) = parse_metrics(
        "httpV2:exemplars=true;labelsContext=source_ip,source_namespace,traffic_direction,flow"
    )
    assert http.options["labelsContext"] == "source_ip,source_namespace,traffic_direction"
    assert http.options["exemplars"] == "true"
    assert flow.name == "flow"
    (drop,) = parse_metrics(r"drop:labelsContext=source_pod\,destination_pod")
    assert drop.options["labelsContext"] == "source_pod,destination_pod"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("drops", "unknown metric 'drops'"),
        ("flow:sourceContxt=pod", "metric flow: unknown option 'sourceContxt'"),
        ("flow:sourceContext=pod|podname", "unknown sourceContext 'podname'"),
        ("tcp:labelsContext=source_pod,nodes", "invalid labelsContext value 'nodes'"),
        ("http httpV2", "http and httpV2 cannot be enabled together"),
        ("drop drop", "drop is given twice"),
        ("httpV2:exemplars=yes", "exemplars takes true or false"),
        ("dns:query=x", "option query takes no value"),
        ("drop:any-drop", "metric drop: unknown option 'any-drop'"),
    ],
)
def test_unknown_names_are_errors(text: str, message: str) -> None:
    with pytest.raises(MetricsConfigError, match=message.replace("|", r"\|")):
        parse_metrics(text)
