#!/usr/bin/env bash
# The real-network suite: build (or reuse) the provider side from the yagna source, then run
# tests/realnet against a private real Golem network (root: network namespaces, bubblewrap).
# YAGNA_SRC / YAGNA_GIT_MIRRORS: see scripts/build-yagna-provider.sh. A missing source or a
# failed build fails the suite with the reason; it never skips. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source .env.tools
if [[ $(id -u) -ne 0 ]]; then
  echo "realnet-test: needs root (unshare --net, nsenter, bubblewrap sandboxes)" >&2
  exit 1
fi
started=$(date +%s)
if ! bin_dir=$(bash scripts/build-yagna-provider.sh); then
  echo "realnet-test: FAILED: the provider side could not be built (see above)." >&2
  echo "  Give the yagna source: YAGNA_SRC=<yagna checkout or git dir with tag v0.17.6>" >&2
  echo "  (and YAGNA_GIT_MIRRORS=<folder of git mirrors> when github.com is unreachable)." >&2
  exit 1
fi
echo "realnet-test: provider binaries in $bin_dir ($(($(date +%s) - started)) s)"
export GOLEM_OPERATOR_PROVIDER_BIN="$bin_dir" GOLEM_OPERATOR_REALNET=1
exec .venv/bin/pytest -p no:cacheprovider -s tests/realnet "$@"
