"""ExeScript command builders produce the daemon's externally tagged command JSON."""

from __future__ import annotations

from golem_operator.golem import exescript


def test_deploy_and_start() -> None:
    assert exescript.deploy() == {"deploy": {}}
    assert exescript.deploy(env={"A": "1"}, hostname="svc-0") == {
        "deploy": {"env": {"A": "1"}, "hostname": "svc-0"}
    }
    assert exescript.start() == {"start": {}}
    assert exescript.start(args=["--fast"]) == {"start": {"args": ["--fast"]}}


def test_run_captures_both_streams_by_default() -> None:
    assert exescript.run("/bin/echo", ["hi"]) == {
        "run": {
            "entry_point": "/bin/echo",
            "args": ["hi"],
            "capture": {
                "stdout": {"atEnd": {"format": "str"}},
                "stderr": {"atEnd": {"format": "str"}},
            },
        }
    }


def test_run_with_streaming_capture_and_tail_limit() -> None:
    command = exescript.run(
        "/usr/bin/server",
        capture_stdout=exescript.capture("stream", limit=4096),
        capture_stderr=exescript.capture("atEnd", fmt="bin", limit=1024),
    )
    assert command["run"]["args"] == []
    assert command["run"]["capture"] == {
        "stdout": {"stream": {"format": "str", "limit": 4096}},
        "stderr": {"atEnd": {"format": "bin", "tail": 1024}},
    }


def test_transfer_and_terminate() -> None:
    assert exescript.transfer("http://127.0.0.1:8000/a", "container:/in/a") == {
        "transfer": {"from": "http://127.0.0.1:8000/a", "to": "container:/in/a"}
    }
    assert exescript.terminate() == {"terminate": {}}
