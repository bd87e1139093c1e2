"""The speed-ups the benchmark led to in app.core must not change a single answer.

`parse_ip` has fast paths (dotted quads, IPv6 hex groups, hostnames) and `parse_cidr`
computes the network by arithmetic; they are compared here with the standard library's
reading of the same text, or with the code they replaced, kept here as the oracle.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.addresses import (
    V6_OFFSET,
    AddressError,
    IntervalIndex,
    PointIndex,
    Span,
    ip_key,
    is_loopback_or_link_local,
    key_or_none,
    parse_cidr,
    parse_eip_address,
    parse_ip,
    parse_ip_or_cidr,
    parse_key,
    parse_key_with_prefix,
    parse_range,
    special_kind_of_key,
)
from app.core.eips import ALLOW_RULES_ANNOTATION, DEFAULT_EIP_ANNOTATION, Eip, own, shared
from app.core.facts import FactKind
from app.core.interfaces import parse_interface
from app.core.inventory import Inventory, Options, assemble, build, extract
from app.core.verdict import WARNING_LIMIT, clean_warning
from app.sources.errors import InputError
from app.sources.files import _json_document
from app.sources.gc_pause import gc_paused

OCTETS = st.one_of(
    st.integers(0, 300).map(str),
    st.sampled_from(["00", "01", "007", "0x1", "", " 1", "1 ", "١", "+1", "-1", "2555"]),
)
QUADS = st.lists(OCTETS, min_size=3, max_size=5).map(".".join)


def reference_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """What the full parser accepts: the stdlib's reading, minus what eip-guard refuses."""
    if text.strip() != text or any(c.isspace() for c in text) or "%" in text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return None
    return ip


def attempt(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return parse_ip(text)
    except AddressError:
        return None


@given(QUADS)
def test_dotted_quads_read_as_the_stdlib_reads_them(text: str) -> None:
    assert attempt(text) == reference_ip(text)


@given(st.from_regex(r"\A[0-9.]{7,15}\Z", fullmatch=True))
def test_digit_and_dot_strings_read_as_the_stdlib_reads_them(text: str) -> None:
    assert attempt(text) == reference_ip(text)


@given(st.ip_addresses(), st.integers(0, 130))
def test_cidr_network_matches_ip_network(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int
) -> None:
    text = f"{ip}/{prefix}"
    mapped = isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None
    if prefix > ip.max_prefixlen or mapped:
        try:
            parse_cidr(text)
        except AddressError:
            return
        raise AssertionError(f"{text} should be refused")
    net = ipaddress.ip_network(text, strict=False)
    first = int(net.network_address) + (V6_OFFSET if net.version == 6 else 0)
    assert parse_cidr(text) == Span(first, first + net.num_addresses - 1, prefix)


@given(st.text(max_size=200))
def test_clean_warning_matches_the_character_loop(text: str) -> None:
    expected = "".join(c if c.isprintable() else " " for c in text)
    if len(expected) > WARNING_LIMIT:
        expected = expected[: WARNING_LIMIT - 3].rstrip() + "..."
    assert clean_warning(text) == expected


def reference_special_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """The ipaddress properties special_kind_of_key answered from before its fast paths."""
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.version == 4 and int(ip) == 0xFFFFFFFF:
        return "the broadcast address"
    return None


EDGES = [0, 1, 0x7EFFFFFF, 0x7F000000, 0x7FFFFFFF, 0x80000000, 0xA9FDFFFF, 0xA9FE0000]
EDGES += [0xA9FEFFFF, 0xA9FF0000, 0xDFFFFFFF, 0xE0000000, 0xEFFFFFFF, 0xF0000000]
EDGES += [0xFFFFFFFE, 0xFFFFFFFF]


@given(st.one_of(st.sampled_from(EDGES), st.integers(0, 2**32 - 1)))
def test_special_kind_of_ipv4_matches_the_ipaddress_properties(value: int) -> None:
    ip = ipaddress.IPv4Address(value)
    assert special_kind_of_key(ip_key(ip)) == reference_special_kind(ip)


# The edges of ::, ::1, ff00::/8 and fe80::/10: random addresses almost never land there.
EDGES6 = [0, 1, 2, 0xFF << 120, (0x100 << 120) - 1, (0xFE << 120) - 1]
EDGES6 += [0x3FA << 118, (0x3FB << 118) - 1, (0x3FA << 118) - 1, 0x3FB << 118, 2**128 - 1]


@given(
    st.one_of(
        st.ip_addresses(v=6),
        st.sampled_from(EDGES6).map(ipaddress.IPv6Address),
        st.tuples(st.sampled_from(EDGES6), st.integers(-3, 3))
        .map(lambda e: min(max(e[0] + e[1], 0), 2**128 - 1))
        .map(ipaddress.IPv6Address),
    )
)
def test_special_kind_of_ipv6_matches_the_ipaddress_properties(ip: ipaddress.IPv6Address) -> None:
    assert special_kind_of_key(ip_key(ip)) == reference_special_kind(ip)


@given(st.one_of(QUADS, st.ip_addresses().map(str), st.text(max_size=20)))
def test_parse_ip_or_cidr_of_a_plain_ip_is_the_span_of_parse_ip(text: str) -> None:
    try:
        expected: Span | None = Span.of_ip(parse_ip(text))
    except AddressError:
        expected = None
    try:
        got: Span | None = parse_ip_or_cidr(text) if "/" not in text else expected
    except AddressError:
        got = None
    assert got == expected


@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers()), max_size=40),
    st.integers(-1, 42),
    st.integers(-1, 42),
)
def test_point_index_answers_as_a_dict_of_lists(
    pairs: list[tuple[int, int]], key: int, other: int
) -> None:
    """The parallel-list PointIndex against the dict-of-tuples one it replaced."""
    by_key: dict[int, list[int]] = {}
    for k, item in pairs:
        by_key.setdefault(k, []).append(item)
    index = PointIndex(pairs)
    assert len(index) == len(by_key)
    assert index.at(key) == tuple(by_key.get(key, ()))
    lo, hi = min(key, other), max(key, other)
    expected = [(k, item) for k in sorted(by_key) if lo <= k <= hi for item in by_key[k]]
    assert list(index.within(Span(lo, hi))) == expected
    after = [k for k in sorted(by_key) if k >= key]
    assert index.next_at_or_after(key) == (after[0] if after else None)


