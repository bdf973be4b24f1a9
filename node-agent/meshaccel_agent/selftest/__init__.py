"""The kernel self-test: the parent (run) and the child it starts in a private namespace."""
