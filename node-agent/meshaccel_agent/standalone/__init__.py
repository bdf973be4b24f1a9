"""The standalone agent: enrolment from a YAML file, for hosts without Kubernetes."""