@given(st.lists(st.tuples(st.integers(0, 40), st.integers()), max_size=40))
def test_point_index_of_columns_is_the_index_of_the_pairs(pairs: list[tuple[int, int]]) -> None:
    index = PointIndex(pairs)
    columns = PointIndex.of_columns([k for k, _ in pairs], [item for _, item in pairs])
    assert (columns._keys, columns._items, len(columns)) == (index._keys, index._items, len(index))


def test_node_subnet_names_are_what_the_rule_listed_per_request() -> None:
    """The precomputed list equals the one can-reach-unknown-subnet used to build per request."""
    from bench import synth  # noqa: PLC0415 (only this test needs it)

    inventory = build(synth.cluster(synth.Shape("two", nodes=250, eips=20, services=20)))
    index = inventory.spans[FactKind.NODE_SUBNET]
    for version in (4, 6):
        listed = sorted({str(f.span) for f in index.all() if f.span.version == version})
        assert inventory.node_subnet_names[version] == tuple(listed)
    assert inventory.node_subnet_names[4]  # the synthetic racks are known subnets


# The address parser before its IPv6 and hostname fast paths, kept as the oracle: the fast
# paths must accept exactly what it accepts, with the same value, and fail with its words.
_OLD_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_OLD_DOTTED_QUAD = re.compile(r"\.".join([_OLD_OCTET] * 4))


