"""Fixtures for the image tests: crane (built by tests/cluster/build.sh), a throwaway registry on
loopback, the operator image and the Spin stand-in image built by the repo's own scripts, and
their configs and files as crane reports them."""
from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def crane_path() -> Path:
    if os.environ.get("CRANE"):
        return Path(os.environ["CRANE"])
    out = subprocess.run(["bash", str(REPO / "tests/cluster/build.sh")], stdout=subprocess.PIPE,
                         text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1]) / "crane"


@pytest.fixture(scope="session")
def crane() -> Path:
    return crane_path()


def run_crane(crane: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(crane), *args], capture_output=True, check=True, timeout=300, **kw)


@pytest.fixture(scope="session")
def registry(crane: Path, tmp_path_factory):
    """`crane registry serve` on an ephemeral loopback port; yields host:port."""
    log = tmp_path_factory.mktemp("registry") / "log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(crane), "registry", "serve", "--address", "127.0.0.1:0"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        port = None
        for _ in range(100):
            m = re.search(r"serving on port (\d+)", log.read_text())
            if m:
                port = m.group(1)
                break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        assert port, f"registry did not start: {log.read_text()}"
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass
class Image:
    layout: Path
    digest: str  # printed by the build script
    ref: str  # pushed to the throwaway registry
    config: dict  # `crane config`
    rootfs: Path  # `crane export`, unpacked

    def files(self) -> set[str]:
        return {str(p.relative_to(self.rootfs)) for p in self.rootfs.rglob("*")
                if p.is_file() or p.is_symlink()}


def build(crane: Path, registry: str, tmp: Path, script: str, name: str, **env: str) -> Image:
    layout = tmp / name
    out = subprocess.run(["bash", str(REPO / script)], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "CRANE": str(crane), "IMAGE_OUT": str(layout), **env},
                         timeout=3600)
    assert out.returncode == 0, out.stderr
    path, digest = out.stdout.split()
    assert Path(path) == layout
    ref = f"{registry}/{name}:test"
    run_crane(crane, "push", str(layout), ref)
    config = json.loads(run_crane(crane, "config", ref).stdout)
    rootfs = tmp / f"{name}-rootfs"
    rootfs.mkdir()
    tar = tmp / f"{name}.tar"
    with open(tar, "wb") as f:
        subprocess.run([str(crane), "export", ref, "-"], stdout=f, check=True, timeout=300)
    with tarfile.open(tar) as t:
        t.extractall(rootfs, filter="tar")
    return Image(layout, digest, ref, config, rootfs)


@pytest.fixture(scope="session")
def operator_image(crane, registry, tmp_path_factory) -> Image:
    """The `make image` image. The debug build by default (the tests' own compile, nothing
    rebuilt); IMAGE_TEST_PROFILE=release checks the static release image."""
    profile = os.environ.get("IMAGE_TEST_PROFILE", "debug")
    return build(crane, registry, tmp_path_factory.mktemp("operator"), "image/operator.sh",
                 "spin-operator", IMAGE_PROFILE=profile)


@pytest.fixture(scope="session")
def standin_image(crane, registry, tmp_path_factory) -> Image:
    return build(crane, registry, tmp_path_factory.mktemp("standin"), "image/spin-standin/build.sh",
                 "spin-hello")
