"""runc-spin, the `spin` handler's runc: rewrites only a `create`/`run` whose process is exactly
["/"] (what the operator renders for runtime-class executors), and always runs the real runc
with the arguments it was given."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

RUNC_SPIN = REPO / "image/spin-standin/runc-spin"


@pytest.fixture
def fake_runc(tmp_path) -> Path:
    """Records its arguments and the bundle's config.json as runc would read it."""
    runc = tmp_path / "runc"
    runc.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path}/argv\n")
    runc.chmod(0o755)
    return runc


def call(fake_runc: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RUNC_SPIN), *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "SPIN_STANDIN_RUNC": str(fake_runc)})


def bundle(tmp_path: Path, args: list[str]) -> Path:
    b = tmp_path / "bundle"
    b.mkdir(exist_ok=True)
    (b / "config.json").write_text(json.dumps({"ociVersion": "1.2.0", "process": {"args": args, "cwd": "/"},
                                               "root": {"path": "rootfs"}}))
    return b


def process_args(b: Path) -> list[str]:
    return json.loads((b / "config.json").read_text())["process"]["args"]


@pytest.mark.parametrize("form", [["--bundle", "{b}"], ["--bundle={b}"], ["-b", "{b}"]])
def test_create_with_shim_command_runs_the_standin(tmp_path, fake_runc, form):
    b = bundle(tmp_path, ["/"])
    args = ["--root", "/run/containerd/runc/k8s.io", "--log", "/x/log.json", "--log-format", "json",
            "create", *[f.format(b=b) for f in form], "--pid-file", "/x/pid", "c1"]
    out = call(fake_runc, *args)
    assert out.returncode == 0, out.stderr
    assert process_args(b) == ["/bin/spin"]
    assert (tmp_path / "argv").read_text().splitlines() == args
    spec = json.loads((b / "config.json").read_text())
    assert spec["root"] == {"path": "rootfs"} and spec["process"]["cwd"] == "/"


def test_run_without_bundle_uses_the_working_directory(tmp_path, fake_runc):
    b = bundle(tmp_path, ["/"])
    out = subprocess.run([str(RUNC_SPIN), "run", "c1"], cwd=b, capture_output=True, text=True,
                         env={**os.environ, "SPIN_STANDIN_RUNC": str(fake_runc)}, timeout=30)
    assert out.returncode == 0, out.stderr
    assert process_args(b) == ["/bin/spin"]


@pytest.mark.parametrize("args", [["/bin/sh", "-c", "true"], ["/", "extra"], []])
def test_other_processes_are_untouched(tmp_path, fake_runc, args):
    b = bundle(tmp_path, args)
    before = (b / "config.json").read_text()
    assert call(fake_runc, "create", "--bundle", str(b), "c1").returncode == 0
    assert (b / "config.json").read_text() == before


def test_other_subcommands_pass_through(tmp_path, fake_runc):
    b = bundle(tmp_path, ["/"])
    for args in (["state", "create"], ["--root", "create", "delete", "c1"], ["kill", "c1", "TERM"]):
        out = call(fake_runc, *args)
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "argv").read_text().splitlines() == args
    assert process_args(b) == ["/"]


def test_unreadable_bundle_is_a_clear_error(tmp_path, fake_runc):
    out = call(fake_runc, "create", "--bundle", str(tmp_path / "missing"), "c1")
    assert out.returncode == 1
    assert "runc-spin: cannot rewrite" in out.stderr
    assert not (tmp_path / "argv").exists()
