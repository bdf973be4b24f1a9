"""How both the operator and the agent reach the API server."""

from __future__ import annotations

from kubernetes import client, config


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """@kubeconfig if given; in a pod, its service account; else $KUBECONFIG."""
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()
