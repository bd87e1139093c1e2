"""What the review's fixes added to the core, against oracles: OpenELB's size arithmetic,
the covering query, the NIC names no speaker answers on, leading-zero prefixes, and
the chart's schema listing every rule."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.addresses import IntervalIndex, Span, as_openelb_reads, openelb_size, parse_cidr
from app.core.interfaces import (
    NicName,
    never_answering,
    parse_interface,
)
from app.core.rules import NOT_OVERRIDABLE, RULE_IDS, RULES
from tests.conftest import ROOT

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def go_int64(value: int) -> int:
    """Two's complement wrap, written the other way round from the code under test."""
    return (value + (1 << 63)) % (1 << 64) - (1 << 63)


@pytest.mark.parametrize(
    ("address", "size"),
    [
        ("10.0.0.0/8", 1 << 24),
        ("0.0.0.0/0", 1 << 32),
        ("fd00::/66", 1 << 62),
        ("fd00::/65", INT64_MIN),
        ("fd00::/64", 0),
        ("::/0", 0),
    ],
)
def test_openelb_size_of_a_cidr_is_go_1_shifted_in_an_int(address: str, size: int) -> None:
    assert openelb_size(parse_cidr(address)) == size


@given(st.integers(0, 1 << 127), st.integers(0, 1 << 127))
def test_openelb_size_of_a_range_is_int64_of_the_difference_plus_one(a: int, b: int) -> None:
    first, last = sorted((a, b))
    got = openelb_size(Span(first + (1 << 32), last + (1 << 32)))
    assert got == go_int64(go_int64(last - first) + 1)
    assert (got == last - first + 1) == (last - first < INT64_MAX)


SPANS = st.tuples(st.integers(0, 60), st.integers(0, 12)).map(lambda p: Span(p[0], p[0] + p[1]))


@settings(max_examples=300)
@given(st.lists(SPANS, max_size=8), SPANS)
def test_covering_is_every_item_holding_the_whole_span(spans: list[Span], query: Span) -> None:
    index = IntervalIndex((s, i) for i, s in enumerate(spans))
    want = {i for i, s in enumerate(spans) if s.first <= query.first and query.last <= s.last}
    assert set(index.covering(query)) == want
    assert len(index.covering(query)) == len(want)


def test_never_answering_names_the_loopback_and_the_virtual_devices() -> None:
    assert never_answering("lo") == "is the loopback device"
    assert never_answering("veth12ab") == (
        "is a virtual device (veth*) of kube-proxy, the CNI or containers"
    )
    assert never_answering("eth0") is None and never_answering("local0") is None


def test_a_parsed_nic_name_carries_its_problems() -> None:
    spec = parse_interface("kube-ipvs0")
    assert isinstance(spec, NicName) and spec.problem is None and spec.never_answers
    assert spec == NicName("kube-ipvs0")  # derived fields do not take part in equality
    bad = parse_interface("x" * 80)  # longer than the parse cache keeps
    assert isinstance(bad, NicName) and bad.problem and "15 bytes" in bad.problem


@pytest.mark.parametrize(
    ("text", "reads"),
    [
        ("172.16.237.0/024", "172.16.237.0/24"),
        ("10.0.0.0/0008", "10.0.0.0/8"),
        ("2001:db8::/064", "2001:db8::/64"),
        ("::ffff:10.0.0.0/0120", "10.0.0.0/24"),
        ("10.0.0.0/24", None),
        ("10.0.0.0/0x8", None),
        ("010.0.0.0/024", None),  # Go refuses the leading-zero octet whatever the prefix
        (" 10.0.0.0/024", None),
    ],
)
def test_a_leading_zero_prefix_is_read_as_go_reads_it(text: str, reads: str | None) -> None:
    assert as_openelb_reads(text) == reads


def test_the_charts_schema_names_every_rule_and_which_only_warn() -> None:
    schema = json.loads((ROOT / "charts" / "eip-guard" / "values.schema.json").read_text())
    rules = schema["properties"]["policy"]["properties"]["rules"]
    assert set(rules["propertyNames"]["enum"]) == RULE_IDS
    warn_only = {r.id for r in RULES if r.warns_only}
    assert set(rules["properties"]) == warn_only
    for rule in warn_only:
        assert rules["properties"][rule]["enum"] == ["warn", "off"]


def test_what_openelbs_webhook_refuses_is_not_overridable() -> None:
    assert {"address-overlap", "address-immutable", "default-eip-unique", "spec-schema"} == (
        NOT_OVERRIDABLE
    )
