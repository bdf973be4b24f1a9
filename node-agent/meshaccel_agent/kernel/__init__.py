"""BPF and kernel plumbing: syscalls, map layouts, compiling, headers, host mounts, namespaces."""
