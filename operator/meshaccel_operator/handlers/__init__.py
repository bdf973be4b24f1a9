"""kopf wiring, one module per resource. Importing this package registers
every handler with kopf.

Handlers stay thin: indexes hold the small facts the rules need (never whole
objects), event handlers only mark nodes dirty, and the NodeWriter and the
status loop do the work with the pure functions of `desired` and `status`.
"""

from meshaccel_operator.handlers import namespaces, nodeagents, nodeenrolments, policies, startup
from meshaccel_operator.handlers.runtime import RUNTIME

__all__ = ["RUNTIME", "namespaces", "nodeagents", "nodeenrolments", "policies", "startup"]
