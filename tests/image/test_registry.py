"""image/registry.sh: the loopback registry the images are served from (make registry-up/down)."""
from __future__ import annotations

import json
import os
import socket
import subprocess

from conftest import REPO, run_crane


def registry_sh(crane, address: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "image/registry.sh"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "CRANE": str(crane), "REGISTRY": address})


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_up_push_down(crane, standin_image):
    address = f"127.0.0.1:{free_loopback_port()}"
    up = registry_sh(crane, address, "up")
    assert up.returncode == 0, up.stderr
    try:
        assert up.stdout.strip() == address
        assert registry_sh(crane, address, "up").stdout.strip() == address  # already running: no second one
        pushed = registry_sh(crane, address, "push", str(standin_image.layout), "spin-hello:v1")
        assert pushed.returncode == 0, pushed.stderr
        assert pushed.stdout.strip() == f"{address}/spin-hello:v1@{standin_image.digest}"
        config = json.loads(run_crane(crane, "config", f"{address}/spin-hello:v1").stdout)
        assert config["config"]["Entrypoint"] == ["/bin/spin"]
    finally:
        assert registry_sh(crane, address, "down").returncode == 0
    host, port = address.split(":")
    with socket.socket() as s:
        assert s.connect_ex((host, int(port))) != 0, "still listening after down"


def test_only_loopback_addresses(crane):
    out = registry_sh(crane, "10.0.0.1:5000", "up")
    assert out.returncode == 2
    assert "REGISTRY must be a loopback address" in out.stderr
