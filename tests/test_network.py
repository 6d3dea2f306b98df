"""The bridge network (issue 13): addresses, -p and -P, containers reaching each other and
the outside, the three /etc files on it, and nothing left behind after rm, prune or a crash.

Every test here runs on a bridge, nftables table and subnet of its own (conftest's
``bridge`` fixture), checked for leftovers after it (``no_network_leaks``). Traffic goes
only to 127.0.0.1, to addresses of the test's own bridge, and to the machine's Debian
mirror (read from the apt sources).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
from helpers import tag_with_config
from netfixtures import PrivateBridge, link_exists, table_exists

from pydock.core.containers.lifecycle import Containers
from pydock.testing.cli import Pydock

HTTPD = "echo hello-from-$(hostname) > /index.html && exec httpd -f -p 80 -h /"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_get(port: int, host: str = "127.0.0.1", timeout: float = 10) -> str:
    """The body of GET /index.html, retried while the server starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2) as conn:
                conn.sendall(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
            if data:
                return data.split(b"\r\n\r\n", 1)[-1].decode()
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing answered on {host}:{port}")
        time.sleep(0.1)


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return True


def leases(pydock: Pydock) -> list[str]:
    directory = pydock.root / "network" / "leases"
    return sorted(n for n in os.listdir(directory) if not n.startswith(".")) \
        if directory.exists() else []


def table_elements(table: str) -> str:
    out = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True,
                         text=True, check=False).stdout
    return " ".join(re.findall(r"elements = \{[^}]*\}", out))


def address(pydock: Pydock, name: str) -> str:
    return str(pydock.inspect(name)["NetworkSettings"]["IPAddress"])


@pytest.mark.quick
def test_bridge_is_the_default_network() -> None:
    # A root with no network settings, and no PYDOCK_DEFAULT_NETWORK: docker's default.
    previous = os.environ.pop("PYDOCK_DEFAULT_NETWORK", None)
    try:
        assert Containers(Path("/nonexistent-root"))._default_network() == "bridge"
    finally:
        if previous is not None:
            os.environ["PYDOCK_DEFAULT_NETWORK"] = previous


def test_a_container_on_the_bridge_has_an_address_a_route_and_its_names(
        pydock: Pydock, bridge: PrivateBridge) -> None:
    out = pydock.ok("run", "--name", "c", "sh", "-c",
                    "ip -4 addr show eth0; ip route; cat /etc/hosts /etc/resolv.conf")
    ip = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/24", out)
    assert ip is not None, out
    assert f"default via {bridge.gateway} dev eth0" in out
    assert f"{ip[1]}\tc\n" in out
    assert "nameserver 127." not in out
    info = pydock.inspect("c")
    assert info["HostConfig"]["NetworkMode"] == "bridge"
    # Exited: as in docker, it holds no address any more.
    assert info["NetworkSettings"]["IPAddress"] == "" and leases(pydock) == []


def test_a_published_port_answers_on_loopback_and_closes_with_rm(
        pydock: Pydock, bridge: PrivateBridge) -> None:
    port, local_port = free_port(), free_port()
    pydock.ok("run", "-d", "--name", "web", "-p", f"{port}:80",
              "-p", f"127.0.0.1:{local_port}:80/tcp", "sh", "-c", HTTPD)
    assert http_get(port) == "hello-from-web\n"
    assert http_get(local_port) == "hello-from-web\n"
    settings = pydock.inspect("web")["NetworkSettings"]
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)},
                                            {"HostIp": "127.0.0.1",
                                             "HostPort": str(local_port)}]}
    assert settings["Gateway"] == bridge.gateway
    assert settings["MacAddress"] == "02:42:" + ":".join(
        f"{int(b):02x}" for b in settings["IPAddress"].split("."))
    assert pydock.inspect("web")["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": str(port)},
                   {"HostIp": "127.0.0.1", "HostPort": str(local_port)}]}
    # route_localnet lets 127.0.0.1 reach the bridge; nothing from the bridge reaches the
    # host's loopback (CVE-2020-8558).
    listing = subprocess.run(["nft", "list", "table", "ip", bridge.table], capture_output=True,
                             text=True, check=True).stdout
    assert f'iifname "{bridge.bridge}" ip daddr 127.0.0.0/8 drop' in listing
    assert Path(f"/proc/sys/net/ipv4/conf/{bridge.bridge}/route_localnet").read_text() == "1\n"
    pydock.ok("rm", "-f", "web")
    assert refused(port) and refused(local_port)
    assert table_elements(bridge.table) == "" and leases(pydock) == []


