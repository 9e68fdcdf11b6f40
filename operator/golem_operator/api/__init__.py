"""The GolemService API (group services.golem.network, version v1alpha1).

Pydantic models are the one source: the CRD in crds/ is generated from them (``api.crd``).
"""

from golem_operator.api.spec import GolemServiceSpec
from golem_operator.api.status import GolemServiceStatus, Instance, InstanceState

__all__ = ["GolemServiceSpec", "GolemServiceStatus", "Instance", "InstanceState"]
