"""`eip-guard resolve` and `eip-guard agent`, the node side: what they run (their flags are in
agent_cmd)."""

from __future__ import annotations

import argparse
import json
import signal
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from app.agent.netlink import NetlinkError
from app.agent.plan import LocalBinding
from app.agent.pyroute2_netlink import Pyroute2Netlink
from app.agent.resolve import Resolved, describe_route_get, resolve, spec_problem
from app.agent.runner import Agent, ClusterSource, Settings, SnapshotSource, SourceError
from app.agent.speaker import Speaker
from app.cli.flags import MAX_SECONDS, seconds, server_url
from app.cli.streams import output
from app.core.interfaces import CanReach, parse_interface
from app.core.labels import NODE_REPORT_ANNOTATION
from app.kube.settings import KubeError
from app.sources.errors import InputError
from app.sources.files import is_stdin
from app.sources.manifest import dns_label, dns_subdomain

if TYPE_CHECKING:
    from app.agent.probes import ProbeServer
    from app.kube.agent_source import LiveCluster

# The kubernetes client loads in live mode only (start-up time and memory: see README
# Performance). Both commands talk to the kernel, so pyroute2 loads with this module.

EVENT_REASON = "CanReachBoundLocally"
# The shortest --interval: a look reads the cluster's view and the node's links, addresses
# and routes over netlink (1-10 ms), so 0.1 s costs at most a tenth of a core; 1e-9 looked
# without pause, a core burnt for failovers that Lease timing (seconds) cannot make sooner.
MIN_INTERVAL = 0.1
NOT_ASKED = "not asked: OpenELB uses a NIC name as given, with no route lookup"


def run_resolve(args: argparse.Namespace) -> int:
    spec = parse_interface(args.spec)
    # Wrong on every node (`vlan:3`, `a/b`, can_reach:127.0.0.1): bad input, one line on
    # stderr and exit 2, as for every command; no look at this node's network needed.
    problem = spec_problem(spec)
    if problem is not None:
        raise InputError(problem)
    try:
        netlink = Pyroute2Netlink()
        host = netlink.host([spec.ip] if isinstance(spec, CanReach) else [])
        answer = netlink.route_get(spec.ip) if isinstance(spec, CanReach) else None
    except NetlinkError as exc:
        raise InputError(str(exc)) from exc
    result = resolve(spec, host)
    if isinstance(result, Resolved):
        ours: dict[str, Any] = {"nic": result.link.name, "why": result.why}
    else:
        ours = {"nic": None, "why": result.reason}
    theirs: dict[str, Any] = {"nic": None, "why": NOT_ASKED}
    if isinstance(spec, CanReach) and answer is not None:
        nic, why = describe_route_get(spec.ip, answer, host)
        theirs = {"nic": nic, "why": why}
    if args.output == "json":
        output(json.dumps({"spec": args.spec, "eip_guard": ours, "ip_route_get": theirs}))
        return 0 if isinstance(result, Resolved) else 1
    output(f"eip-guard picks:   {ours['nic'] or '(none)'}  ({ours['why']})")
    if isinstance(spec, CanReach):
        output(f"ip route get says: {theirs['nic'] or '(none)'}  ({theirs['why']})")
    else:
        output("ip route get says: (not asked)  (OpenELB uses a NIC name as given)")
    return 0 if isinstance(result, Resolved) else 1


class LiveSource:
    """Adapts the Kubernetes source to the agent's ClusterSource (errors to SourceError)."""

    def __init__(self, cluster: LiveCluster) -> None:
        self.cluster = cluster

    def objects(self) -> Sequence[Mapping[str, Any]]:
        try:
            return self.cluster.objects()
        except KubeError as exc:
            raise SourceError(str(exc)) from exc

    def members(self) -> frozenset[str]:
        return self.cluster.members()


def _live(
    args: argparse.Namespace, node: str, log: Callable[[str], None], stop: threading.Event
) -> tuple[LiveSource, Callable[[str], bool] | None, Callable[[LocalBinding], None]]:
    latest: list[str] = []  # the last report handed over (the agent hands each text once)

    def write(text: str, *, at_once: bool = False) -> None:
        writes.report(lambda: api.annotate_node(node, NODE_REPORT_ANNOTATION, text),
                      at_once=at_once)  # fmt: skip

    def report(text: str) -> bool:
        latest[:] = [text]
        write(text)
        return True  # handed over: Writes tries again until it is written

    def on_own_node(found: str | None) -> None:
        # Our Node made again (kubectl delete node, its kubelet registering it again while
        # this pod lives on), or the report edited away: written again, not only when the
        # network changes. A report of other text is left alone: two agents given one node
        # name would rewrite each other's without end.
        if found == "" and latest:
            log("the node report is gone from this Node: writing it again")
            write(latest[0], at_once=True)  # not after the backoff of writes to no Node

    try:
        from app.kube.agent_api import AgentApi, Writes, make_client  # noqa: PLC0415
        from app.kube.agent_source import LiveCluster  # noqa: PLC0415

        api = AgentApi(make_client(args.kubeconfig, args.server, args.context), args.namespace)
        cluster = LiveCluster(api, node, log, renew=args.lease_renew, duration=args.lease_duration,
                              own_node=None if args.no_node_report else on_own_node)  # fmt: skip
    except (KubeError, ValueError) as exc:
        raise InputError(str(exc)) from exc
    writes = Writes(log, retry=args.lease_renew)  # off the tick's thread: fencing never waits
    writes.start(stop)

    def warn(binding: LocalBinding) -> None:
        uid = cluster.eip_uid(binding.eip)
        writes.event(lambda: api.warn_eip(binding.eip, uid, node, EVENT_REASON, binding.message))

    return LiveSource(cluster), (None if args.no_node_report else report), warn


