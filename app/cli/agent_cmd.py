"""`eip-guard resolve` and `eip-guard agent`, the node side: their flags. What they run is in
agent_run."""

from __future__ import annotations

import os
from typing import Any

from app.cli.flags import non_empty, path
from app.cli.lazy import lazy
from app.core.labels import NODE_REPORT_ANNOTATION


def register(sub: Any) -> None:
    r = sub.add_parser(
        "resolve",
        help="show the NIC eip-guard picks for an interface spec on this node, "
        "next to what OpenELB's 'ip route get' picks",
        epilog="Exit codes: 0 a NIC was found, 1 none on this node (no such NIC, no usable "
        "route), 2 the spec itself is invalid, or bad usage, 141 the reader went away.",
    )
    r.add_argument("spec", help="a NIC name or can_reach:<IP>, as in an Eip's spec.interface")
    r.add_argument("-o", "--output", choices=("text", "json"), default="text")
    r.set_defaults(run=lazy("app.cli.agent_run", "run_resolve"))

    a = sub.add_parser(
        "agent",
        help="run the node agent (layer2 speaker and node report)",
        epilog="Exit codes: 0 stopped by SIGTERM, 2 bad input or usage (said before anything "
        "starts); a bug of ours ends it non-zero, its traceback in the log.",
    )
    mode = a.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--cluster",
        action="append",
        type=path,
        metavar="SNAPSHOT",
        help="static mode: YAML/JSON file or directory of objects, re-read when it changes",
    )
    mode.add_argument("--live", action="store_true", help="live mode: the Kubernetes API")
    a.add_argument(
        "--node-name",
        default=os.environ.get("NODE_NAME"),
        help="this node's name, as in its Node object (default: $NODE_NAME)",
    )
    a.add_argument(
        "--members",
        help="static mode: comma-separated live nodes (default: every Node in the snapshot); "
        "this node always counts",
    )
    a.add_argument(
        "--speaker",
        choices=("on", "off"),
        default="off",
        help="on: answer ARP/NDP for the Eips' IPs (turn OpenELB's speaker off first); off "
        "(the default): report-only, never answer (OpenELB's own speaker speaks)",
    )
    a.add_argument(
        "--interval",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="seconds between looks (default 0.5; 0.1 at least)",
    )
    a.add_argument(
        "--probe-port",
        type=int,
        metavar="PORT",
        help="serve /healthz, /readyz and /metrics over plain HTTP on this port (0: any free "
        "port, said in the log)",
    )
    a.add_argument(
        "--probe-address",
        default="",
        metavar="ADDRESS",
        help="address of --probe-port (default: every address, IPv6 and IPv4; the chart "
        "uses 127.0.0.1, where kubelet probes a host-network pod)",
    )
    live = a.add_argument_group("live mode")
    live.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", "eip-guard"),
        help="namespace of the agents' Leases (default: $POD_NAMESPACE or eip-guard)",
    )
    live.add_argument(
        "--kubeconfig",
        type=non_empty,
        help="kubeconfig file (default: in-cluster, then $KUBECONFIG, ~/.kube)",
    )
    live.add_argument("--context", help="kubeconfig context")
    live.add_argument(
        "--server",
        help="API server URL to use without credentials (e.g. 'kubectl proxy' at "
        "http://127.0.0.1:8001); --kubeconfig and --context are then ignored",
    )
    live.add_argument(
        "--lease-renew",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="renew this node's Lease this often (default 2; under half of --lease-duration)",
    )
    live.add_argument(
        "--lease-duration",
        type=int,
        default=6,
        metavar="SECONDS",
        help="leaseDurationSeconds of this node's Lease: the others count it live this long "
        "after they see a renewal (whole seconds; default 6)",
    )
    live.add_argument(
        "--no-node-report", action="store_true", help=f"do not write {NODE_REPORT_ANNOTATION}"
    )
    a.set_defaults(run=lazy("app.cli.agent_run", "run_agent"))
