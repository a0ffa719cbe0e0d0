"""The Spin stand-in image (image/spin-standin) serves what the operator renders: the exact
container arguments, port and probe paths of `spin-operator render`, for both executor kinds.
The image's files run under chroot in a network namespace the test creates, so the stand-in
listens on Spin's 0.0.0.0:80 there and no packet leaves it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import REPO, build

if os.geteuid() != 0:
    pytest.skip("chroot and network namespaces need root", allow_module_level=True)

APP = """
apiVersion: core.spinkube.dev/v1alpha1
kind: SpinApp
metadata: {name: probed}
spec:
  image: 127.0.0.1:5000/spin-hello:v1
  executor: EXECUTOR
  checks:
    readiness: {httpGet: {path: /.well-known/spin/health}}
    liveness: {httpGet: {path: /.well-known/spin/info}}
"""


def rendered_container(executor: str) -> dict:
    app = APP.replace("EXECUTOR", executor)
    out = subprocess.run([str(REPO / "target/debug/spin-operator"), "render", "-o", "json",
                          "-f", str(REPO / "examples/executors.yaml"), "-f", "-"],
                         input=app, capture_output=True, text=True, check=True, timeout=60)
    [deployment] = [o for o in json.loads(out.stdout)["items"] if o["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.fixture(scope="module", autouse=True)
def operator_binary():
    subprocess.run(["cargo", "build", "--quiet", "--locked", "--bin", "spin-operator"], cwd=REPO,
                   check=True)


@pytest.fixture
def netns():
    name = f"spin-standin-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


def get(netns: str, url: str) -> tuple[int, str]:
    """HTTP GET from inside the namespace; (0, error) when nothing answers."""
    code = ("import sys, urllib.request, urllib.error\n"
            "try:\n r = urllib.request.urlopen(sys.argv[1], timeout=2); print(r.status); sys.stdout.write(r.read().decode())\n"
            "except urllib.error.HTTPError as e: print(e.code)\n"
            "except OSError as e: print(0); print(e)\n")
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code, url],
                         capture_output=True, text=True, check=True, timeout=30)
    status, _, body = out.stdout.partition("\n")
    return int(status), body


class Served:
    def __init__(self, netns: str, rootfs: Path, argv: list[str], env: dict[str, str]):
        self.netns = netns
        # The container's environment only, as the runtime gives it; host tools by absolute path.
        host = [shutil.which("ip"), "netns", "exec", netns, shutil.which("chroot"), str(rootfs)]
        self.proc = subprocess.Popen([*host, *argv],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)

    def wait_for(self, url: str) -> tuple[int, str]:
        for _ in range(100):
            status, body = get(self.netns, url)
            if status:
                return status, body
            assert self.proc.poll() is None, self.proc.stdout.read()
            time.sleep(0.1)
        raise AssertionError(f"nothing answered {url}")

    def stop(self) -> str:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        return out


def env_of(container: dict, image_config: dict) -> dict[str, str]:
    env = dict(e.split("=", 1) for e in image_config["config"].get("Env", []))
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    return env


def probe_urls(container: dict) -> list[str]:
    [port] = [p["containerPort"] for p in container["ports"]]
    urls = []
    for probe in ("readinessProbe", "livenessProbe"):
        http = container[probe]["httpGet"]
        assert http["port"] == port
        urls.append(f"http://127.0.0.1:{port}{http['path']}")
    return urls


def assert_serves(served: Served, container: dict):
    ready, live = probe_urls(container)
    assert served.wait_for(ready) == (200, "OK\n")
    status, body = get(served.netns, live)
    assert status == 200 and json.loads(body)["name"] == "spin-hello"
    port = container["ports"][0]["containerPort"]
    status, body = get(served.netns, f"http://127.0.0.1:{port}/")
    assert status == 200 and "Spin stand-in" in body
    assert get(served.netns, f"http://127.0.0.1:{port}/nothing-here")[0] == 404
    # Bound as root, serving as 65532.
    status_lines = Path(f"/proc/{served.proc.pid}/status").read_text().splitlines()
    uid = next(line for line in status_lines if line.startswith("Uid:")).split()[1:]
    assert set(uid) == {"65532"}


def test_image_config(standin_image):
    config = standin_image.config["config"]
    assert config["Entrypoint"] == ["/bin/spin"]
    assert "Cmd" not in config
    assert config["ExposedPorts"] == {"80/tcp": {}}
    assert config.get("User", "") == "", "root, to bind Spin's port 80; httpd then drops to 65532"
    assert config["Labels"]["org.opencontainers.image.title"] == "spin-hello"
    assert {"bin/spin", "bin/busybox", "bin/httpd", "var/www/.well-known/spin/health"} <= standin_image.files()


def test_spin_image_executor_runs_the_rendered_spin_up(standin_image, netns):
    """spinImage executors: the image's entrypoint with the `spin up` arguments the operator renders."""
    container = rendered_container("spintainer")
    assert container["args"][:3] == ["up", "--listen", "0.0.0.0:80"]
    argv = [*standin_image.config["config"]["Entrypoint"], *container["args"]]
    served = Served(netns, standin_image.rootfs, argv, env_of(container, standin_image.config))
    try:
        assert_serves(served, container)
    finally:
        log = served.stop()
    assert "serving on 0.0.0.0:80" in log


def test_runtime_class_executor_runs_through_runc_spin(standin_image, netns, tmp_path):
    """Runtime-class executors: the rendered command "/" as the node's runtime hands it to runc,
    rewritten by runc-spin to the stand-in's entrypoint, which listens on Spin's default address."""
    container = rendered_container("containerd-shim-spin")
    assert container["command"] == ["/"] and "args" not in container
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"process": {"args": container["command"]}}))
    runc = tmp_path / "runc"
    runc.write_text("#!/bin/sh\nexit 0\n")
    runc.chmod(0o755)
    subprocess.run([str(REPO / "image/spin-standin/runc-spin"), "create", "--bundle", str(bundle), "c1"],
                   env={**os.environ, "SPIN_STANDIN_RUNC": str(runc)}, check=True, timeout=30)
    argv = json.loads((bundle / "config.json").read_text())["process"]["args"]
    served = Served(netns, standin_image.rootfs, argv, env_of(container, standin_image.config))
    try:
        assert_serves(served, container)
    finally:
        served.stop()


@pytest.mark.parametrize("argv, message", [
    (["serve"], "unknown command 'serve'"),
    (["up", "--listen"], "--listen needs a value"),
    (["up", "--listen", "0.0.0.0:80", "--bogus"], "unknown argument '--bogus'"),
])
def test_unknown_arguments_are_refused(standin_image, argv, message):
    out = subprocess.run([shutil.which("chroot"), str(standin_image.rootfs), "/bin/spin", *argv],
                         capture_output=True, text=True, timeout=30, env={"PATH": "/bin"})
    assert out.returncode == 2
    assert message in out.stderr


def processes_with(marker: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            pass  # gone, or not ours to read
    return found


def test_build_is_reproducible_and_leaves_nothing_running(crane, registry, standin_image, tmp_path):
    marker = f"IMAGE_BUILD_MARKER={uuid.uuid4().hex}"
    key, value = marker.split("=")
    again = build(crane, registry, tmp_path, "image/spin-standin/build.sh", "spin-hello-again",
                  **{key: value})
    assert again.digest == standin_image.digest
    # The scratch registry the build ran (image/lib.sh) is gone with it.
    assert processes_with(marker) == []