def _check_namespace(namespace: str) -> None:
    # "" made every Lease call cluster-wide (/apis/coordination.k8s.io/v1/leases), which a
    # real API server refuses (405 to a create, 403 to a list without a ClusterRole).
    if not namespace:
        raise InputError(
            "--namespace '': expected a namespace's name (is $POD_NAMESPACE set but empty?)"
        )
    if not dns_label(namespace):
        raise InputError(
            f"--namespace {namespace[:80]!r}: expected a name of a namespace, a DNS-1123 label "
            "(at most 63 lower-case letters, digits and '-', starting and ending with a "
            "letter or digit)"
        )


def _check_live(args: argparse.Namespace) -> None:
    """The live-mode flags, each alone: LiveCluster checks how they relate, and said of -1 or
    nan that it "must be under half the Lease duration"."""
    if args.server is not None:
        args.server = server_url("--server", args.server)
    _check_namespace(args.namespace)
    seconds("--lease-renew", args.lease_renew)
    if not 1 <= args.lease_duration <= MAX_SECONDS:
        raise InputError(
            f"--lease-duration {args.lease_duration}: expected whole seconds, 1 to {MAX_SECONDS}"
        )


def _listen_probes(args: argparse.Namespace) -> socket.socket | None:
    if args.probe_port is None:
        return None
    if not 0 <= args.probe_port < 65536:
        raise InputError(f"--probe-port {args.probe_port}: expected 0-65535")
    from app.agent.probes import listen  # noqa: PLC0415 - prometheus_client: only when asked

    where = f"{args.probe_address or 'every address'} port {args.probe_port}"
    try:
        return listen(args.probe_address, args.probe_port)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise InputError(f"cannot listen on {where} (--probe-port): {reason}") from exc


def run_agent(args: argparse.Namespace) -> int:
    seconds("--interval", args.interval, least=MIN_INTERVAL)
    probe_sock = _listen_probes(args)  # a taken port is said before anything starts
    if args.live:
        _check_live(args)
    elif any(is_stdin(p) for p in args.cluster):
        raise InputError(
            "--cluster -: the agent reads its snapshot again whenever it changes, and stdin "
            "can be read once: give a file"
        )
    if not args.node_name:
        raise InputError("--node-name is required (or set $NODE_NAME)")
    node = args.node_name
    # A Node's name is a DNS-1123 subdomain: any other (" n1", "Node1", a newline) names no
    # Node, and the agent answered for nothing without a word, its log lines forged by one.
    if not dns_subdomain(node):
        raise InputError(
            f"--node-name {node[:80]!r}: expected a Node's name, a DNS-1123 subdomain (at most "
            "253 lower-case letters, digits, '-' and '.', starting and ending with a letter "
            "or digit), as in `kubectl get nodes`"
        )

    def log(message: str) -> None:
        print(f"eip-guard agent [{node}]: {message}", flush=True)

    stop = threading.Event()
    report: Callable[[str], bool] | None = None
    warn: Callable[[LocalBinding], None] | None = None
    source: ClusterSource
    if args.live:
        live, report, warn = _live(args, node, log, stop)
        source = live
        where = f"live mode, Leases in {args.namespace} renewed every {args.lease_renew} s"
    else:
        members = None
        if args.members is not None:
            members = [m for m in (p.strip() for p in args.members.split(",")) if m]
        snapshot = SnapshotSource(args.cluster, node, members, log)
        try:
            snapshot.objects()  # a bad snapshot at start is bad input: exit 2 with one line
        except SourceError as exc:
            raise InputError(str(exc)) from exc
        source = snapshot
        where = f"static mode from {', '.join(map(str, args.cluster))}"
    speaker = Speaker(log) if args.speaker == "on" else None
    settings = Settings(node, args.interval)
    if isinstance(source, LiveSource):  # the Lease warm-up bounds how far views may lag
        settings = Settings(node, args.interval, settle=source.cluster.warm_up)
    agent = Agent(settings, source, Pyroute2Netlink(),
                  log, speaker=speaker, report=report, warn=warn)  # fmt: skip

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    mode = "speaker on" if speaker is not None else "report-only (speaker off)"
    log(f"{where}, {mode}")
    probes: ProbeServer | None = None
    if probe_sock is not None:
        from app.agent.probes import ProbeServer  # noqa: PLC0415

        probes = ProbeServer(probe_sock, lambda: agent.status, log=log)
        probes.start()
        host, port = probe_sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        log(f"probes on http://{shown}:{port}: /healthz, /readyz, /metrics")
    if isinstance(source, LiveSource):
        source.cluster.start(stop)
    try:
        agent.run(stop)  # returns once this node answers no more
    finally:
        # Also after a bug in a tick (the traceback follows): the Lease given up hands this
        # node's IPs over at the others' next list, not when it runs out.
        stop.set()
        if isinstance(source, LiveSource):
            source.cluster.release()
        if probes is not None:
            probes.close()
    log("stopped")
    return 0
