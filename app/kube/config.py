"""An ``ApiClient`` for the cluster: a kubeconfig (file, context) or the in-cluster account.

Each call builds its own ``Configuration``: nothing is written into the client library's
global default, so tests and several clusters never share state.
"""

from __future__ import annotations

import os

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from app.kube.settings import IN_CLUSTER_ENV, KubeError, in_cluster

__all__ = ["IN_CLUSTER_ENV", "RETRIES", "KubeError", "api_client", "in_cluster"]


class _CappedRetry(urllib3.Retry):
    """urllib3's retries as the callers want them: none of their own, but one wait for a
    429/503 that says how long (API Priority and Fairness sends Retry-After: 1), capped.

    urllib3's default (3 retries) sat silently under the reflector's and the agent's backoff:
    a list the API server accepted and never answered took 4 read timeouts (22 minutes with
    a watch's) before anything was logged or /readyz could say so, and each refused
    connection logged three warnings. A Retry-After was obeyed three times, uncapped.
    """

    cap = 10.0  # seconds: the longest Retry-After waited for

    def get_retry_after(self, response: urllib3.BaseHTTPResponse) -> float | None:
        after = super().get_retry_after(response)
        return None if after is None else min(after, self.cap)


# read=False re-raises a read error (a timeout, a connection cut) as it is: the caller backs
# off and says so. One connect retry: a connection refused once (an API server restarting
# behind its Service) must not fail a Lease renewal, which costs the agent a warm-up. One
# status retry honours a Retry-After, on the methods urllib3 deems idempotent (GET, PUT,
# DELETE; never POST or PATCH).
RETRIES = _CappedRetry(
    total=2, connect=1, read=False, redirect=0, status=1, other=0, raise_on_status=False
)


# What loading a kubeconfig raises: the library's own error, the file's (OSError, YAML, bad
# UTF-8), and Python's for YAML of another shape (a list, a string, `server: 5`).
_LOAD_ERRORS = (
    ConfigException, OSError, yaml.YAMLError, ValueError, TypeError, AttributeError, KeyError,
    IndexError,
)  # fmt: skip


def _why(exc: Exception) -> str:
    """What is wrong with the kubeconfig, in one line: the library's own words when it has
    some, the shape the file should have when Python's words are all there is."""
    if isinstance(exc, yaml.MarkedYAMLError):
        line = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        return f"not valid YAML: {line}{exc.problem}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())[:200].rstrip(".")  # the caller ends the sentence
    if isinstance(exc, ConfigException | yaml.YAMLError) or type(exc) is ValueError:
        return text
    return (
        "not a kubeconfig of the expected shape (a mapping whose clusters, contexts and users "
        f"are lists of mappings, each server a URL string; the client said: {text})"
    )


def api_client(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    host: str | None = None,
    pool_size: int = 16,
) -> client.ApiClient:
    """kubectl's order: an explicit kubeconfig/context, else in-cluster, else $KUBECONFIG/~/.kube.

    ``host`` skips all of that (plain HTTP to an API stand-in, as the tests do).
    ``pool_size`` must cover one connection per watch plus a few: a smaller urllib3 pool
    would open and throw away connections on every request.
    """
    cfg = client.Configuration()
    if host is not None:
        cfg.host = host
    else:
        try:
            if kubeconfig is None and context is None and in_cluster():
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            else:
                # $KUBECONFIG read now: the library reads it once, at import time.
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig or os.environ.get("KUBECONFIG") or None,
                    context=context,
                    client_configuration=cfg,
                    persist_config=False,
                )
        except _LOAD_ERRORS as exc:  # bad input all: said in one line, never a traceback
            if kubeconfig is None and context is None and in_cluster():
                where = "the pod's service account"
            else:
                where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise KubeError(
                f"cannot load Kubernetes credentials from {where}"
                f"{f' (context {context})' if context else ''}: {_why(exc)}. "
                "Pass --kubeconfig/--context, run inside a pod, or use --cluster SNAPSHOT."
            ) from exc
    cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize or 0, pool_size)
    cfg.retries = RETRIES
    return client.ApiClient(cfg)
