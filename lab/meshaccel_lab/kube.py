"""A real kube-apiserver on a private etcd, for the `k8s` test tier.

    etcd            http://127.0.0.1:<client>   data in <workdir>/etcd
    kube-apiserver  https://127.0.0.1:<secure>  static admin token, RBAC,
                                                ServiceAccount token signing

No controller-manager, scheduler or kubelet runs: nothing creates a
namespace's `default` ServiceAccount, schedules a pod or reports its status.
Tests do that themselves (`ensure_namespace`, `spec.nodeName`, patching the
status subresource), which keeps every object under the test's control.

The binaries come from scripts/build-k8s.sh (built from the Go module proxy
into /var/cache/meshaccel/k8s/v<version>). Both processes are children of
this object and are ended by PID on close(), which also removes the work dir.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from meshaccel_lab.topology import SERVICE_CIDR, stop_process

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

K8S_VERSION = "1.30.4"
DEFAULT_BIN_DIR = Path(f"/var/cache/meshaccel/k8s/v{K8S_VERSION}")
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Tokens minted without --audience get the first of --api-audiences.
API_AUDIENCES = (SA_ISSUER, "meshaccel")
ADMIN_USER = "meshaccel-admin"


class KubectlError(RuntimeError):
    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} failed ({returncode}): {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


def _port_is_free(port: int) -> bool:
    # Without SO_REUSEADDR this bind also fails when 0.0.0.0:port is taken or
    # a TIME_WAIT connection still uses the port, so a "free" port is clean.
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """Free loopback ports below the kernel's ephemeral range.

    Ports from bind(("", 0)) come out of the ephemeral range, where any
    outgoing connection may take one as its source port while the apiserver
    is down during restart_apiserver(); below the range only listeners bind.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = random.sample(range(max(1024, low - 12000), low), k=200)
    ports = [p for p in candidates if _port_is_free(p)][:count]
    if len(ports) < count:
        raise RuntimeError(f"found only {len(ports)} free loopback ports below {low}")
    return ports


def _insecure_tls() -> ssl.SSLContext:
    # The apiserver serves a self-signed certificate it generates in --cert-dir.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as e:
        return f"<no log: {e}>"


