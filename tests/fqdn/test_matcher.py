"""matchName / matchPattern with Cilium's semantics."""

from __future__ import annotations

import pytest

from hubblepy.fqdn.matcher import FQDNSelector, display_name, normalize_name


def test_names_are_lower_case_with_one_trailing_dot():
    assert normalize_name("API.Stripe.COM") == "api.stripe.com."
    assert normalize_name("api.stripe.com.") == "api.stripe.com."
    assert display_name("Api.Stripe.com.") == "api.stripe.com"


@pytest.mark.parametrize(
    ("name", "query", "expected"),
    [
        ("api.stripe.com", "api.stripe.com.", True),
        ("API.stripe.com.", "api.stripe.com.", True),
        ("api.stripe.com", "x.api.stripe.com.", False),
        ("api.stripe.com", "api.stripe.co.", False),
    ],
)
def test_match_name_is_exact(name, query, expected):
    assert FQDNSelector.name(name).matches(query) is expected


@pytest.mark.parametrize(
    ("pattern", "query", "expected"),
    [
        ("*", "anything.example.", True),
        ("*", "a.b.c.d.", True),
        ("*.stripe.com", "api.stripe.com.", True),
        ("*.Stripe.com.", "eu-1.stripe.com.", True),
        ("*.stripe.com", "stripe.com.", False),
        ("*.stripe.com", "a.b.stripe.com.", False),  # one label only
        ("*.stripe.com", "api.stripe.com.evil.", False),
        ("*.stripe.com", "apixstripe.com.", False),  # the dot is literal
        ("sub*.cilium.io", "sub1.cilium.io.", True),
        ("sub*.cilium.io", "sub.cilium.io.", True),
        ("sub*.cilium.io", "xsub1.cilium.io.", False),
        ("*.cardprocessor.com", "eu.cardprocessor.com.", True),
        ("*.cardprocessor.com", "cardprocessor.com.", False),
    ],
)
def test_match_pattern_star_is_one_label(pattern, query, expected):
    assert FQDNSelector.pattern(pattern).matches(query) is expected


def test_selector_from_policy_item_and_texts():
    sel = FQDNSelector.from_dict({"matchPattern": "*.Stripe.com"})
    assert sel == FQDNSelector.pattern("*.stripe.com.")
    assert sel.label() == "fqdn:*.stripe.com"
    assert str(FQDNSelector.from_dict({"matchName": "api.stripe.com."})) == "matchName: api.stripe.com"