def test_publish_all_publishes_what_the_image_exposes(pydock: Pydock,
                                                      bridge: PrivateBridge) -> None:
    tag_with_config(pydock, "exposing", ExposedPorts={"80/tcp": {}}, Cmd=["sh", "-c", HTTPD])
    pydock.ok("run", "-d", "--name", "web", "-P", "--image", "exposing")
    ports = pydock.inspect("web")["NetworkSettings"]["Ports"]["80/tcp"]
    assert http_get(int(ports[0]["HostPort"])) == "hello-from-web\n"


def test_publish_all_refuses_exposed_ports_that_are_not_an_object(
        pydock: Pydock, bridge: PrivateBridge) -> None:
    # Was an internal error (TypeError): the image's config is the image author's.
    tag_with_config(pydock, "odd", ExposedPorts=5)
    pydock.refused("run", "--rm", "-P", "--image", "odd", "true",
                   match="ExposedPorts is not a JSON object")
    assert leases(pydock) == []


def test_containers_reach_each_other_and_published_ports_through_the_host(
        pydock: Pydock, bridge: PrivateBridge) -> None:
    port = free_port()
    pydock.ok("run", "-d", "--name", "web", "-p", f"{port}:80", "sh", "-c", HTTPD)
    http_get(port)
    web = address(pydock, "web")
    # By address, across the bridge; and through the host's address on the bridge, as
    # another host reaches a published port (prerouting's DNAT, and hairpin NAT back).
    out = pydock.ok("run", "--rm", "sh", "-c",
                    f"wget -q -O - http://{web}/index.html && "
                    f"wget -q -O - http://{bridge.gateway}:{port}/index.html")
    assert out == "hello-from-web\n" * 2


def debian_mirror() -> tuple[str, str]:
    """(host, suite) of the first Debian archive (``.../debian``) the apt sources name."""
    sources = [Path("/etc/apt/sources.list"),
               *sorted(Path("/etc/apt/sources.list.d").glob("*.list")),
               *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text()
        for found in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?https?://([^/\s]+)/debian/?\s+(\S+)",
                                 text, re.MULTILINE):
            return found[1], found[2]
        for stanza in text.split("\n\n"):
            uri = re.search(r"^URIs:\s*https?://([^/\s]+)/debian/?\s*$", stanza, re.MULTILINE)
            suite = re.search(r"^Suites:\s*(\S+)", stanza, re.MULTILINE)
            if uri and suite:
                return uri[1], suite[1]
    pytest.skip("no Debian archive in the apt sources")


def test_dns_and_outbound_http_to_the_debian_mirror(pydock: Pydock,
                                                    bridge: PrivateBridge) -> None:
    mirror, suite = debian_mirror()
    out = pydock.ok("run", "--rm", "sh", "-c",
                    f"nslookup {mirror} >/dev/null && echo resolved && "
                    f"wget -q -O - http://{mirror}/debian/dists/{suite}/Release | head -3")
    assert out.startswith("resolved\n") and "Origin: Debian" in out, out


def test_twenty_concurrent_runs_get_twenty_addresses(pydock: Pydock,
                                                     bridge: PrivateBridge) -> None:
    names = [f"c{i}" for i in range(20)]
    runs = [pydock.popen("run", "-d", "--name", name, "sleep", "120") for name in names]
    for run in runs:
        _, err = run.communicate(timeout=180)
        assert run.returncode == 0, err
    addresses = [address(pydock, name) for name in names]
    assert len(set(addresses)) == 20 and "" not in addresses
    assert sorted(leases(pydock)) == sorted(addresses)
    pydock.ok("rm", "-f", *names)
    assert leases(pydock) == []


