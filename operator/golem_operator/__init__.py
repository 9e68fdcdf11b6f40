"""Golem Service Operator: runs long-lived services on the Golem Network from Kubernetes."""

__version__ = "0.1.0"
