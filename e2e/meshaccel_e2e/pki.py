"""The cluster's certificates and credentials, made with the openssl CLI.

    ca.{crt,key}                       the cluster CA (serving and client certs)
    apiserver.{crt,key}                serving: 127.0.0.1, the host, the Service IP
    apiserver-kubelet-client.{crt,key} the API server's client cert for kubelets
    sa.{key,pub}                       ServiceAccount token signing
    tokens.csv                         one bearer token per component

Components authenticate with static tokens (simplest to write, and the
identities are the ones kubeadm gives them, so the bootstrap RBAC and the
Node authorizer apply unchanged).
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from meshaccel_e2e.layout import API_SERVICE_IP, NODE_NAME

#: name -> (user, groups): who each component is to the API server.
IDENTITIES = {
    "admin": ("meshaccel-e2e-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", ""),
    "kube-scheduler": ("system:kube-scheduler", ""),
    "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
    "kube-proxy": ("system:kube-proxy", ""),
}


def _openssl(*args: str) -> None:
    res = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {res.stderr.strip()}")


def _signed(pki: Path, name: str, subject: str, extensions: str) -> None:
    key, csr, crt, ext = (pki / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    _openssl("genrsa", "-out", str(key), "2048")
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    ext.write_text(extensions)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
             "-CAcreateserial", "-days", "30", "-extfile", str(ext), "-out", str(crt))  # fmt: skip
    csr.unlink()
    ext.unlink()


def ensure(pki: Path, host_ip: str) -> dict[str, str]:
    """Create what is missing; returns each component's token."""
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    if not (pki / "ca.crt").exists():
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=meshaccel-e2e-ca",
                 "-keyout", str(pki / "ca.key"), "-out", str(pki / "ca.crt"))  # fmt: skip
    if not (pki / "apiserver.crt").exists():
        names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
        san = ",".join([f"IP:{ip}" for ip in ("127.0.0.1", host_ip, API_SERVICE_IP)] + [f"DNS:{n}" for n in names])
        usage = "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
        _signed(pki, "apiserver", "/CN=kube-apiserver", f"subjectAltName={san}\n{usage}")
    if not (pki / "apiserver-kubelet-client.crt").exists():
        _signed(pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client",
                "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n")  # fmt: skip
    if not (pki / "sa.key").exists():
        _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    tokens_file = pki / "tokens.csv"
    if not tokens_file.exists():
        lines = []
        for name, (user, groups) in IDENTITIES.items():
            lines.append(f'{secrets.token_hex(24)},{user},{name},"{groups}"' if groups else
                         f"{secrets.token_hex(24)},{user},{name}")  # fmt: skip
        tokens_file.write_text("\n".join(lines) + "\n")
        tokens_file.chmod(0o600)
    return tokens(pki)


def tokens(pki: Path) -> dict[str, str]:
    """Each component's token ({} before ensure() made them)."""
    path = pki / "tokens.csv"
    if not path.exists():
        return {}
    return {line.split(",")[2]: line.split(",")[0] for line in path.read_text().splitlines() if line}