def test_a_host_port_in_use_is_refused_leaving_nothing(pydock: Pydock,
                                                       bridge: PrivateBridge) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        message = pydock.refused("run", "--name", "c", "-p", f"{port}:80", "true")
        assert f"port {port}/tcp is already in use" in message
    assert not (pydock.root / "containers" / "c").exists() and leases(pydock) == []


def test_a_port_another_container_publishes_is_refused(pydock: Pydock,
                                                       bridge: PrivateBridge) -> None:
    port = free_port()
    pydock.ok("run", "-d", "--name", "one", "-p", f"{port}:80", "sleep", "60")
    assert "already published" in pydock.refused("run", "--name", "two", "-p",
                                                 f"{port}:80", "true")
    assert not (pydock.root / "containers" / "two").exists() and len(leases(pydock)) == 1


@pytest.mark.parametrize(("args", "match"), [
    (("-p", "80:"), "invalid -p"), (("-p", "x:80"), "invalid -p"),
    (("-p", "70000:80"), "out of range"), (("-p", "1.2.3:8080:80"), "invalid -p"),
    (("-p", "8080:80/sctp"), "invalid -p"), (("--network", "mynet"), "unknown network"),
    (("--network", "none", "-p", "8080:80"), "bridge network"),
])
def test_bad_network_input_is_one_line_and_leaves_nothing(
        pydock: Pydock, bridge: PrivateBridge, args: tuple[str, ...], match: str) -> None:
    pydock.refused("run", "--name", "c", *args, "true", match=match)
    assert not (pydock.root / "containers" / "c").exists() and leases(pydock) == []
    assert not link_exists(bridge.bridge)


def test_no_nft_on_the_host_says_how_to_install_it(pydock: Pydock,
                                                    bridge: PrivateBridge) -> None:
    message = pydock.refused("run", "--name", "c", "true", env={"PATH": "/nonexistent"})
    assert "apt-get install nftables" in message
    assert not (pydock.root / "containers" / "c").exists() and leases(pydock) == []


# The CLI's network steps, then the monitor's (killed there, it leaves the container's
# network to prune, its namespace gone with the container).
NETWORK_STEPS = ("net.leased", "net.bridge-ready", "net.veth-created", "net.ports-published",
                 "run.monitor-forked", "monitor.started", "monitor.recorded-running",
                 "monitor.container-exited")


@pytest.mark.parametrize("step", NETWORK_STEPS)
def test_killed_at_any_network_step_prune_leaves_nothing(
        pydock: Pydock, bridge: PrivateBridge, step: str) -> None:
    port = free_port()
    result = pydock("run", "--name", "victim", "-p", f"{port}:80", "true",
                    env={"PYDOCK_FAILPOINT": step})
    # The CLI killed (-9), or told that its monitor died (125).
    assert result.returncode in (-9, 125), (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    time.sleep(0.5)  # what the monitor does after the CLI is gone (run.monitor-forked)
    pydock.ok("prune")
    assert not (pydock.root / "containers" / "victim").exists()
    assert leases(pydock) == [] and refused(port)
    assert not link_exists(bridge.bridge) and not table_exists(bridge.table)
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith("pd")
                and not n.startswith("pdt") and not os.path.exists(f"/sys/class/net/{n}/master")]


def test_rm_killed_after_the_network_went_is_finished_by_prune(
        pydock: Pydock, bridge: PrivateBridge) -> None:
    pydock.ok("run", "-d", "--name", "victim", "sleep", "60")
    result = pydock("rm", "-f", "victim", env={"PYDOCK_FAILPOINT": "rm.network-released"})
    assert result.returncode == -9
    assert leases(pydock) == []
    pydock.ok("prune")
    assert not (pydock.root / "containers" / "victim").exists()
    assert not link_exists(bridge.bridge) and not table_exists(bridge.table)


def test_stop_releases_the_address_and_the_ports(pydock: Pydock,
                                                 bridge: PrivateBridge) -> None:
    port = free_port()
    pydock.ok("run", "-d", "--name", "web", "-p", f"{port}:80", "sh", "-c", HTTPD)
    http_get(port)
    pydock.ok("stop", "-t", "1", "web")
    assert leases(pydock) == [] and table_elements(bridge.table) == "" and refused(port)
    assert json.loads(pydock.ok("inspect", "web"))[0]["NetworkSettings"]["Ports"] == {}


