"""Real servers for tests and benchmarks, started inside a lab pod."""

from __future__ import annotations

import os
import subprocess

from meshaccel_lab.topology import Lab, Pod, wait_for

NGINX_PORT = 8080
REDIS_PORT = 6379

_NGINX_CONF = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen {port};
        root {root}/www;
    }}
}}
"""


def listening(pod: Pod, port: int) -> bool:
    return f":{port} " in pod.sh("ss", "-Hltn", check=False)


def start_nginx(pod: Pod, lab: Lab, files: dict[str, bytes]) -> None:
    """nginx on :8080 in @pod serving @files (name -> content)."""
    root = f"/tmp/{lab.prefix}-{pod.name}-nginx"
    os.makedirs(f"{root}/www", exist_ok=True)
    lab.track_dir(root)
    for name, body in files.items():
        with open(f"{root}/www/{name}", "wb") as f:
            f.write(body)
    conf = lab.write_file(f"{pod.name}-nginx.conf", _NGINX_CONF.format(root=root, port=NGINX_PORT))
    pod.spawn(["nginx", "-c", str(conf)])
    wait_for(lambda: listening(pod, NGINX_PORT), what=f"nginx in {pod.name}")


def start_redis(pod: Pod) -> None:
    args = ["--port", str(REDIS_PORT), "--bind", "0.0.0.0", "--protected-mode", "no", "--save", ""]
    args += ["--appendonly", "no", "--dir", "/tmp"]
    pod.spawn(["redis-server", *args], stdout=subprocess.DEVNULL)
    wait_for(lambda: listening(pod, REDIS_PORT), what=f"redis in {pod.name}")
