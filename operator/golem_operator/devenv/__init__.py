"""Local development environment: control plane and demo."""
