"""Names and defaults shared by the node agent and the operator."""

API_GROUP = "meshaccel.io"
METRIC_PREFIX = "meshaccel"

#: Everything the agent pins lives under this directory of the bpf filesystem.
PIN_DIR_NAME = "meshaccel"
DEFAULT_BPFFS = "/sys/fs/bpf"

DEFAULT_METRICS_ADDRESS = "127.0.0.1:9464"

#: Where the agent keeps derived files (the merged fallback kernel headers).
DEFAULT_CACHE_DIR = "/var/cache/meshaccel"
