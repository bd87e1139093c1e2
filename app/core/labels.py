"""Well-known Kubernetes labels that more than one part reads: the agent's watch asks the API
server for the excluded Nodes, and the election skips them, by the same name. And the
annotation the agent writes and the inventory reads."""

from __future__ import annotations

# Nodes that must not announce load-balancer IPs (OpenELB honours it too).
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
# On an EndpointSlice: the Service it belongs to.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# On a Node: the agent's report of its interfaces and gateways (JSON; see app.core.inventory).
NODE_REPORT_ANNOTATION = "eip-guard.io/network"
