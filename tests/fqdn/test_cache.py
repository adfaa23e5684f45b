"""The FQDN cache: TTL, min-ttl, rotating answers, GC with tracked connections."""

from __future__ import annotations

import pytest

from hubblepy.fqdn.cache import SOURCE_CONNECTION, SOURCE_LOOKUP, FQDNCache


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make(min_ttl: int = 0) -> tuple[FQDNCache, Clock]:
    clock = Clock()
    cache = FQDNCache(min_ttl=min_ttl, clock=clock)
    cache.set_endpoint(7, ["10.0.0.7"])
    cache.set_endpoint(8, ["10.0.0.8"])
    return cache, clock


def test_answer_records_ips_with_ttl_and_expiry_per_endpoint():
    cache, clock = make()
    update = cache.update("10.0.0.7", "API.stripe.com", ["192.0.2.1", "192.0.2.2"], 30)
    assert update.name == "api.stripe.com." and update.new_ips == ["192.0.2.1", "192.0.2.2"]
    (first, second) = cache.entries()
    assert (first.ep_id, first.name, first.ip, first.ttl) == (7, "api.stripe.com.", "192.0.2.1", 30)
    assert first.expires == clock.now + 30 and first.source == SOURCE_LOOKUP
    assert cache.names_for(7, "192.0.2.2") == ["api.stripe.com"]
    assert cache.names_for("10.0.0.7", "192.0.2.2") == ["api.stripe.com"]
    assert cache.names_for(8, "192.0.2.2") == []  # endpoint 8 never asked


def test_min_ttl_raises_short_ttls():
    cache, _ = make(min_ttl=3600)
    cache.update(7, "a.example", ["192.0.2.1"], 5)
    assert cache.entries()[0].ttl == 3600


def test_rotating_answers_accumulate_until_each_expires():
    cache, clock = make()
    cache.update(7, "eu.cardprocessor.com", ["198.51.100.1"], 10)
    clock.now += 6
    update = cache.update(7, "eu.cardprocessor.com", ["198.51.100.2"], 10)
    assert update.new_ips == ["198.51.100.2"]
    assert cache.ips_of("eu.cardprocessor.com.") == {"198.51.100.1", "198.51.100.2"}
    clock.now += 5  # the first answer's IP expired, the second not yet
    assert cache.gc() == [("eu.cardprocessor.com.", "198.51.100.1")]
    assert cache.ips_of("eu.cardprocessor.com.") == {"198.51.100.2"}


def test_a_pair_leaves_the_global_view_only_when_no_endpoint_holds_it():
    cache, clock = make()
    cache.update(7, "a.example", ["192.0.2.1"], 10)
    clock.now += 5
    second = cache.update(8, "a.example", ["192.0.2.1"], 10)
    assert second.new_ips == []  # already selected through endpoint 7
    clock.now += 6
    assert cache.gc() == []  # endpoint 8's entry still lives
    assert cache.names_for(7, "192.0.2.1") == [] and cache.names_for(8, "192.0.2.1") == ["a.example"]
    clock.now += 5
    assert cache.gc() == [("a.example.", "192.0.2.1")]


def test_expired_ip_in_use_by_a_connection_stays_as_a_connection_entry():
    cache, clock = make()
    cache.update(7, "a.example", ["192.0.2.1", "192.0.2.2"], 10)
    clock.now += 11
    live = {(7, "192.0.2.1")}
    assert cache.gc(lambda ep, ip: (ep, ip) in live) == [("a.example.", "192.0.2.2")]
    (entry,) = cache.entries()
    assert entry.ip == "192.0.2.1" and entry.source == SOURCE_CONNECTION
    assert cache.next_expiry() is None
    live.clear()
    assert cache.gc(lambda ep, ip: (ep, ip) in live) == [("a.example.", "192.0.2.1")]
    assert len(cache) == 0


def test_bad_input_changes_nothing():
    cache, _ = make()
    with pytest.raises(ValueError, match="unknown endpoint"):
        cache.update("10.9.9.9", "a.example", ["192.0.2.1"], 10)
    with pytest.raises(ValueError):
        cache.update(7, "a.example", ["192.0.2.1", "not-an-ip"], 10)
    with pytest.raises(ValueError, match="bad TTL"):
        cache.update(7, "a.example", ["192.0.2.1"], -1)
    assert len(cache) == 0 and cache.names() == []


def test_removing_an_endpoint_returns_the_pairs_it_alone_held():
    cache, _ = make()
    cache.update(7, "a.example", ["192.0.2.1"], 10)
    cache.update(8, "a.example", ["192.0.2.1", "192.0.2.3"], 10)
    assert cache.remove_endpoint(8) == [("a.example.", "192.0.2.3")]
    assert cache.endpoint_of("10.0.0.8") is None
