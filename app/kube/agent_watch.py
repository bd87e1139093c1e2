"""Keep a small in-memory copy of one kind of object: LIST, then WATCH, again and again.

A watch ends (server timeout, dropped connection, 410 Gone): the reflector lists afresh,
so no deletion is missed. Objects are trimmed by a ``keep`` function to the fields the
agent reads, so a node holds little even in a large cluster.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import urllib3
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from app.kube.agent_api import AgentApi, KubeError

Keep = Callable[[Mapping[str, Any]], Mapping[str, Any] | None]
Log = Callable[[str], None]
WATCH_SECONDS = 300  # the server ends each watch after this long; we list again then


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Reflector:
    def __init__(  # noqa: PLR0917 - one reflector per kind, built in one table
        self,
        api: AgentApi,
        what: str,
        list_fn: Callable[..., Any],
        args: tuple[Any, ...],
        keep: Keep,
        log: Log,
        watch_seconds: int = WATCH_SECONDS,
        **kwargs: Any,
    ) -> None:
        self.api, self.what, self._list_fn, self._args = api, what, list_fn, args
        self.watch_seconds = watch_seconds
        self._kwargs, self._keep, self._log = kwargs, keep, log
        self._lock = threading.Lock()
        self._store: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.synced = threading.Event()

    def items(self) -> list[Mapping[str, Any]]:
        with self._lock:
            return list(self._store.values())

    def _put(self, obj: Mapping[str, Any]) -> None:
        kept = self._keep(obj)
        with self._lock:
            if kept is None:
                self._store.pop(_key(obj), None)
            else:
                self._store[_key(obj)] = kept

    def _relist(self) -> str | None:
        body = self.api.call(f"list {self.what}", self._list_fn, *self._args, **self._kwargs)
        fresh = {}
        for obj in body.get("items") or []:
            kept = self._keep(obj)
            if kept is not None:
                fresh[_key(obj)] = kept
        with self._lock:
            self._store = fresh
        self.synced.set()
        version = (body.get("metadata") or {}).get("resourceVersion")
        return str(version) if version else None

    def _watch(self, version: str | None, stop: threading.Event) -> None:
        w = watch.Watch()  # type: ignore[no-untyped-call]
        # The server ends the watch after timeout_seconds; the read timeout catches a
        # connection that died silently (without it a watch can hang forever).
        kwargs = dict(self._kwargs, timeout_seconds=self.watch_seconds,
                      allow_watch_bookmarks=True, deserialize=False,
                      _request_timeout=(self.api.timeout, self.watch_seconds + 30))  # fmt: skip
        if version:
            kwargs["resource_version"] = version
        for event in w.stream(self._list_fn, *self._args, **kwargs):  # type: ignore[no-untyped-call]
            if stop.is_set():
                w.stop()  # type: ignore[no-untyped-call]
                return
            kind, obj = event.get("type"), event.get("object") or {}
            if kind in ("ADDED", "MODIFIED"):
                self._put(obj)
            elif kind == "DELETED":
                with self._lock:
                    self._store.pop(_key(obj), None)

    def run(self, stop: threading.Event) -> None:
        backoff = 1.0
        while not stop.is_set():
            try:
                version = self._relist()
                backoff = 1.0
                self._watch(version, stop)
            except KubeError as exc:
                self._log(f"{exc}; retrying in {backoff:.0f} s")
            except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                if stop.is_set():
                    return
                self._log(f"watch {self.what}: {type(exc).__name__}: {exc}; listing again")
            stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name=self.what, daemon=True)
        thread.start()
        return thread
