"""List, then watch, the way client-go's reflector does, for every watcher
of the project (the agent's node object, the operator's pod index, the
benchmark's observer).

    list (paginated)  ->  on_list(items)            a complete, consistent picture
    watch from the list's resourceVersion, with bookmarks
      ADDED/MODIFIED/DELETED  ->  on_event(type, object)
      BOOKMARK                ->  only the resourceVersion moves on
    the watch ends (server timeout, connection cut, API server restart)
                      ->  watch again from the last resourceVersion seen
    410 Gone (that version was compacted away)
                      ->  list again

A watch that merely times out or breaks is resumed, not re-listed: a re-list
of 10,000 pods every few minutes is what bookmarks exist to avoid.

Responses are read raw (`_preload_content=False`) and parsed as plain JSON:
the kubernetes client's model deserialisation costs more than the work the
watchers do with an object. Handlers run in the watcher's thread.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class GoneError(Exception):
    """The resourceVersion to resume from is too old: list again."""


class ListWatch:
    def __init__(
        self,
        list_fn: Callable[..., Any],
        on_list: Callable[[list[Obj]], None],
        on_event: Callable[[str, Obj], None],
        name: str,
        page: int = 500,
        timeout_seconds: int = 300,
        max_backoff: float = 10.0,
    ) -> None:
        """@list_fn is a kubernetes client list method with its selectors
        bound (functools.partial); it is called with paging or watch options."""
        self.list_fn = list_fn
        self.on_list, self.on_event = on_list, on_event
        self.name = name
        self.page = page
        self.timeout_seconds = timeout_seconds
        self.max_backoff = max_backoff
        self.resource_version = ""
        self.lists = 0  # full lists made (start and 410s)
        self.resumes = 0  # watches resumed from a resourceVersion
        self._stop = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"listwatch-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()  # the blocked read returns
            except Exception as exc:  # already closed
                log.debug("%s: closing the watch: %s", self.name, exc)
        self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # -- the loop --------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if not self.resource_version:
                    self._list()
                self._watch()
                backoff = 0.5
            except GoneError:
                log.info("%s: resourceVersion %s expired; listing again", self.name, self.resource_version)
                self.resource_version = ""
            except ApiException as exc:
                if exc.status == 410:
                    self.resource_version = ""
                    continue
                if self._stop.is_set():
                    return
                log.warning("%s: %s %s; retrying in %.1fs", self.name, exc.status, exc.reason, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception as exc:  # connection refused while the API server restarts, ...
                if self._stop.is_set():
                    return
                log.warning("%s: interrupted (%s); retrying in %.1fs", self.name, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    def _list(self) -> None:
        items: list[Obj] = []
        token: str | None = None
        while True:
            resp = self.list_fn(limit=self.page, _continue=token, _preload_content=False)
            page = json.loads(resp.data)
            items.extend(page.get("items") or [])
            token = page["metadata"].get("continue")
            if not token:
                break
        self.lists += 1
        self.on_list(items)
        self.resource_version = str(page["metadata"]["resourceVersion"])

    def _watch(self) -> None:
        resp = self.list_fn(
            watch=True,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.timeout_seconds,
            _preload_content=False,
        )
        self._response = resp
        try:
            for line in _lines(resp):
                if self._stop.is_set():
                    return
                event: Obj = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise GoneError()
                    raise RuntimeError(f"watch error: {obj.get('message', obj)}")
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.on_event(kind, obj)
                if version:
                    self.resource_version = str(version)
        finally:
            self._response = None
            resp.release_conn()
        self.resumes += 1


def _lines(resp: Any) -> Iterator[str]:
    """Newline-delimited JSON from a streaming urllib3 response."""
    buffer = b""
    for chunk in resp.stream(65536, decode_content=True):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line.decode()
