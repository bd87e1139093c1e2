"""`eip-guard resolve` and `eip-guard agent`: the node side."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from app.agent.netlink import NetlinkError
from app.agent.pyroute2_netlink import Pyroute2Netlink
from app.agent.resolve import Resolved, describe_route_get, resolve
from app.agent.runner import Agent, Settings, SnapshotSource
from app.agent.speaker import Speaker
from app.core.interfaces import CanReach, parse_interface
from app.sources.files import InputError


def register(sub: Any) -> None:
    r = sub.add_parser(
        "resolve",
        help="show the NIC eip-guard picks for an interface spec on this node, "
        "next to what OpenELB's 'ip route get' picks",
    )
    r.add_argument("spec", help="a NIC name or can_reach:<IP>, as in an Eip's spec.interface")
    r.add_argument("-o", "--output", choices=("text", "json"), default="text")
    r.set_defaults(run=run_resolve)

    a = sub.add_parser("agent", help="run the node agent (layer2 speaker and node report)")
    a.add_argument(
        "--cluster",
        action="append",
        type=Path,
        required=True,
        metavar="SNAPSHOT",
        help="static mode: YAML/JSON file or directory of objects, re-read when it changes",
    )
    a.add_argument("--node-name", required=True, help="this node's name, as in its Node object")
    a.add_argument(
        "--members",
        help="comma-separated live nodes (default: every Node in the snapshot); "
        "this node always counts",
    )
    a.add_argument(
        "--speaker",
        choices=("on", "off"),
        default="on",
        help="off: report-only, never answer ARP/NDP (OpenELB's own speaker speaks)",
    )
    a.add_argument("--interval", type=float, default=1.0, help="seconds between looks")
    a.set_defaults(run=run_agent)


def run_resolve(args: argparse.Namespace) -> int:
    spec = parse_interface(args.spec)
    try:
        netlink = Pyroute2Netlink()
        host = netlink.host()
    except NetlinkError as exc:
        raise InputError(str(exc)) from exc
    result = resolve(spec, host)
    if isinstance(result, Resolved):
        ours: dict[str, Any] = {"nic": result.link.name, "why": result.why}
    else:
        ours = {"nic": None, "why": result.reason}
    theirs: dict[str, Any] = {"nic": None, "why": "not used: OpenELB takes a NIC name as given"}
    if isinstance(spec, CanReach):
        nic, why = describe_route_get(spec.ip, netlink.route_get(spec.ip), host)
        theirs = {"nic": nic, "why": why}
    if args.output == "json":
        print(json.dumps({"spec": args.spec, "eip_guard": ours, "ip_route_get": theirs}))
    else:
        print(f"eip-guard picks:   {ours['nic'] or '(none)'}  ({ours['why']})")
        print(f"ip route get says: {theirs['nic'] or '(none)'}  ({theirs['why']})")
    if isinstance(result, Resolved):
        return 0
    return 2 if result.bad_spec else 1


def run_agent(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        raise InputError(f"--interval {args.interval}: must be more than 0 seconds")
    members = None
    if args.members is not None:
        members = [m for m in (p.strip() for p in args.members.split(",")) if m]
    node = args.node_name

    def log(message: str) -> None:
        print(f"eip-guard agent [{node}]: {message}", flush=True)

    source = SnapshotSource(args.cluster, node, members)
    source.objects()  # a bad snapshot at start is bad input: exit 2 with one line
    speaker = Speaker(log) if args.speaker == "on" else None
    agent = Agent(Settings(node, speaker is not None, args.interval), source, Pyroute2Netlink(),
                  log, speaker=speaker)  # fmt: skip
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    mode = "speaker on" if speaker is not None else "report-only (speaker off)"
    log(f"static mode from {', '.join(map(str, args.cluster))}, {mode}")
    agent.run(stop)
    log("stopped")
    return 0
