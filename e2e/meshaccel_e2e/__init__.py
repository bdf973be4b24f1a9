"""A real Kubernetes node on this host for the e2e tier: `e2e/up`, `e2e/down`."""