def test_a_container_started_again_is_on_the_bridge_with_its_ports(
        pydock: Pydock, bridge: PrivateBridge) -> None:
    port = free_port()
    pydock.ok("run", "-d", "--name", "web", "-p", f"{port}:80", "sh", "-c", HTTPD)
    http_get(port)
    pydock.ok("stop", "-t", "1", "web")
    pydock.ok("start", "web")
    assert http_get(port) == "hello-from-web\n"
    now = address(pydock, "web")
    assert now and leases(pydock) == [now]
    assert f"{now}\tweb" in pydock.ok("exec", "web", "cat", "/etc/hosts")
    pydock.ok("restart", "-t", "1", "web")
    assert http_get(port) == "hello-from-web\n"
    pydock.ok("rm", "-f", "web")
    assert leases(pydock) == [] and table_elements(bridge.table) == "" and refused(port)


def test_a_restart_policy_keeps_the_container_on_the_bridge(
        pydock: Pydock, bridge: PrivateBridge, tmp_path: Path) -> None:
    # Each run of the command notes the address eth0 has, then fails: restarted twice.
    pydock.ok("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "sh", "-c",
              "ip -4 addr show eth0 | grep -o 'inet [0-9.]*' >> /seen; exit 3")
    deadline = time.monotonic() + 30
    while (info := pydock.inspect("flaky"))["RestartCount"] < 2 or (
            info["State"]["Status"] != "exited"):
        assert time.monotonic() < deadline, "the restarts did not end"
        time.sleep(0.2)
    pydock.ok("cp", "flaky:/seen", str(tmp_path / "seen"))
    seen = (tmp_path / "seen").read_text().split()
    assert seen[0::2] == ["inet"] * 3 and seen[1] == seen[3] == seen[5], seen
    assert seen[1].startswith(bridge.gateway.rsplit(".", 1)[0] + ".")
    assert leases(pydock) == []  # given back once it ended for good


@pytest.fixture(scope="session")
def debian_tarball(needs_root: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Debian rootfs (debootstrap's minbase, from the machine's own mirror and suite) as a
    tarball, made once per test session: what `apt-get update` runs in."""
    if subprocess.run(["which", "debootstrap"], capture_output=True).returncode != 0:
        pytest.skip("debootstrap is not installed (scripts/setup.sh installs it)")
    mirror, suite = debian_mirror()
    work = tmp_path_factory.mktemp("debian")
    subprocess.run(["debootstrap", "--variant=minbase", suite, str(work / "rootfs"),
                    f"http://{mirror}/debian"], check=True, capture_output=True, timeout=900)
    tarball = work / "debian.tar"
    subprocess.run(["tar", "--numeric-owner", "-C", str(work / "rootfs"), "-cf",
                    str(tarball), "."], check=True)
    subprocess.run(["rm", "-rf", "--one-file-system", str(work / "rootfs")], check=True)
    return tarball


def test_apt_get_update_just_works_on_the_default_network(
        pydock: Pydock, bridge: PrivateBridge, debian_tarball: Path) -> None:
    pydock.ok("image", "import", str(debian_tarball), "debian")
    out = pydock.ok("run", "--rm", "--image", "debian", "apt-get", "update")
    assert "Reading package lists..." in out and "Err:" not in out, out


def test_a_host_port_left_to_pydock_on_one_address(pydock: Pydock,
                                                    bridge: PrivateBridge) -> None:
    pydock.ok("run", "-d", "--name", "web", "-p", "127.0.0.1::80", "sh", "-c", HTTPD)
    binding = pydock.inspect("web")["NetworkSettings"]["Ports"]["80/tcp"][0]
    assert binding["HostIp"] == "127.0.0.1" and int(binding["HostPort"]) > 0
    assert http_get(int(binding["HostPort"])) == "hello-from-web\n"
    assert f"127.0.0.1 . tcp . {binding['HostPort']}" in table_elements(bridge.table)
