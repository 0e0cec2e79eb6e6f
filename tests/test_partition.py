"""A host cut off, not killed: a two-host Ray cluster on this machine, each host a network
namespace of its own joined by a veth pair (one address per host), the link to the worker host
set down mid-round and up again later. The models that host held are run again on the other
host within --retries; what was uploaded before the cut is not uploaded again; every row is
accounted for and the report names the models that moved."""

from __future__ import annotations

import csv
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import hostile_models
import model_zoo
import pytest
from conftest import HERE, ROOT
from servers import ScriptedServer
from test_round import RayCluster

pytestmark = pytest.mark.slow

TAG = os.getpid() % 100000
NAMESPACES = (f"np-head-{TAG}", f"np-worker-{TAG}")
LINKS = (f"nph{TAG}", f"npw{TAG}")  # interface names: at most 15 characters
ADDRESSES = ("10.231.0.1", "10.231.0.2")
RAY_PORT = 6379
CLONE_NEWNET = 0x40000000
#: The head's health checks: a silent node is declared dead within about 3 s (Ray's default is 30 s).
FAST_HEALTH = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
               "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"}


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def pids_in(namespace: str) -> list[int]:
    found = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


def in_namespace(namespace: str, make):
    """``make()`` called in a thread that joined ``namespace``'s network: the sockets it opens live
    there (setns changes the calling thread only)."""
    result = {}

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
        try:
            assert libc.setns(fd, CLONE_NEWNET) == 0, os.strerror(ctypes.get_errno())
        finally:
            os.close(fd)
        result["value"] = make()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result["value"]


class TwoHosts(RayCluster):
    """The head host (Ray's head, the round's driver, the upload endpoint) and the worker host."""

    def __init__(self, folder: str):  # not RayCluster's: that one starts on 127.0.0.1
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []
        for namespace in NAMESPACES:
            ip("netns", "add", namespace)
        ip("link", "add", LINKS[0], "netns", NAMESPACES[0], "type", "veth", "peer", "name", LINKS[1],
           "netns", NAMESPACES[1])
        for namespace, link, address in zip(NAMESPACES, LINKS, ADDRESSES, strict=True):
            ip("-n", namespace, "addr", "add", f"{address}/24", "dev", link)
            ip("-n", namespace, "link", "set", "lo", "up")
            ip("-n", namespace, "link", "set", link, "up")
        common = ["--num-cpus", "1", "--memory", str(3 << 30), "--object-store-memory", str(100 << 20),
                  "--disable-usage-stats", "--block"]
        self.address = f"{ADDRESSES[0]}:{RAY_PORT}"
        self.start_on(0, ["start", "--head", "--port", str(RAY_PORT), "--include-dashboard", "false",
                       "--temp-dir", folder, *common, "--node-ip-address", ADDRESSES[0]], "head")
        self.wait_for(1)
        self.start_on(1, ["start", "--address", self.address, *common, "--node-ip-address", ADDRESSES[1]], "worker")
        self.wait_for(2)

    def run_in(self, host: int, command: list[str], **popen) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", NAMESPACES[host], *command], **popen)

    def start_on(self, host: int, args: list[str], name: str) -> None:
        log = open(os.path.join(self.folder, f"{name}.log"), "w")
        env = dict(os.environ, RAY_DISABLE_IMPORT_WARNING="1", **FAST_HEALTH)
        self.procs.append(self.run_in(host, [sys.executable, "-m", "ray.scripts.scripts", *args], stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True, env=env))

    def where(self, command: list[str]) -> list[str]:
        return ["ip", "netns", "exec", NAMESPACES[0], *command]

    def link(self, up: bool) -> None:
        ip("-n", NAMESPACES[0], "link", "set", LINKS[0], "up" if up else "down")

    def close(self) -> None:
        for namespace in NAMESPACES:
            for pid in pids_in(namespace):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            proc.wait()
        for namespace in NAMESPACES:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


