"""Container images built here, offline: `python -m meshaccel_images build`."""
