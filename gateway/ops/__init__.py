"""The ops control plane: login, live figures, controls, audit log and autopilot."""