@pytest.fixture
def two_hosts():
    pytest.importorskip("ray")
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("network namespaces need root and iproute2's ip")
    probe = subprocess.run(["ip", "netns", "add", f"np-probe-{TAG}"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"network namespaces unavailable here: {probe.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", f"np-probe-{TAG}"], capture_output=True)
    folder = os.path.join("/tmp", f"rp{TAG}")  # Ray's socket paths must stay short
    os.makedirs(folder, exist_ok=True)
    hosts = None
    try:
        hosts = TwoHosts(folder)
        yield hosts
    finally:
        if hosts is not None:
            hosts.close()
        else:
            for namespace in NAMESPACES:
                subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def posted(server) -> list[str]:
    keys = []
    for method, _, _, body in list(server.requests):
        found = re.search(rb'name="key"\r\n\r\n([^\r]+)', body) if method == "POST" else None
        keys += [found[1].decode()] if found else []
    return keys


def worker_host_holds(folder, ids) -> set[str]:
    """The models whose runner runs on the worker host now (its cwd is the model's folder)."""
    held = set()
    for pid in pids_in(NAMESPACES[1]):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        held |= {ident for ident in ids if cwd == os.path.join(folder, ident)}
    return held


def test_a_host_cut_off_mid_round_moves_its_models(tmp_path, live_files, pickle_of, two_hosts):
    upload = in_namespace(NAMESPACES[0], lambda: ScriptedServer(host=ADDRESSES[0]))
    upload.route("/upload", *[(204, b"")] * 60)
    fast = pickle_of(model_zoo.constant, "fast.pkl")
    long = pickle_of(hostile_models.sleeps_then_answers(12), "slow.pkl")
    rows = [[f"fast{i}", fast] for i in range(4)] + [[f"slow{i}", long] for i in range(4)]
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "model", "post_url", "post_data", "environment"])
        writer.writerows([ident, model, upload.url + "/upload", f"key={ident}.csv", HERE] for ident, model in rows)
    out = tmp_path / "out"
    driver = two_hosts.run_in(0, [sys.executable, "-m", "numerai_predict.round", "--manifest", str(manifest),
                                  "--output_dir", str(out), "--dataset", live_files["features"], "--benchmarks",
                                  live_files["benchmarks"], "--ray", two_hosts.address, "--timeout", "120",
                                  "--max-memory", "1g", "--retries", "3", "--no-progress"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    slow_ids = [ident for ident, _ in rows if ident.startswith("slow")]
    deadline, held = time.monotonic() + 240, set()
    while time.monotonic() < deadline and driver.poll() is None:
        held = worker_host_holds(str(out), slow_ids)
        if held and len(posted(upload)) >= 2:
            break
        time.sleep(0.2)
    assert held, ("the worker host never ran a slow model", driver.poll(),
                  driver.communicate()[1] if driver.poll() is not None else "")
    before = posted(upload)
    two_hosts.link(False)
    # Declared dead in ~3 s; its runner's upload gives up within its retry budget (8 s here) and frees
    # the model's folder (shared by both hosts here), then the other host runs and uploads it: the link
    # stays down until then (about 40 s idle; room for a loaded machine), never restored before.
    cut_until = time.monotonic() + 240
    while time.monotonic() < cut_until and not {f"{ident}.csv" for ident in held} <= set(posted(upload)):
        time.sleep(0.5)
    during = posted(upload)
    two_hosts.link(True)
    _, err = driver.communicate(timeout=600)
    upload.close()
    assert driver.returncode == 0, err
    with open(out / "round.csv", newline="") as handle:
        report = {row["id"]: row for row in csv.DictReader(handle)}
    details = json.loads((out / "round.json").read_text())
    assert {row["status"] for row in report.values()} == {"ok"} and len(report) == 8, report
    keys = posted(upload)
    for key in before:
        assert keys.count(key) == 1, (key, keys)  # uploaded before the cut: never again
    assert {f"{ident}.csv" for ident in report} <= set(keys)  # every model delivered
    assert held <= set(details["retried"]), details  # the models the cut host held moved
    assert {f"{ident}.csv" for ident in held} <= set(during), during  # while their host was still cut off
    assert all(m["attempts"] >= 2 for m in details["models"] if m["id"] in held)
    assert "retried after a system failure: " in err
