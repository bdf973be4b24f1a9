"""Leader election on a coordination.k8s.io Lease, as client-go does it.

The operator runs one replica, but a rollout or a node partition can briefly
run two. Only the holder of the Lease runs kopf. A holder that finds the lease
taken by another instance exits. A holder that merely cannot reach the API
server keeps running (an API server restart must not cost the operator its
state), but `holds()` turns false once its last renewal is older than the
lease, and every write path checks it first: whoever might have taken over
meanwhile, this instance writes nothing until it has renewed again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class LeaseElector:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        duration: int = 15,
        renew_every: float = 5.0,
    ) -> None:
        self.api = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration = duration
        self.renew_every = renew_every
        self._last_renew = 0.0

    def _try(self) -> bool:
        now = _now()
        spec = client.V1LeaseSpec(
            holder_identity=self.identity, lease_duration_seconds=self.duration, renew_time=now, acquire_time=now
        )
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(metadata=client.V1ObjectMeta(name=self.name), spec=spec)
            try:
                self.api.create_namespaced_lease(self.namespace, body)
            except ApiException as err:
                if err.status == 409:
                    return False  # someone else created it first
                raise
            return True
        held = lease.spec.holder_identity
        renewed = lease.spec.renew_time
        expired = renewed is None or renewed + timedelta(seconds=lease.spec.lease_duration_seconds or 0) < now
        if held not in (self.identity, None, "") and not expired:
            return False
        if held == self.identity and lease.spec.acquire_time is not None:
            spec.acquire_time = lease.spec.acquire_time
        lease.spec = spec
        try:
            # Optimistic concurrency: the read's resourceVersion makes a racing
            # candidate's update fail with 409.
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    def acquire(self) -> None:
        """Block until this process holds the lease."""
        announced = False
        while True:
            try:
                if self._try():
                    self._last_renew = time.monotonic()
                    log.info("leader election: %s holds lease %s/%s", self.identity, self.namespace, self.name)
                    return
            except ApiException as exc:
                log.warning("leader election: %s", exc.reason)
            if not announced:
                log.info("leader election: waiting for lease %s/%s", self.namespace, self.name)
                announced = True
            time.sleep(self.renew_every)

    def release(self) -> None:
        """Give the lease up at a clean shutdown, so a successor starts at
        once instead of waiting for it to expire."""
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.renew_time = None
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
            log.info("leader election: lease released")
        except Exception as exc:  # it expires by itself anyway
            log.warning("leader election: could not release the lease: %s", exc)

    def holds(self) -> bool:
        """True while the last successful renewal is younger than the lease
        (with a margin for clock rate differences)."""
        return time.monotonic() - self._last_renew < self.duration * 0.8

    def keep_renewing(self) -> None:
        """Renew in a daemon thread; exit the process once the lease is lost."""

        def loop() -> None:
            while True:
                time.sleep(self.renew_every)
                try:
                    if self._try():
                        self._last_renew = time.monotonic()
                        continue
                    log.error("leader election: lease taken over by another instance; exiting")
                    os._exit(1)
                except Exception as exc:  # API server unreachable: keep trying, write nothing
                    if not self.holds():
                        log.warning("leader election: cannot renew (%s); writes paused", exc)

        threading.Thread(target=loop, name="lease-renewer", daemon=True).start()
