"""The meshaccel node agent: loads the eBPF datapath and keeps it in sync."""