def old_parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    quad = _OLD_DOTTED_QUAD.fullmatch(text)
    if quad is not None:
        a, b, c, d = quad.groups()
        return ipaddress.IPv4Address(int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d))
    if text == "":
        raise AddressError("empty address")
    if text != text.strip() or any(c.isspace() for c in text):
        raise AddressError(f"{text!r} contains whitespace")
    if "%" in text:
        raise AddressError(f"{text!r} has a zone ID; zone IDs are not allowed")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        octets = text.split(".") if re.fullmatch(r"[0-9]+(\.[0-9]+){3}", text) else []
        if re.search(r"(^|\.)0[0-9]", text) and octets and max(map(int, octets)) <= 255:
            fixed = ".".join(str(int(octet)) for octet in octets)
            message = f"{text!r} has an octet with a leading zero; write {fixed}"
            raise AddressError(message) from None
        raise AddressError(f"{text!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        raise AddressError(f"{text!r} is an IPv4-mapped IPv6 address; write {ip.ipv4_mapped}")
    return ip


def old_parse_range(text: str) -> Span:
    if re.fullmatch(r"[^-]+-[^-]+", text, re.DOTALL) is None:
        raise AddressError(
            f"{text!r} is not a range: write one IP, a CIDR, or 'first-last' "
            "(two IPs joined by one '-')"
        )
    left, _, right = text.partition("-")
    first, last = old_parse_ip(left), old_parse_ip(right)
    if first.version != last.version:
        raise AddressError(f"{text!r} mixes IPv{first.version} and IPv{last.version}")
    if int(first) > int(last):
        raise AddressError(f"{text!r} is reversed: {first} comes after {last}")
    if (int(last) - int(first)) >> 63 & 1:  # OpenELB's GetSize: big.Int.Int64 is negative
        raise AddressError(
            f"{text!r} holds {int(last) - int(first) + 1} addresses: OpenELB counts last-first "
            "in a 64-bit integer, which comes out negative here, and refuses the range (keep "
            "it under 2^63 addresses)"
        )
    return Span(ip_key(first), ip_key(last))


def outcome(parse: Callable[[str], object], text: str) -> object:
    """The value, or the error's message: both must match the oracle's."""
    try:
        return parse(text)
    except AddressError as exc:
        return f"error: {exc}"


def _groups(ip: ipaddress.IPv6Address, upper: bool, pad: bool) -> str:
    groups = ip.exploded.split(":") if pad else [f"{int(g, 16):x}" for g in ip.exploded.split(":")]
    text = ":".join(groups)
    return text.upper() if upper else text


# Every way an address is written: dotted quads; IPv6 compressed, exploded, without "::",
# in upper case, with embedded IPv4, IPv4-mapped, with a zone; and near misses of each.
WRITTEN = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=6).map(lambda ip: ip.exploded),
    st.builds(_groups, st.ip_addresses(v=6), st.booleans(), st.booleans()),
    st.ip_addresses(v=6).map(lambda ip: str(ip).upper()),
    st.ip_addresses(v=4).map(lambda ip: f"::ffff:{ip}"),
    st.ip_addresses(v=4).map(lambda ip: f"64:ff9b::{ip}"),
    st.integers(0, 2**32 - 1).map(lambda v: str(ipaddress.IPv6Address(0xFFFF << 32 | v))),
    st.integers(0, 2**32 - 1).map(lambda v: f"::ffff:{v >> 16:x}:{v & 0xFFFF:x}"),
    st.tuples(st.ip_addresses(v=6), st.sampled_from(["%eth0", "%1", "%"])).map(
        lambda t: f"{t[0]}{t[1]}"
    ),
    st.tuples(st.ip_addresses(), st.sampled_from([":", "::", ":0", "0:", ".", "1", " "])).map(
        lambda t: f"{t[0]}{t[1]}"
    ),
    st.tuples(st.sampled_from([":", "::", "0:", "1", " "]), st.ip_addresses()).map(
        lambda t: f"{t[0]}{t[1]}"
    ),
)
SMALL_ALPHABET = st.text(alphabet="0123456789abcdefABCDEF:./% -x", max_size=45)
ADDRESS_TEXT = st.one_of(WRITTEN, SMALL_ALPHABET, QUADS)


@given(ADDRESS_TEXT)
def test_parse_ip_reads_as_the_old_parser(text: str) -> None:
    assert outcome(parse_ip, text) == outcome(old_parse_ip, text)


@given(ADDRESS_TEXT)
def test_parse_key_is_the_key_of_the_old_parser(text: str) -> None:
    assert outcome(parse_key, text) == outcome(lambda t: ip_key(old_parse_ip(t)), text)


@given(st.one_of(ADDRESS_TEXT, st.text(max_size=12), st.from_regex(r"[a-z0-9.-]{1,20}")))
def test_key_or_none_is_parse_key_without_the_exception(text: str) -> None:
    expected = outcome(parse_key, text)
    assert key_or_none(text) == (None if isinstance(expected, str) else expected)


@given(st.one_of(st.tuples(ADDRESS_TEXT, ADDRESS_TEXT).map("-".join), SMALL_ALPHABET))
def test_parse_range_reads_as_the_old_parser(text: str) -> None:
    assert outcome(parse_range, text) == outcome(old_parse_range, text)


@given(
    st.one_of(
        ADDRESS_TEXT, st.tuples(ADDRESS_TEXT, st.integers(0, 130)).map("{0[0]}/{0[1]}".format)
    )
)
def test_parse_key_with_prefix_is_the_old_address_and_cidr(text: str) -> None:
    def old(t: str) -> tuple[int, Span]:
        ip = old_parse_ip(t.partition("/")[0])
        return ip_key(ip), parse_cidr(t)

    assert outcome(parse_key_with_prefix, text) == outcome(old, text)


