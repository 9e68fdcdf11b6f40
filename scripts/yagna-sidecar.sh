#!/bin/sh
# The yagna sidecar of the golem-operator pod (installed in the image as
# /usr/local/bin/yagna-sidecar.sh; run by the Helm chart's `yagna` container).
#
# Starts `yagna service run`, then makes sure an app key named $YAGNA_APPKEY_NAME exists
# (reusing the one kept in $YAGNA_DATADIR across restarts, creating it on first start) and
# writes it, mode 0600, to $GOLEM_APPKEY_FILE on a volume shared with the operator container.
# The key never reaches stdout/stderr: the CLI output holding it goes through a pipe into a
# small parser whose only output is the file. Then the payment account is initialised (retried
# in the background: the payment driver comes up after the REST API) and the script waits for
# yagna, forwarding SIGTERM/SIGINT so the daemon shuts down cleanly.
#
# Environment: YAGNA_DATADIR (persistent volume), GOLEM_APPKEY_FILE, YAGNA_APPKEY_NAME,
# YAGNA_PAYMENT_DRIVER, YAGNA_PAYMENT_NETWORK, YAGNA_METRICS_PUSH (true/false),
# YAGNA_START_TIMEOUT (seconds), YAGNA_BIN (defaults to `yagna` on PATH).
set -eu

: "${YAGNA_DATADIR:?YAGNA_DATADIR must name the persistent data directory}"
: "${GOLEM_APPKEY_FILE:=/var/run/golem-operator/appkey}"
: "${YAGNA_APPKEY_NAME:=golem-operator}"
: "${YAGNA_PAYMENT_DRIVER:=erc20}"
: "${YAGNA_PAYMENT_NETWORK:=holesky}"
: "${YAGNA_METRICS_PUSH:=false}"
: "${YAGNA_START_TIMEOUT:=120}"
: "${YAGNA_BIN:=yagna}"
: "${YAGNA_API_URL:=http://127.0.0.1:7465}"
export YAGNA_DATADIR

log() { echo "[yagna-sidecar] $*" >&2; }

run_args="service run"
if [ "$YAGNA_METRICS_PUSH" != "true" ]; then
  run_args="$run_args --disable-metrics-push"
fi

# shellcheck disable=SC2086 # run_args is a list of words on purpose
"$YAGNA_BIN" $run_args &
yagna_pid=$!
payment_pid=""

stop() {
  log "stopping yagna"
  [ -n "$payment_pid" ] && kill "$payment_pid" 2>/dev/null || true
  kill -INT "$yagna_pid" 2>/dev/null || true
}
trap stop TERM INT

# Ready when the REST API answers (401 without a key) and the CLI reaches the daemon over GSB;
# only then is the key handed over, so the operator never starts before yagna can serve it.
rest_ready() {
  python3 -c '
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/me", timeout=2)
except urllib.error.HTTPError as error:
    sys.exit(0 if error.code == 401 else 1)
except OSError:
    sys.exit(1)
' "$YAGNA_API_URL"
}
waited=0
until rest_ready && "$YAGNA_BIN" --json app-key list >/dev/null 2>&1; do
  if ! kill -0 "$yagna_pid" 2>/dev/null; then
    wait "$yagna_pid" || status=$?
    log "yagna exited during start (status ${status:-0})"
    exit "${status:-1}"
  fi
  if [ "$waited" -ge "$YAGNA_START_TIMEOUT" ]; then
    log "yagna did not answer within ${YAGNA_START_TIMEOUT}s"
    stop
    wait "$yagna_pid" || true
    exit 1
  fi
  sleep 1
  waited=$((waited + 1))
done

# Reads `yagna --json app-key list` (or, with --created, the JSON string printed by
# `app-key create`) on stdin and writes the key of $YAGNA_APPKEY_NAME to the file atomically.
# Exit status 3: no such key yet. Prints nothing but a fixed message.
write_key() {
  python3 -c '
import json, os, sys, tempfile
name, path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
data = json.load(sys.stdin)
if mode == "created":
    key = data if isinstance(data, str) else None
else:
    key = next((e.get("key") for e in data if isinstance(e, dict) and e.get("name") == name), None)
if not key:
    sys.exit(3)
directory = os.path.dirname(path) or "."
fd, tmp = tempfile.mkstemp(dir=directory, prefix=".appkey-")
with os.fdopen(fd, "w") as out:
    out.write(key)
os.chmod(tmp, 0o600)
os.replace(tmp, path)
' "$YAGNA_APPKEY_NAME" "$GOLEM_APPKEY_FILE" "$1"
}

umask 077
if "$YAGNA_BIN" --json app-key list 2>/dev/null | write_key listed; then
  log "reusing app key '$YAGNA_APPKEY_NAME'; written to $GOLEM_APPKEY_FILE"
else
  "$YAGNA_BIN" --json app-key create "$YAGNA_APPKEY_NAME" 2>/dev/null | write_key created
  log "created app key '$YAGNA_APPKEY_NAME'; written to $GOLEM_APPKEY_FILE"
fi

# Payment account: the driver registers a little after the REST API; retry quietly.
(
  attempt=1
  while [ "$attempt" -le 30 ]; do
    if "$YAGNA_BIN" payment init --sender --driver "$YAGNA_PAYMENT_DRIVER" \
        --network "$YAGNA_PAYMENT_NETWORK" >/dev/null 2>&1; then
      log "payment account ready ($YAGNA_PAYMENT_DRIVER/$YAGNA_PAYMENT_NETWORK)"
      exit 0
    fi
    sleep 10
    attempt=$((attempt + 1))
  done
  log "payment init failed for $YAGNA_PAYMENT_DRIVER/$YAGNA_PAYMENT_NETWORK; see yagna's log"
) &
payment_pid=$!

# `wait` returns early when a trapped signal arrives; wait again for yagna's own exit.
status=0
wait "$yagna_pid" || status=$?
while kill -0 "$yagna_pid" 2>/dev/null; do
  wait "$yagna_pid" || status=$?
done
[ -n "$payment_pid" ] && kill "$payment_pid" 2>/dev/null || true
log "yagna exited (status $status)"
exit "$status"
