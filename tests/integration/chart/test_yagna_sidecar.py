"""The yagna sidecar script (scripts/yagna-sidecar.sh) with the image's real yagna, sandboxed like
the chart's pod: read-only root, uid 65532, data dir and key dir as the only writable volumes,
only loopback. It must create an app key on first start, hand it over in a 0600 file without
printing it, reuse it after a restart, and stop yagna cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

from imagekit import ReplayedImage, runtime_env, sandboxed

KEY_SHAPE = re.compile(r"^[0-9a-f]{32}$")
CHAINS = ("MAINNET", "GOERLI", "HOLESKY", "MUMBAI", "POLYGON", "AMOY", "SEPOLIA", "HOODI")

# Runs inside the sandbox, as the pod would: start the sidecar, wait for the key file, call
# GET /me with the key (status code only), then SIGTERM and report how the sidecar ended.
DRIVER = r"""
import json, os, signal, subprocess, sys, time, urllib.error, urllib.request
keyfile = os.environ["GOLEM_APPKEY_FILE"]
with open("/tmp/logs/sidecar.out", "wb") as out, open("/tmp/logs/sidecar.err", "wb") as err:
    proc = subprocess.Popen(["yagna-sidecar.sh"], stdout=out, stderr=err)
    deadline = time.monotonic() + 90
    while not (os.path.exists(keyfile) and os.path.getsize(keyfile)):
        if proc.poll() is not None or time.monotonic() > deadline:
            print(json.dumps({"started": False, "exit": proc.poll()}))
            sys.exit(0)
        time.sleep(0.2)
    key = open(keyfile).read()
    def me(token):
        request = urllib.request.Request("http://127.0.0.1:7465/me",
                                         headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
    with_key, wrong_key = me(key), me("0" * 32)
    proc.send_signal(signal.SIGTERM)
    began = time.monotonic()
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = "killed"
    print(json.dumps({"started": True, "me": with_key, "me_wrong_key": wrong_key,
                      "exit": code, "stop_seconds": round(time.monotonic() - began, 1)}))
"""


def sidecar_env() -> dict[str, str]:
    env = {
        **runtime_env(),
        "HOME": "/tmp/home",
        "YAGNA_DATADIR": "/tmp/yagna-data",
        "GOLEM_APPKEY_FILE": "/tmp/run/appkey",
        "YAGNA_APPKEY_NAME": "golem-operator",
        "YAGNA_API_URL": "http://127.0.0.1:7465",
        "GSB_URL": "tcp://127.0.0.1:7464",
        "YA_NET_TYPE": "hybrid",
        "YA_NET_RELAY_HOST": "127.0.0.1:7477",
        "YA_NET_BIND_URL": "udp://127.0.0.1:11500",
        "CENTRAL_NET_HOST": "127.0.0.1:7464",
        "YAGNA_METRICS_URL": "http://127.0.0.1:9092/",
        "YA_CONSENT_STATS": "deny",
        "YAGNA_START_TIMEOUT": "60",
    }
    for chain in CHAINS:
        env[f"{chain}_GETH_ADDR"] = "http://127.0.0.1:8545"
    return env


def start_and_stop(image: ReplayedImage, state: Path, run: str) -> tuple[dict[str, object], str]:
    """One pod start: returns the driver's report and everything the sidecar printed."""
    logs = state / f"logs-{run}"
    for directory in (state / "data", state / "run", logs):
        directory.mkdir(exist_ok=True)
    result = subprocess.run(
        sandboxed(
            image,
            ["python3", "-c", DRIVER],
            env=sidecar_env(),
            writable={
                state / "data": "/tmp/yagna-data",
                state / "run": "/tmp/run",
                logs: "/tmp/logs",
            },
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    printed = (
        result.stdout
        + result.stderr
        + (logs / "sidecar.out").read_text(errors="replace")
        + (logs / "sidecar.err").read_text(errors="replace")
    )
    assert result.returncode == 0, printed[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report, printed


def test_sidecar_creates_hands_over_and_reuses_the_app_key(
    replayed_image: ReplayedImage, tmp_path: Path
) -> None:
    state = tmp_path
    first, printed_first = start_and_stop(replayed_image, state, "first")
    assert first["started"] is True, printed_first[-3000:]
    keyfile = state / "run" / "appkey"
    key = keyfile.read_text()
    assert KEY_SHAPE.match(key)
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    # The key works against the daemon, a wrong one does not.
    assert first["me"] == 200 and first["me_wrong_key"] == 401
    # SIGTERM stops yagna and the script promptly.
    assert first["exit"] in (0, 130, 143) and float(str(first["stop_seconds"])) < 20
    assert "created app key" in printed_first
    # yagna's identity and key live in the data volume.
    assert any((state / "data").iterdir())

    keyfile.unlink()  # the in-memory emptyDir is gone after a pod restart; the PVC is not
    second, printed_second = start_and_stop(replayed_image, state, "second")
    assert second["started"] is True and second["me"] == 200
    assert keyfile.read_text() == key
    assert "reusing app key" in printed_second

    for printed in (printed_first, printed_second):
        assert key not in printed
    for log_file in (state / "data").rglob("*.log"):
        assert key not in log_file.read_text(errors="replace"), log_file
