"""An ``ApiClient`` for the cluster: a kubeconfig (file, context) or the in-cluster account.

Each call builds its own ``Configuration``: nothing is written into the client library's
global default, so tests and several clusters never share state.
"""

from __future__ import annotations

import datetime
import errno
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import urllib3
import yaml
from kubernetes import client
from kubernetes.config import incluster_config, kube_config
from kubernetes.config.config_exception import ConfigException

from app.kube import rest
from app.kube.settings import IN_CLUSTER_ENV, KubeError, in_cluster, url_problem

__all__ = ["IN_CLUSTER_ENV", "RETRIES", "KubeError", "api_client", "in_cluster"]

log = logging.getLogger("eip_guard.kube")

# How often a kubeconfig's tokenFile is read again, as client-go does: the file is rotated
# under a running eip-guard (a projected service account token: about every hour).
TOKEN_FILE_SECONDS = 60.0


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


class _Unreadable(Exception):
    """A credentials file that cannot be read, said whole (``rest.file_problem``)."""


# What loading a kubeconfig raises: the library's own error, the file's (OSError, YAML, bad
# UTF-8), and Python's for YAML of another shape (a list, a string, `server: 5`).
_LOAD_ERRORS = (
    _Unreadable, ConfigException, OSError, yaml.YAMLError, ValueError, TypeError,
    AttributeError, KeyError, IndexError,
)  # fmt: skip


def _one_line(text: str) -> str:
    """``text`` on one line, cut to 200 characters, without a final full stop (the caller
    ends the sentence)."""
    return " ".join(text.split())[:200].rstrip(".")


def _why(exc: Exception) -> str:
    """What is wrong with the kubeconfig, in one line: the library's own words when it has
    some, the shape the file should have when Python's words are all there is."""
    if isinstance(exc, _Unreadable):
        return str(exc)
    if isinstance(exc, yaml.MarkedYAMLError):
        line = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        return f"not valid YAML: {line}{exc.problem}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = _one_line(str(exc))
    if isinstance(exc, ConfigException | yaml.YAMLError) or type(exc) is ValueError:
        return text
    return (
        "not a kubeconfig of the expected shape (a mapping whose clusters, contexts and users "
        f"are lists of mappings, each server a URL string; the client said: {text})"
    )


def _load_kubeconfig(
    cfg: client.Configuration, kubeconfig: str | None, context: str | None
) -> None:
    """``config.load_kube_config``, keeping its loader: a ``tokenFile`` is then read again."""
    # $KUBECONFIG read now: the library reads it once, at import time.
    filename = (
        kubeconfig or os.environ.get("KUBECONFIG") or kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    )
    # The library skips a missing file (a list of them, as $KUBECONFIG may be, merges those
    # found) and then said "Invalid kube-config file. No configuration found": a typo in
    # the path read as a broken file.
    paths = [os.path.expanduser(p) for p in filename.split(os.pathsep) if p]
    if paths and not any(os.path.exists(p) for p in paths):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), filename)
    merged = kube_config.KubeConfigMerger(filename)  # type: ignore[no-untyped-call]
    if merged.config is None:
        raise ConfigException("Invalid kube-config file. No configuration found.")
    problem = _context_problem(merged.config.value, context)
    if problem:
        raise ConfigException(problem)
    loader = kube_config._get_kube_config_loader(  # type: ignore[no-untyped-call]
        config_dict=merged.config,
        active_context=context,
        persist_config=False,
    )
    _default_scheme(loader)
    # The library says an exec plugin's failure with logging.error on the root logger, which
    # configures logging for the whole process (urllib3's retries then printed too) and
    # goes on without credentials: every request refused, the error blaming the network.
    said = _Said()
    root = logging.getLogger()
    root.addHandler(said)
    try:
        loader.load_and_set(cfg)
    finally:
        root.removeHandler(said)
    user = getattr(loader, "_user", None)
    if user and "exec" in user and not (vars(loader).get("token") or vars(loader).get("cert_file")):
        plugin = getattr(user["exec"], "value", None)
        command = plugin.get("command") if isinstance(plugin, dict) else None
        why = said.lines[0] if said.lines else "it gave no token or certificate"
        raise ConfigException(f"the user's exec plugin {command!r} failed: {why}")
    _follow_token_file(cfg, loader)


