"""The shared list/watch against a real API server: a watch that ends is
resumed from its last resourceVersion (no re-list), a compacted history
(410 Gone) lists again, and no event is lost either way."""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

from kubernetes import client

from meshaccel_api.listwatch import ListWatch
from meshaccel_lab.kube import KubeAPI
from meshaccel_lab.topology import wait_for


class Mirror:
    """ConfigMap names -> data, as a watcher would keep them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state: dict[str, dict[str, str]] = {}

    def on_list(self, items: list[dict[str, Any]]) -> None:
        with self.lock:
            self.state = {o["metadata"]["name"]: o.get("data") or {} for o in items}

    def on_event(self, kind: str, obj: dict[str, Any]) -> None:
        with self.lock:
            if kind == "DELETED":
                self.state.pop(obj["metadata"]["name"], None)
            else:
                self.state[obj["metadata"]["name"]] = obj.get("data") or {}

    def snapshot(self) -> dict[str, dict[str, str]]:
        with self.lock:
            return dict(self.state)


def test_resumes_after_a_watch_timeout_and_lists_again_only_after_410(kube: KubeAPI, namespace: str) -> None:
    api = kube.api_client()
    core = client.CoreV1Api(api)
    mirror = Mirror()
    list_fn = functools.partial(core.list_namespaced_config_map, namespace)
    # The server ends each watch after 1 s: many resumes within the test.
    lw = ListWatch(list_fn, mirror.on_list, mirror.on_event, name="configmaps", timeout_seconds=1, page=2)
    for i in range(5):  # more than one page
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"cm{i}"}, "data": {"v": "0"}})
    lw.start()
    try:
        wait_for(lambda: len(mirror.snapshot()) == 5, 10, "the first list")
        for step in range(1, 6):
            core.patch_namespaced_config_map("cm0", namespace, {"data": {"v": str(step)}})
            time.sleep(0.7)
        core.delete_namespaced_config_map("cm4", namespace)
        wait_for(lambda: mirror.snapshot().get("cm0") == {"v": "5"} and "cm4" not in mirror.snapshot(), 10, "events")
        assert lw.resumes >= 2, "the server ended watches that the helper resumed"
        assert lw.lists == 1, "a watch that merely ended was listed again"

        # Elsewhere the history moves on (this watch sees nothing of it) and
        # is compacted: resuming from this watch's last version gives 410.
        other = f"{namespace}-other"
        kube.ensure_namespace(other)
        core.create_namespaced_config_map(other, {"metadata": {"name": "elsewhere"}})
        kube.compact_etcd()
        wait_for(lambda: lw.lists == 2, 15, "a list after 410 Gone")
        core.patch_namespaced_config_map("cm2", namespace, {"data": {"v": "after"}})
        wait_for(lambda: mirror.snapshot().get("cm2") == {"v": "after"}, 10, "events after the new list")
        assert set(mirror.snapshot()) == {"cm0", "cm1", "cm2", "cm3"}
    finally:
        lw.stop()
        api.close()
