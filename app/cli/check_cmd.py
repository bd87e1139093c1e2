"""`eip-guard check`, `audit` and `rules`: their flags. What they run is in check_run."""

from __future__ import annotations

import argparse
from typing import Any

from app.cli.flags import OptionalFile, path
from app.cli.lazy import lazy
from app.kube.settings import in_cluster


def cluster_args(p: argparse.ArgumentParser, output: bool = True) -> None:
    """--cluster or --kubeconfig/--context (and kube-vip namespaces), --policy,
    --kube-vip-configmap (and -o): shared with `eip-guard serve`."""
    source = p.add_mutually_exclusive_group(required=not in_cluster())
    source.add_argument(
        "--cluster",
        action="append",
        type=path,
        metavar="SNAPSHOT",
        help="YAML/JSON file or directory of Kubernetes objects (repeatable; - reads stdin); "
        "--kubeconfig reads the live cluster instead",
    )
    source_args(p, source)
    p.add_argument("--policy", type=path, help="policy file: per-rule deny|warn|off")
    p.add_argument(
        "--kube-vip-configmap",
        default="kube-system/kubevip",
        metavar="NS/NAME",
        help="kube-vip-cloud-provider's ConfigMap, whose cidr-*/range-* keys are VIP pools "
        "(default kube-system/kubevip)",
    )
    if output:
        p.add_argument("-o", "--output", choices=("text", "json"), default="text")


def source_args(p: argparse.ArgumentParser, group: Any | None = None) -> None:
    """``--kubeconfig`` (into ``group``, when the caller makes it exclusive with ``--cluster``),
    ``--context`` and the kube-vip namespaces."""
    (group or p).add_argument(
        "--kubeconfig",
        action=OptionalFile,
        metavar="FILE",
        help="read the live cluster with this kubeconfig; without FILE: $KUBECONFIG or "
        "~/.kube/config, as kubectl does",
    )
    p.add_argument("--context", metavar="NAME", help="kubeconfig context of the live cluster")
    p.add_argument(
        "--kube-vip-namespace",
        action="append",
        metavar="NS",
        help="where kube-vip Pods/DaemonSets/Deployments and their ConfigMaps live "
        "(repeatable or comma list; default kube-system)",
    )


def _strict(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 on warnings too, and when part of the cluster could not be checked "
        "(no Node or Service in the snapshot, an unresolved kube-vip name)",
    )


# Exit codes, said in --help for a pipeline's author (main.EPILOG has them for every command).
_EXIT = "Exit codes: 0 {ok}, 1 {bad}{strict}, 2 bad input or usage, 141 the reader went away."
_STRICT = " (--strict: also warnings, or part of the cluster not checked)"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="judge one Eip manifest against a cluster snapshot or the live cluster",
        description="Judges one Eip manifest as the webhook would judge it on kubectl apply.",
        epilog=_EXIT.format(ok="allowed", bad="denied", strict=_STRICT),
    )
    p.add_argument(
        "-f", "--filename", type=path, required=True, help="the Eip manifest (- reads stdin)"
    )
    p.add_argument(
        "--old", type=path, help="the Eip as it is now (judges an UPDATE; - reads stdin)"
    )
    cluster_args(p)
    _strict(p)
    p.set_defaults(run=lazy("app.cli.check_run", "run_check"))
    a = sub.add_parser(
        "audit",
        help="judge every existing Eip in a cluster snapshot or the live cluster",
        description="Judges every existing Eip as if it were created now.",
        epilog=_EXIT.format(ok="every Eip allowed", bad="some Eip violates a rule", strict=_STRICT),
    )
    cluster_args(a)
    _strict(a)
    a.set_defaults(run=lazy("app.cli.check_run", "run_audit"))
    r = sub.add_parser(
        "rules",
        help="list the rule ids, what each denies, and the action a policy file gives each",
        description="Lists the rule ids, what each denies, and the action a policy file gives "
        "each: check a policy before it is deployed.",
        epilog="Exit codes: 0 listed, 2 bad input or usage (an unknown rule id in the policy).",
    )
    r.add_argument("--policy", type=path, help="policy file to show the actions of")
    r.add_argument("-o", "--output", choices=("text", "json"), default="text")
    r.set_defaults(run=lazy("app.cli.check_run", "run_rules"))
