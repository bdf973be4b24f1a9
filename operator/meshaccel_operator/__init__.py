"""The meshaccel kopf operator (control plane; arrives with the control-plane issue)."""
