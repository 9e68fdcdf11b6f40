# syntax=docker/dockerfile:1
# The golem-operator image: the operator (console script `golem-operator`) and yagna (PyPI
# golem-node) in one virtualenv, so one image serves the operator container and the yagna
# sidecar (scripts/yagna-sidecar.sh). Runs as a non-root user on a read-only root filesystem:
# it writes only to /tmp and to mounted volumes (the chart mounts emptyDirs and a PVC there).
# tests/unit/chart/test_image.py lints this file with hadolint and replays the build stage's
# RUN steps in a temporary directory.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VENV=/opt/golem-operator \
    BUILD_TOOLS=/opt/build-tools \
    WHEELS=/opt/wheels
WORKDIR /src
COPY requirements.lock requirements-build.lock ./
# The pinned build backend, and the runtime virtualenv with exactly the locked versions.
RUN python3 -m venv "$BUILD_TOOLS" \
 && "$BUILD_TOOLS/bin/pip" install --no-deps -r requirements-build.lock \
 && python3 -m venv "$VENV" \
 && "$VENV/bin/pip" install --no-deps -r requirements.lock
COPY pyproject.toml ./
COPY operator/ ./operator/
# A separate layer so that source edits keep the locked dependencies cached: build the
# package's wheel, install it without dependencies, and check the set is consistent.
# hadolint ignore=DL3059
RUN "$BUILD_TOOLS/bin/pip" wheel --no-deps --no-build-isolation --wheel-dir "$WHEELS" . \
 && "$VENV/bin/pip" install --no-deps "$WHEELS"/golem_operator-*.whl \
 && "$VENV/bin/pip" check

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="golem-operator" \
      org.opencontainers.image.description="Kubernetes operator for long-lived services on the Golem Network, with yagna" \
      org.opencontainers.image.licenses="Apache-2.0"
# A passwd entry for the runtime user: kopf (getpass) and yagna look the user up.
RUN groupadd --gid 65532 golem \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin golem
COPY --from=build /opt/golem-operator /opt/golem-operator
COPY --chmod=0755 scripts/yagna-sidecar.sh /usr/local/bin/yagna-sidecar.sh
# Every writable location points at /tmp (an emptyDir in the chart) or a volume.
ENV PATH=/opt/golem-operator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    USER=golem \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    XDG_DATA_HOME=/tmp/.local/share \
    YAGNA_DATADIR=/var/lib/yagna \
    GOLEM_APPKEY_FILE=/var/run/golem-operator/appkey
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 9090
ENTRYPOINT ["golem-operator"]
CMD ["run"]
