"""Kubernetes mode: enrolment from this node's NodeEnrolment, status back to it."""