LOOPBACK_EDGES = [0x7F000000, 0x7EFFFFFF, 0x80000000, 0xA9FE0000, 0xA9FDFFFF, 0xA9FF0000]


@given(
    st.one_of(
        st.ip_addresses(),
        st.sampled_from(LOOPBACK_EDGES).map(ipaddress.IPv4Address),
        st.sampled_from([0, 1, 2, 0xFE80 << 112, (0xFEC0 << 112) - 1, 0xFEC0 << 112]).map(
            ipaddress.IPv6Address
        ),
    )
)
def test_loopback_or_link_local_matches_the_ipaddress_properties(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    assert is_loopback_or_link_local(ip_key(ip)) == (ip.is_loopback or ip.is_link_local)


def old_segments(
    pairs: list[tuple[Span, int]],
) -> tuple[list[int], list[int], list[tuple[int, ...]]]:
    """IntervalIndex's segments as its sweep cut them before the disjoint fast path."""
    by_span: dict[tuple[int, int], list[int]] = {}
    for span, item in pairs:
        by_span.setdefault((span.first, span.last), []).append(item)
    opens: dict[int, list[tuple[int, int]]] = {}
    closes: dict[int, list[tuple[int, int]]] = {}
    for key in by_span:
        opens.setdefault(key[0], []).append(key)
        closes.setdefault(key[1] + 1, []).append(key)
    active: dict[tuple[int, int], None] = {}
    firsts: list[int] = []
    lasts: list[int] = []
    items: list[tuple[int, ...]] = []
    bounds = sorted(opens.keys() | closes.keys())
    for i, point in enumerate(bounds):
        for key in closes.get(point, ()):
            del active[key]
        for key in opens.get(point, ()):
            active[key] = None
        if active and i + 1 < len(bounds):
            firsts.append(point)
            lasts.append(bounds[i + 1] - 1)
            items.append(tuple(item for key in active for item in by_span[key]))
    return firsts, lasts, items


# Disjoint spans (the fast path), identical ones, adjacent ones and overlapping ones.
SPAN_LISTS = st.one_of(
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 12)), max_size=25),
    st.lists(st.sampled_from([(0, 3), (4, 7), (10, 10), (11, 20), (30, 31)]), max_size=25),
)


@given(SPAN_LISTS)
def test_interval_index_segments_are_the_sweeps(raw: list[tuple[int, int]]) -> None:
    pairs = [(Span(a, a + length), i) for i, (a, length) in enumerate(raw)]
    index = IntervalIndex(pairs)
    assert (index._firsts, index._lasts, index._items) == old_segments(pairs)


