"""spec.network: the instances of a service share a Golem VPN and reach each other in it.

Each instance's start script serves a page naming its host name on its VPN address; each
run script fetches every instance's page by host name (`<service>-<ordinal>`) and prints
what answered, so an instance's lastRun shows the other's answer only if traffic flows
between the two activities over the VPN.
"""

from __future__ import annotations

from typing import Any

from support.operator_harness import Service, simple_manifest

CIDR = "10.77.0.0/24"
PORT = 8000
SERVE = (
    "mkdir -p /golem/work/www && hostname > /golem/work/www/index.html && cd /golem/work/www "
    f'&& nohup python3 -m http.server -b "$(hostname)" {PORT} >../http.log 2>&1 &'
)
# Prints "<name> <answer>" for every host name given.
FETCH = (
    "import sys, urllib.request\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    f"        url = f'http://{{name}}:{PORT}/'\n"
    "        answer = urllib.request.urlopen(url, timeout=2).read().decode().strip()\n"
    "    except Exception as error:\n"
    "        answer = 'unreachable ' + type(error).__name__\n"
    "    print(name, answer)\n"
)


def manifest(service: Service, replicas: int = 2) -> dict[str, Any]:
    names = [f"{service.name}-{n}" for n in range(replicas)]
    return simple_manifest(
        replicas=replicas,
        network={"cidr": CIDR},
        lifecycle={
            "start": {"commands": [{"run": {"entrypoint": "/bin/sh", "args": ["-c", SERVE]}}]},
            "run": {
                "intervalSeconds": 1,
                "commands": [
                    {"run": {"entrypoint": "/usr/bin/python3", "args": ["-c", FETCH, *names]}}
                ],
            },
        },
    )


def answers(instance: dict[str, Any]) -> dict[str, str]:
    stdout = (instance.get("lastRun") or {}).get("stdout", "")
    return dict(line.split(" ", 1) for line in stdout.splitlines() if " " in line)


def everyone_answers(service: Service, names: list[str]) -> list[dict[str, Any]] | None:
    """The Running instances, once each one's last run heard every name answer itself."""
    running = service.instances("Running")
    if len(running) != len(names):
        return None
    expected = {name: name for name in names}
    return running if all(answers(i) == expected for i in running) else None


def vpn_networks(service: Service) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in service.net.audit()["networks"]}


def test_instances_reach_each_other_over_the_service_network(service: Service) -> None:
    service.apply(manifest(service))
    names = [f"{service.name}-0", f"{service.name}-1"]
    running = service.wait(
        "both instances answering each other by host name",
        lambda: everyone_answers(service, names),
        120,
    )

    # The network is recorded in the service's status, each instance's place in its own.
    network = service.status["network"]
    assert network["cidr"] == CIDR and network["id"]
    by_ordinal = {i["ordinal"]: i for i in running}
    assert sorted(by_ordinal) == [0, 1]
    for ordinal, instance in by_ordinal.items():
        assert instance["hostname"] == f"{service.name}-{ordinal}"
        assert instance["vpnAddress"] == f"10.77.0.{2 + ordinal}"
        assert instance["networkId"] == network["id"]
    # The daemon has each instance's provider node at its address.
    listed = vpn_networks(service)[network["id"]]
    assert {(n["id"], n["ip"]) for n in listed["nodes"]} == {
        (i["provider"]["id"], i["vpnAddress"]) for i in running
    }

    # An instance that fails (its activity crashes) is replaced: the replacement takes over
    # its ordinal, so its name and address, and answers there.
    first = by_ordinal[0]
    service.net.crash(first["activityId"])

    def replaced() -> list[dict[str, Any]] | None:
        found = everyone_answers(service, names)
        if found and first["name"] not in {i["name"] for i in found}:
            return found
        return None

    running = service.wait("the replacement answering as ordinal 0", replaced, 120)
    successor = next(i for i in running if i["ordinal"] == 0)
    assert successor["vpnAddress"] == first["vpnAddress"] == "10.77.0.2"
    assert successor["hostname"] == first["hostname"]
    listed = vpn_networks(service)[network["id"]]
    assert {(n["id"], n["ip"]) for n in listed["nodes"]} == {
        (i["provider"]["id"], i["vpnAddress"]) for i in running
    }

    # Deleting the service deletes its network (before the finalizer goes).
    service.delete(timeout=120)
    assert network["id"] not in vpn_networks(service)
    reasons = service.events_by_reason()
    assert any(network["id"] in m for m in reasons.get("NetworkCreated", []))