def _context_problem(config: Any, context: str | None) -> str | None:
    """What is wrong with the context asked for (``context``, else the current-context),
    in kubectl's words and with the contexts there are, or None. The library said
    "Invalid kube-config file. Expected object with name  in FILE/contexts list"."""
    contexts = config.get("contexts") if isinstance(config, dict) else None
    if not isinstance(contexts, list):
        return None  # a file of another shape: the library says so
    # Each item a ConfigNode (the file it came from) around the mapping, as merged.
    items = [getattr(c, "value", c) for c in contexts]
    names = [str(c["name"]) for c in items if isinstance(c, dict) and "name" in c]
    wanted = context if context is not None else config.get("current-context")
    if wanted in names:
        return None
    there = (
        f"the kubeconfig's contexts: {_few(names)}" if names else "the kubeconfig has no contexts"
    )
    if context == "":
        return f"--context is empty (an unset shell variable?); {there}"
    if context is not None:
        return f'context "{context}" does not exist; {there}'
    if not wanted:
        return f"no current-context is set: pass --context; {there}"
    return f'the current-context "{wanted}" does not exist: pass --context; {there}'


def _few(names: list[str], most: int = 5, width: int = 120) -> str:
    """Up to ``most`` names, as many as fit in ``width`` characters (an EKS context is an
    ARN of 60), and how many more: the message is cut at 200 (``_one_line``)."""
    shown: list[str] = []
    for name in names[:most]:
        if shown and len(", ".join([*shown, name])) > width:
            break
        shown.append(name[:width])
    rest = len(names) - len(shown)
    return ", ".join(shown) + (f" and {rest} more" if rest else "")


def _default_scheme(loader: Any) -> None:
    """A ``server`` without a scheme (``10.0.0.1:6443``) gets client-go's: https when the
    cluster names a CA or skips verification or the user has a client certificate, else
    http. The library read its CA and certificate only for a server starting with https,
    and urllib3 warned on stderr of a URL without a scheme."""
    cluster, user = getattr(loader, "_cluster", None), getattr(loader, "_user", None)
    value = getattr(cluster, "value", None)
    if not isinstance(value, dict):
        return
    server = value.get("server")
    if not isinstance(server, str) or not server or "://" in server:
        return
    credentials = getattr(user, "value", None)
    keys = set(value) | (set(credentials) if isinstance(credentials, dict) else set())
    tls = keys & {
        "certificate-authority",
        "certificate-authority-data",
        "insecure-skip-tls-verify",
        "client-certificate",
        "client-certificate-data",
    }
    value["server"] = f"{'https' if tls else 'http'}://{server}"


class _Said(logging.Handler):
    """The messages the library logs at ERROR while a kubeconfig loads."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(_one_line(record.getMessage()))


def _file_state(path: str) -> tuple[int, int, int] | None:
    """What changes when a file is rotated: kubelet swaps a projected token's directory
    (a new inode), a tool rewrites it in place (its mtime and size)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _follow_token_file(cfg: client.Configuration, loader: Any) -> None:
    """The library reads a kubeconfig user's ``tokenFile`` once: after the file is rotated
    every request was refused (401) until a restart, while /readyz said ready. Read it
    again when it changes on disk, and at least every ``TOKEN_FILE_SECONDS``, as client-go
    does (the library's hook then sends it)."""
    user = getattr(loader, "_user", None)
    if not user or "tokenFile" not in user or "token" in user or "auth-provider" in user:
        return  # an inline token wins over the file; auth providers refresh themselves
    path = os.path.join(loader._get_base_path(user.path), str(user["tokenFile"]))
    due = time.monotonic() + TOKEN_FILE_SECONDS

    def expire() -> None:
        nonlocal due
        due = time.monotonic() + TOKEN_FILE_SECONDS
        try:
            loader._load_user_token()
        except (OSError, ValueError, ConfigException) as exc:  # the old one is kept
            log.warning("cannot read the kubeconfig's tokenFile again: %s", exc)

    _read_again_when_rotated(cfg, path, expire, lambda: time.monotonic() >= due)


def _follow_service_account_token(cfg: client.Configuration, loader: Any) -> None:
    """The library reads the pod's token again once a minute: a token rotated and refused
    before then (the old one revoked) failed every list and watch for up to that minute,
    where client-go reads the file again at the next request. Read it when it changes."""
    path = loader._token_filename

    def expire() -> None:
        loader.token_expires_at = datetime.datetime.min  # the library's hook reads it now

    _read_again_when_rotated(cfg, path, expire, lambda: False)


