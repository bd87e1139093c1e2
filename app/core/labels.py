"""Well-known Kubernetes labels that more than one part reads: the agent's watch asks the API
server for the excluded Nodes, and the election skips them, by the same name."""

from __future__ import annotations

# Nodes that must not announce load-balancer IPs (OpenELB honours it too).
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
# On an EndpointSlice: the Service it belongs to.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
