"""A node in network namespaces: pods on a bridge, Istio-style sidecars and a
standalone agent. Used by the demo, the tests and the benchmarks.

Everything a lab creates carries its random prefix and is torn down by
`Lab.close()`, also when a test fails; processes are ended by PID only.
"""
