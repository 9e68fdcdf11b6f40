#!/usr/bin/env bash
# Run the client contract suite against the real yagna daemon only (the `yagna` mark):
# yagna starts inside a loopback-only network namespace, so this needs root (unshare, nsenter).
# Extra arguments go to pytest, e.g. scripts/yagna-contract.sh -k invoice -x
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -f .env.tools ]]; then
  # shellcheck disable=SC1091
  source .env.tools
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "yagna-contract: needs root to create the network namespace (unshare --net)" >&2
  exit 1
fi
exec .venv/bin/pytest -p no:cacheprovider -m yagna tests/contract "$@"