def old_eip_from_object(obj: dict[str, Any]) -> Eip:
    """Eip.from_object as it was: by keyword (from_object now fills the tuple in order)."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    annotations = meta.get("annotations") or {}
    try:
        address: Span | None = parse_eip_address(spec.get("address", ""))
        error = ""
    except AddressError as exc:
        address, error = None, str(exc)
    allow = annotations.get(ALLOW_RULES_ANNOTATION, "")
    return Eip(
        name=meta.get("name", ""),
        address_text=spec.get("address", ""),
        address=address,
        address_error=error,
        protocol=spec.get("protocol") or "bgp",
        interface_text=spec.get("interface", ""),
        interface=parse_interface(spec.get("interface", "")),
        is_default=annotations.get(DEFAULT_EIP_ANNOTATION) == "true",
        allow_rules=tuple(r.strip() for r in allow.split(",") if r.strip()),
        used=tuple(str(k) for k in (obj.get("status") or {}).get("used") or {}),
        disabled=spec.get("disable") is True,
        used_by=tuple(str(v) for v in ((obj.get("status") or {}).get("used") or {}).values()),
    )


EIP_FIELDS = st.tuples(
    st.sampled_from(["", "10.0.0.1", "10.0.0.0/30", "10.0.0.1-10.0.0.9", "x"]),
    st.sampled_from(["", "bgp", "layer2", "vip"]),
    st.sampled_from(["", "eth0", "can_reach:10.0.0.1", "can_reach:", "a:b"]),
    st.booleans(),
    st.sampled_from(["", "a", "a, b ,", " , "]),
    st.lists(st.sampled_from(["10.0.0.1", "10.0.0.2"]), unique=True),
    st.sampled_from([None, True, False, "true"]),
)


@given(EIP_FIELDS)
def test_eip_from_object_fills_every_field_as_by_keyword(
    fields: tuple[str, str, str, bool, str, list[str], object],
) -> None:
    address, protocol, interface, default, allow, used, disable = fields
    annotations = {ALLOW_RULES_ANNOTATION: allow}
    if default:
        annotations[DEFAULT_EIP_ANNOTATION] = "true"
    spec: dict[str, object] = {"address": address, "protocol": protocol, "interface": interface}
    if disable is not None:
        spec["disable"] = disable
    obj: dict[str, Any] = {
        "apiVersion": "network.kubesphere.io/v1alpha2",
        "kind": "Eip",
        "metadata": {"name": "e1", "annotations": annotations},
        "spec": spec,
        "status": {"used": dict.fromkeys(used, "ns/svc")},
    }
    # field_errors came later, with no interpreted twin: test_rules holds it to the schema.
    fast, slow = Eip.from_object(obj)._asdict(), old_eip_from_object(obj)._asdict()
    fast.pop("field_errors")
    slow.pop("field_errors")
    assert fast == slow


def test_gc_paused_restores_the_collector_as_it_found_it() -> None:
    """Loading pauses the cyclic GC; an error inside, or a pause inside a pause, must not
    leave it off (the webhook would then never collect) nor turn it on when it was off."""
    assert gc.isenabled()
    with pytest.raises(InputError), gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause found it off and left it off
        raise InputError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


# JSON as Kubernetes and people write it: every value type, big ints, any text (escaped
# to ASCII or not, so surrogate pairs and raw UTF-8 both occur), repeated keys.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**100), 2**100)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(JSON_VALUES, st.booleans())
def test_json_snapshots_read_as_json_loads_reads_them(value: Any, ascii_only: bool) -> None:
    """jiter, now the .json reader, against json.loads, its reader before."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert _json_document(Path("x.json"), text.encode()) == json.loads(text)


def inventory_contents(inventory: Inventory) -> dict[str, object]:
    """Everything an inventory holds, indexes by their contents (they compare by identity)."""

    def points(index: PointIndex[Any]) -> object:
        return index._keys, index._items, len(index)

    def spans(index: IntervalIndex[Any]) -> object:
        return index._firsts, index._lasts, index._items, len(index)

    return {
        "eips": dict(inventory.eips),
        "eip_pools": spans(inventory.eip_pools),
        "can_reach_ips": points(inventory.can_reach_ips),
        "default_eips": inventory.default_eips,
        "points": {k: points(v) for k, v in inventory.points.items()},
        "spans": {k: spans(v) for k, v in inventory.spans.items()},
        "notes": inventory.notes,
        "gaps": inventory.gaps,
        "node_subnet_names": dict(inventory.node_subnet_names),
    }


def resolve_some(name: str) -> list[str]:
    if name.startswith("down"):
        raise OSError("no such host")
    return ["192.0.2.7", "2001:db8::7", "not an IP"] if "." in name else []


# Values where addresses go: IPs and CIDRs of both families, near misses, names, and values
# of the wrong type (a field of the wrong type reads as empty).
STRINGS = st.one_of(
    ADDRESS_TEXT,
    st.tuples(ADDRESS_TEXT, st.integers(0, 130)).map("{0[0]}/{0[1]}".format),
    st.sampled_from(["node-1", "down.example", "vip.example", "None", "0.0.0.0", "beef", ""]),
    st.sampled_from(["10.0.0.1/32", "2001:db8::1/128", "10.0.0.1-10.0.0.1", "10.0.0.0/24"]),
)
VALUES = st.one_of(STRINGS, st.sampled_from([None, 7, ["10.0.0.1"], {"ip": "10.0.0.1"}]))
TEXTS = st.one_of(VALUES, st.lists(STRINGS, max_size=3).map(",".join))