def _read_again_when_rotated(
    cfg: client.Configuration, path: str, expire: Callable[[], None], due: Callable[[], bool]
) -> None:
    """Before each request, ``expire`` the token when the file at ``path`` changed (one
    stat) or ``due`` says so, then run the library's hook (which sends the token)."""
    hook: Any = cfg.refresh_api_key_hook
    lock = threading.Lock()
    seen = _file_state(path)

    def refresh(configuration: client.Configuration) -> None:
        nonlocal seen
        with lock:
            now = _file_state(path)
            # Gone for a moment (being replaced): the token held is kept until it is back.
            if (now is not None and now != seen) or due():
                seen = now or seen
                expire()
        if hook is not None:
            hook(configuration)  # which installs itself again, in place of this one
        configuration.refresh_api_key_hook = refresh  # type: ignore[assignment]

    cfg.refresh_api_key_hook = refresh  # type: ignore[assignment]


def _load_incluster(cfg: client.Configuration) -> None:
    """``config.load_incluster_config``, keeping its loader: its token is then read again
    as soon as kubelet rotates the file."""
    # The library said "Service token file does not exist." of a token missing or not
    # readable by this user (a directory it cannot search), naming no file.
    for path in (incluster_config.SERVICE_TOKEN_FILENAME, incluster_config.SERVICE_CERT_FILENAME):
        try:
            open(path, "rb").close()  # only whether it can be read
        except OSError as exc:
            raise _Unreadable(rest.file_problem(exc)) from exc
    loader = incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
        token_filename=incluster_config.SERVICE_TOKEN_FILENAME,
        cert_filename=incluster_config.SERVICE_CERT_FILENAME,
    )
    loader.load_and_set(cfg)  # type: ignore[no-untyped-call]
    _follow_service_account_token(cfg, loader)


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
                _load_incluster(cfg)
            else:
                _load_kubeconfig(cfg, kubeconfig, context)
            # A server the client cannot use failed at the first request, said as "the API
            # server's answer could not be read (LocationParseError...)".
            problem = url_problem(cfg.host)
            if problem:
                raise ConfigException(f"the server {cfg.host!r}: {problem}")
            cfg.host = cfg.host.rstrip("/")  # the client appends "/api/..." as is
        except _LOAD_ERRORS as exc:  # bad input all: said in one line, never a traceback
            if kubeconfig is None and context is None and in_cluster():
                where = "the pod's service account"
            else:
                where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            inside = where == "the pod's service account"
            raise KubeError(
                f"cannot load Kubernetes credentials from {where}"
                f"{f' (context {context})' if context else ''}: {_why(exc)}. "
                f"Pass --kubeconfig/--context, {'' if inside else 'run inside a pod, '}"
                "or use --cluster SNAPSHOT."
            ) from exc
    proxy_from_env = bool(getattr(cfg, "_proxy_from_env", False))  # not the kubeconfig's
    cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize or 0, pool_size)
    cfg.retries = RETRIES
    # TCP keepalive as client-go dials (probed after 30 s idle): a quiet watch is not dropped
    # silently by a NAT, proxy or load balancer idle timeout (AWS NLB: 350 s, under a watch's
    # 300-600 s), and a peer gone without a word is noticed within 3 minutes instead of the
    # read timeout's 10.5.
    cfg.keep_alive = True
    proxy = cfg.proxy
    if proxy and "://" not in proxy:  # as kubectl reads $HTTPS_PROXY=proxy:3128: http://
        cfg.proxy = f"http://{proxy}"
    try:
        with warnings.catch_warnings():  # urllib3 warns before it fails, on stderr
            warnings.simplefilter("ignore", urllib3.exceptions.DependencyWarning)
            return client.ApiClient(cfg)
    except (ImportError, ValueError) as exc:  # the proxy: its pool is made here
        if not proxy:
            raise
        where = (
            "$HTTPS_PROXY/$HTTP_PROXY/$ALL_PROXY"
            if proxy_from_env
            else "the kubeconfig's proxy-url"
        )
        why = (
            "a SOCKS proxy needs the PySocks package, which this installation lacks"
            if isinstance(exc, ImportError)
            else _one_line(str(exc))
        )
        raise KubeError(
            f"cannot use the proxy {proxy!r} ({where}): {why}. "
            "Give an http:// or https:// proxy URL, or none."
        ) from exc