class KubeAPI:
    """etcd + kube-apiserver as child processes; close() removes every trace.

    Starts in the constructor (like Lab) and cleans up itself when that fails.
    `watch_cache=False` (the default) passes --watch-cache=false so watches are
    served by etcd: a watch then gets 410 Gone exactly when its resourceVersion
    was compacted away (compact_etcd), and one that restart_apiserver() cut
    off can resume from its last resourceVersion. With the watch cache on, as
    in a real cluster, the apiserver answers 410 to any resourceVersion older
    than its last (re)start, and never to a compacted one that is still in
    the cache's window.
    """

    def __init__(
        self,
        bin_dir: Path = DEFAULT_BIN_DIR,
        *,
        watch_cache: bool = False,
        extra_apiserver_args: Sequence[str] = (),
        start_timeout: float = 60.0,
    ) -> None:
        self.bin_dir = bin_dir
        self.start_timeout = start_timeout
        self.etcd_proc: subprocess.Popen[bytes] | None = None
        self.apiserver_proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        for binary in ("etcd", "kube-apiserver"):
            if not (bin_dir / binary).is_file():
                raise FileNotFoundError(f"{bin_dir / binary} is missing: run scripts/build-k8s.sh")
        self.workdir = Path(tempfile.mkdtemp(prefix="meshaccel-kube-", dir="/tmp"))
        try:
            self.etcd_port, self.etcd_peer_port, self.port = _free_ports(3)
            self.etcd_url = f"http://127.0.0.1:{self.etcd_port}"
            self.url = f"https://127.0.0.1:{self.port}"
            self.admin_token = secrets.token_hex(24)
            self._apiserver_args = self._write_apiserver_files(watch_cache, extra_apiserver_args)
            self.admin_kubeconfig = self.write_kubeconfig("admin", ADMIN_USER, self.admin_token)
            self._start_etcd()
            self._start_apiserver()
        except BaseException:
            self.close()
            raise

    # -- processes ---------------------------------------------------------

    @staticmethod
    def _spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
        # Appending: a restarted apiserver's log follows the previous one's.
        # A session of its own: Ctrl-C in pytest does not reach it, close() does.
        with log.open("ab") as out:
            return subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )

    def _start_etcd(self) -> None:
        self.etcd_log = self.workdir / "etcd.log"
        self.etcd_proc = self._spawn(
            [
                str(self.bin_dir / "etcd"),
                "--name=meshaccel",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
                f"--initial-cluster=meshaccel=http://127.0.0.1:{self.etcd_peer_port}",
                "--unsafe-no-fsync",  # a throwaway store: durability only costs time
                "--log-level=warn",
            ],
            self.etcd_log,
        )
        self._wait(self.etcd_proc, self.etcd_log, "etcd", self._etcd_ready)

    def _etcd_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.etcd_url + "/health", timeout=2) as r:
                return bool(json.load(r).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _write_apiserver_files(self, watch_cache: bool, extra: Sequence[str]) -> list[str]:
        certs = self.workdir / "certs"
        certs.mkdir()
        sa_key = certs / "sa.key"
        # The openssl CLI rather than `cryptography`, which the venv only sees
        # through Debian's python3-cryptography, not through our dependencies.
        subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f"{self.admin_token},{ADMIN_USER},{ADMIN_USER},system:masters\n")
        tokens.chmod(0o600)
        self.apiserver_log = self.workdir / "kube-apiserver.log"
        return [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={certs}",  # self-signed serving certificate generated here
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            f"--api-audiences={','.join(API_AUDIENCES)}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The agent's DaemonSet is privileged; every real cluster allows it.
            "--allow-privileged=true",
            # The `kubernetes` Service would point at 127.0.0.1, which Endpoints
            # validation rejects every 10 s; nothing in the tests needs it.
            "--endpoint-reconciler-type=none",
            # 410 Gone only when a test calls compact_etcd(), never on the
            # apiserver's own 5-minute schedule in the middle of a test.
            "--etcd-compaction-interval=0",
            f"--watch-cache={str(watch_cache).lower()}",
            "--profiling=false",
            *extra,
        ]

    def _start_apiserver(self) -> None:
        self.apiserver_proc = self._spawn(self._apiserver_args, self.apiserver_log)
        self._wait(self.apiserver_proc, self.apiserver_log, "kube-apiserver", self._apiserver_ready)

    def _apiserver_ready(self) -> bool:
        request = urllib.request.Request(self.url + "/readyz", headers={"Authorization": f"Bearer {self.admin_token}"})
        try:
            with urllib.request.urlopen(request, timeout=2, context=_insecure_tls()) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.HTTPError):
            return False

    def _wait(self, proc: subprocess.Popen[bytes], log: Path, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}; end of {log}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready after {self.start_timeout}s; end of {log}:\n{_tail(log)}")
            time.sleep(0.1)

    def restart_apiserver(self, timeout: float = 20.0, compact: bool = False) -> None:
        """Stop kube-apiserver and start it again: same port, flags and etcd.

        With @compact, etcd is compacted while the apiserver is down: no
        client can write then, so every resourceVersion a watcher holds is
        older than the compaction and every resumed watch gets 410 Gone.
        (Compacting before the restart races with writes in between, e.g. an
        agent's status write, whose event moves its watcher past it.)"""
        if self.apiserver_proc is not None:
            stop_process(self.apiserver_proc, timeout)
        if compact:
            self.compact_etcd()
        with self.apiserver_log.open("a") as log:
            log.write(f"\n===== meshaccel: restart at {time.strftime('%H:%M:%S')} =====\n")
        self._start_apiserver()

    def compact_etcd(self) -> int:
        """Write a marker key, then compact etcd at the revision that wrote it
        and return that revision.

        Every resourceVersion a client has seen is then older than the
        compaction, so every watch that resumes gets 410 Gone (with the watch
        cache off; see the class docstring). Without the marker a watcher
        whose last event was the newest write could resume at exactly the
        compacted revision, which etcd still serves. Goes through etcd's JSON
        gateway for the gRPC API, so no etcdctl is needed.
        """
        key = base64.b64encode(b"/meshaccel-test/compaction-marker").decode()
        marker: dict[str, object] = {"key": key, "value": ""}
        header = self._etcd_post("/v3/kv/put", marker)["header"]
        revision = int(header["revision"])  # int64 fields are strings in the JSON mapping
        self._etcd_post("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def _etcd_post(self, path: str, body: dict[str, object]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.etcd_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return dict(json.load(r))

    def close(self) -> None:
        """End both processes by PID and remove the work dir; idempotent."""
        if self._closed:
            return
        self._closed = True
        for proc in (self.apiserver_proc, self.etcd_proc):  # apiserver first: it talks to etcd
            if proc is not None:
                stop_process(proc, timeout=20.0)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KubeAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- clients -----------------------------------------------------------

    def write_kubeconfig(self, name: str, user: str, token: str) -> Path:
        """A kubeconfig file in the work dir for a bearer token."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "meshaccel", "cluster": {"server": self.url, "insecure-skip-tls-verify": True}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "meshaccel", "user": user}}],
            "current-context": name,
        }
        path = self.workdir / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """kubectl against this apiserver, as admin unless @kubeconfig is given."""
        cmd = ["kubectl", f"--kubeconfig={kubeconfig or self.admin_kubeconfig}", *args]
        res = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=120)
        if check and res.returncode != 0:
            raise KubectlError(args, res.returncode, res.stderr)
        return res

    def apply(self, manifest: object) -> None:
        """kubectl apply one object (or a v1 List) given as a dict."""
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def ensure_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        """The namespace and its `default` ServiceAccount.

        Without a controller-manager nobody creates that ServiceAccount, and
        the ServiceAccount admission plugin rejects pods that run as a missing
        one. Applied, so calling again is harmless.
        """
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}}
        self.apply({"apiVersion": "v1", "kind": "List", "items": [namespace, account]})

    def service_account_kubeconfig(self, namespace: str, name: str, bound_pod: str | None = None) -> Path:
        """A kubeconfig with a fresh 1 h TokenRequest token for @namespace/@name.

        With @bound_pod the token is bound to that pod: it stops working when
        the pod is deleted (up to 10 s later: the apiserver caches successful
        token authentications), and the authenticated user's extra carries
        authentication.kubernetes.io/pod-name and pod-uid. On 1.30 it also
        carries authentication.kubernetes.io/node-name when the pod has
        spec.nodeName (ServiceAccountTokenPodNodeInfo is beta and on by default
        there, no feature gate needed), plus .../node-uid only when that Node
        object exists. This is how a node agent proves which node it runs on.
        """
        args = ["create", "token", name, "-n", namespace, "--duration=1h"]
        if bound_pod is not None:
            args += ["--bound-object-kind=Pod", f"--bound-object-name={bound_pod}"]
        token = self.kubectl(*args).stdout.strip()
        suffix = f"-{bound_pod}" if bound_pod else ""
        return self.write_kubeconfig(
            f"sa-{namespace}-{name}{suffix}", f"system:serviceaccount:{namespace}:{name}", token
        )

    def api_client(self, kubeconfig: Path | None = None) -> ApiClient:
        """A kubernetes.client.ApiClient for @kubeconfig (admin by default)."""
        # Imported here: only the tests need the (heavy) client package.
        from kubernetes import config

        api: ApiClient = config.new_client_from_config(config_file=str(kubeconfig or self.admin_kubeconfig))
        return api
