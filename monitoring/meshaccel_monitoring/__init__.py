"""meshaccel's dashboards and alerts, as code."""
