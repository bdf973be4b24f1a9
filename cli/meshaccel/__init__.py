"""The `meshaccel` command: one entry point for people (and `kubectl meshaccel`)."""
