"""The live cluster: the one package that talks to the Kubernetes API (import-linter enforces it).

- ``resources``: what we list and watch, and how to ask the API for each.
- ``config``: an ``ApiClient`` from a kubeconfig, a context or the in-cluster service account.
- ``reflector``: list then watch one resource in one namespace, in a thread of its own.
- ``live``: ``LiveInventory``, the ``InventorySource`` that joins every reflector's extracts.
- ``snapshot``: one list per resource, for ``eip-guard check`` / ``audit`` on a live cluster.
- ``auditor``: the background audit, its gauges and its deduplicated Warning Events.
- ``metrics``: the per-source Prometheus metrics, on a registry passed in.
- ``serving``: live mode in one call (inventory, audit) for ``eip-guard serve``.
"""
