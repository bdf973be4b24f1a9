"""The eBPF datapath on this node: pinned generations, cgroup attachment,
enrolment maps, install/adopt/replace and uninstall."""
