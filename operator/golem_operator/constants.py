"""Names shared by the API, the handlers and the tooling: group, version, kind, labels."""

from typing import Final

GROUP: Final = "services.golem.network"
VERSION: Final = "v1alpha1"
KIND: Final = "GolemService"
PLURAL: Final = "golemservices"
SINGULAR: Final = "golemservice"
SHORT_NAMES: Final = ("gsvc",)
CATEGORIES: Final = ("golem",)
API_VERSION: Final = f"{GROUP}/{VERSION}"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

#: One object per instance of a GolemService (as a Pod is to a ReplicaSet).
INSTANCE_KIND: Final = "GolemServiceInstance"
INSTANCE_PLURAL: Final = "golemserviceinstances"
INSTANCE_SINGULAR: Final = "golemserviceinstance"
INSTANCE_SHORT_NAMES: Final = ("gsi",)
INSTANCE_CRD_NAME: Final = f"{INSTANCE_PLURAL}.{GROUP}"

#: The label that ties a service's instances together; status.selector is built from it.
SERVICE_LABEL: Final = f"{GROUP}/service"
#: The label naming the revision (hash of what it runs) of an instance.
REVISION_LABEL: Final = f"{GROUP}/revision"
#: The finalizer that keeps a GolemService until its agreements are settled.
FINALIZER: Final = f"{GROUP}/finalizer"
#: The finalizer that keeps a GolemServiceInstance until its agreement is settled. (Not
#: FINALIZER: kopf drops its own finalizer from objects that have no deletion handler.)
INSTANCE_FINALIZER: Final = f"{GROUP}/settle"
#: Annotation an admin sets to "true" to drop the finalizer without settling on Golem.
FORCE_DELETE_ANNOTATION: Final = f"{GROUP}/force-delete"
#: Prefix for kopf's own bookkeeping annotations.
ANNOTATION_PREFIX: Final = f"operator.{GROUP}"
FIELD_MANAGER: Final = "golem-operator"
#: Label a Secret must carry (value "true") before upload commands may read it.
UPLOAD_LABEL: Final = f"{GROUP}/upload"
