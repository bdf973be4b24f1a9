"""The meshaccel.io Kubernetes API: models (v1alpha1) and the CRDs generated from them."""