@st.composite
def odd_objects(draw: st.DrawFn) -> dict[str, Any]:
    """One object of a kind that carries facts, every field the extractors read maybe set."""
    kind = draw(
        st.sampled_from(["Node", "Service", "ServiceCIDR", "Pod", "DaemonSet", "ConfigMap"])
    )

    def some(values: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(values, max_size=3))

    annotations = {
        key: draw(TEXTS)
        for key in [
            "flannel.alpha.coreos.com/public-ip",
            "projectcalico.org/IPv4Address",
            "projectcalico.org/IPv6Address",
            "kube-vip.io/loadbalancerIPs",
            "eip.openelb.kubesphere.io/v1alpha1",
        ]
        if draw(st.booleans())
    }
    if draw(st.booleans()):
        report = {"interfaces": [{"addresses": some(VALUES)}], "gateways": some(VALUES)}
        annotations["eip-guard.io/network"] = draw(st.sampled_from([json.dumps(report), "{"]))
    name = draw(st.sampled_from(["a", "b"]))
    env = [
        {"name": draw(st.sampled_from(["address", "vip_address", "other"])), "value": draw(TEXTS)},
        {"name": "address", "valueFrom": {"configMapKeyRef": {"name": "kv", "key": "k"}}},
    ]
    container = {"name": "kv", "image": "ghcr.io/kube-vip/kube-vip", "env": env}
    pod_spec = {"containers": [container]}
    addresses = [{"type": t, "address": draw(VALUES)} for t in ("InternalIP", "Hostname")]
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": "kube-system", "annotations": annotations},
        "spec": {
            "podCIDRs": some(VALUES),
            "podCIDR": draw(VALUES),
            "clusterIP": draw(VALUES),
            "clusterIPs": some(VALUES),
            "externalIPs": some(VALUES),
            "loadBalancerIP": draw(VALUES),
            "cidrs": some(VALUES),
            "template": {"spec": pod_spec},
            **pod_spec,
        },
        "status": {
            "addresses": addresses,
            "loadBalancer": {"ingress": [{"ip": v} for v in some(VALUES)]},
        },
        "data": {"k": draw(TEXTS), "cidr-a": draw(TEXTS), "range-b": draw(TEXTS)},
    }


@given(st.lists(odd_objects(), max_size=6))
def test_build_files_what_assemble_files_of_the_extracts(objects: list[dict[str, Any]]) -> None:
    """build() files facts straight into the indexes; assemble(extract(...)) is the oracle."""
    options = Options(kube_vip_configmap=("kube-system", "a"))
    built = build(objects, options, resolve_some)
    assembled = assemble((extract(o, options) for o in objects), resolve_some)
    assert inventory_contents(built) == inventory_contents(assembled)


def test_build_of_a_synthetic_cluster_is_assemble_of_its_extracts() -> None:
    from bench import synth  # noqa: PLC0415 (only this test needs it)

    objects = synth.cluster(synth.Shape("mixed", nodes=60, eips=40, services=80))
    assembled = assemble(extract(o) for o in objects)
    assert inventory_contents(build(objects)) == inventory_contents(assembled)
    assert assembled.count(FactKind.NODE_SUBNET) and assembled.count(FactKind.KUBE_VIP_VIP)


def test_dotted_quads_past_the_kept_heads_still_read_as_the_stdlib() -> None:
    """_dotted_quad_key keeps the first three octets of a few thousand addresses, then
    starts over: reading more distinct ones than that must not change an answer."""
    texts = [f"{i >> 8 & 255}.{i & 255}.{i % 7}.{i % 256}" for i in range(0, 3 * 4096, 1)]
    assert [attempt(t) for t in texts] == [reference_ip(t) for t in texts]
    assert attempt("1.2.3.04") is None and attempt("1.2.3.4") == ipaddress.IPv4Address("1.2.3.4")


def test_shared_copies_are_private_interned_and_survive_starting_over() -> None:
    """eips.shared: the copy must not be the parsed string (its page would stay resident),
    equal strings share one copy, and the table starting over changes no value."""
    parsed = "".join(["can_reach:", "10.0.0.1"])  # a fresh string, as a parser makes
    copy = shared(parsed)
    assert copy == parsed and copy is not parsed and shared("can_reach:10.0.0.1") is copy
    texts = [f"ns-{i}" for i in range(3 * 4096)]
    assert [shared(t) for t in texts] == texts
    assert all(shared(t) is not t for t in texts[-10:])
    long, again = "".join(["x"] * 129), "".join(["x"] * 129)  # equal, two parsed strings
    assert shared(long) == long and shared(long) is not long
    assert shared(long) is not shared(again)  # copied, not kept in the table


def test_own_gives_the_same_string_the_same_copy() -> None:
    """eips.own: a copy, never the parsed string; asked again for the same string (an object's
    name, for its source and its store key) it returns the same copy, and only then."""
    name, again = "".join(["svc-", "1"]), "".join(["svc-", "1"])
    copy = own(name)
    assert copy == name and copy is not name
    assert own(name) is copy
    assert own(again) == name and own(again) is not copy and own(again) is not again
    assert own("") == ""
