"""`make image` (image/operator.sh) and the Dockerfile give the same image: user, entrypoint, cmd,
environment, ports, labels and files, read from the Dockerfile's final stage by BuildKit's own
parser and from the built image by crane. Docker is not available here, so the Dockerfile itself
is not built: these tests pin what it would produce."""
from __future__ import annotations

import json
import shlex
import subprocess

import dockerfile
import pytest

from conftest import REPO, run_crane


def stages() -> list[list[dockerfile.Command]]:
    out: list[list[dockerfile.Command]] = []
    for cmd in dockerfile.parse_file(str(REPO / "Dockerfile")):
        if cmd.cmd == "FROM":
            out.append([])
        if out:
            out[-1].append(cmd)
    return out


def pairs(cmd: dockerfile.Command) -> dict[str, str]:
    """LABEL and ENV key/value pairs, values unquoted as Docker does."""
    return {k: " ".join(shlex.split(v)) for k, v in zip(cmd.value[::2], cmd.value[1::2])}


def expected_config(stage: list[dockerfile.Command]) -> dict:
    """The image config Docker would write for this final stage (no base image to inherit)."""
    assert stage[0].value == ("scratch",), "the runtime stage starts from scratch"
    config: dict = {"Labels": {}, "Env": [], "ExposedPorts": {}}
    for cmd in stage[1:]:
        if cmd.cmd == "LABEL":
            config["Labels"].update(pairs(cmd))
        elif cmd.cmd == "ENV":
            config["Env"] += [f"{k}={v}" for k, v in pairs(cmd).items()]
        elif cmd.cmd == "EXPOSE":
            config["ExposedPorts"].update({p if "/" in p else f"{p}/tcp": {} for p in cmd.value})
        elif cmd.cmd == "USER":
            config["User"] = cmd.value[0]
        elif cmd.cmd in ("ENTRYPOINT", "CMD"):
            assert cmd.json, f"{cmd.cmd} in exec form, so no shell is needed in the image"
            config["Entrypoint" if cmd.cmd == "ENTRYPOINT" else "Cmd"] = list(cmd.value)
    return config


def copied_files(stage: list[dockerfile.Command]) -> set[str]:
    """The files the final stage's COPY instructions put in the image."""
    files: set[str] = set()
    for cmd in stage:
        if cmd.cmd != "COPY":
            continue
        *sources, dest = cmd.value
        if any(f.startswith("--from=") for f in cmd.flags):
            files.add(dest.lstrip("/"))
            continue
        for source in sources:
            root = REPO / source
            files |= {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    return files


def test_dockerfile_and_make_image_agree_on_config(operator_image):
    want = expected_config(stages()[-1])
    got = operator_image.config["config"]
    for key in ("User", "Entrypoint", "Cmd", "Env", "ExposedPorts", "Labels"):
        assert got.get(key) == want[key], key
    assert got["User"] == "65532:65532"
    assert set(got["ExposedPorts"]) == {"9443/tcp", "8080/tcp"}
    assert operator_image.config["os"] == "linux"


def test_dockerfile_and_make_image_agree_on_files(operator_image):
    want = copied_files(stages()[-1])
    assert "usr/local/bin/spin-operator" in want and "etc/passwd" in want
    got = operator_image.files()
    # The debug test image also carries the shared libraries its binary loads (image/operator.sh).
    libs = {f for f in got - want if f.startswith(("lib/", "lib64/", "usr/lib/"))}
    assert got - libs == want


def test_the_image_runs_its_binary_as_its_user(operator_image):
    """The image's own files run its entrypoint as uid/gid 65532, with no library from the host."""
    root = operator_image.rootfs
    user = operator_image.config["config"]["User"]
    entrypoint = operator_image.config["config"]["Entrypoint"]
    out = subprocess.run(["chroot", f"--userspec={user}", str(root), *entrypoint, "--version"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("spin-operator ")
    # And `run` (the image's Cmd) is a subcommand it knows.
    out = subprocess.run(["chroot", f"--userspec={user}", str(root), *entrypoint,
                          *operator_image.config["config"]["Cmd"], "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_printed_digest_is_the_pushed_digest(crane, operator_image):
    assert run_crane(crane, "digest", operator_image.ref).stdout.decode().strip() == operator_image.digest
    manifest = json.loads(run_crane(crane, "manifest", operator_image.ref).stdout)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert len(manifest["layers"]) == 1


def test_dockerfile_cross_compiles_without_emulation():
    builder, runtime = stages()[0], stages()[-1]
    assert "--platform=$BUILDPLATFORM" in builder[0].flags, "the builder runs on the build platform"
    assert not runtime[0].flags, "the runtime stage is the target platform's"
    assert {"TARGETARCH", "BUILDARCH"} <= {c.value[0] for c in builder if c.cmd == "ARG"}
    env = pairs(next(c for c in builder if c.cmd == "ENV"))
    assert env["RUSTFLAGS"] == "-C target-feature=+crt-static"
    for triple, gcc in [("x86_64-unknown-linux-gnu", "x86_64-linux-gnu-gcc"),
                        ("aarch64-unknown-linux-gnu", "aarch64-linux-gnu-gcc")]:
        assert env[f"CARGO_TARGET_{triple.upper().replace('-', '_')}_LINKER"] == gcc
        assert env[f"CC_{triple.replace('-', '_')}"] == gcc


def test_unknown_profile_is_refused():
    out = subprocess.run(["bash", str(REPO / "image/operator.sh")], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "IMAGE_PROFILE": "fast", "CRANE": "/bin/false"},
                         cwd=REPO, timeout=60)
    assert out.returncode == 2
    assert "IMAGE_PROFILE must be release or debug, not 'fast'" in out.stderr


STUBS = {
    # Record each call; cargo also leaves the binary where a real build would.
    "apt-get": 'echo "apt-get $*" >> "$CALLS"',
    "rustup": 'echo "rustup $*" >> "$CALLS"',
    "cargo": 'echo "cargo $*" >> "$CALLS"\n'
             'while [ "$1" != --target ]; do shift; done\n'
             'mkdir -p "target/$2/release" && echo binary > "target/$2/release/spin-operator"',
}


def run_builder(tmp_path, build_arch: str, target_arch: str) -> subprocess.CompletedProcess:
    """The builder stage's RUN instructions as BuildKit runs them (`/bin/sh -c`, the stage's
    ENV and ARGs), with apt-get, rustup and cargo recorded instead of run and / moved to tmp_path."""
    builder = stages()[0]
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, body in STUBS.items():
        (stubs / name).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / name).chmod(0o755)
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls"),
           "BUILDARCH": build_arch, "TARGETARCH": target_arch,
           **pairs(next(c for c in builder if c.cmd == "ENV"))}
    (tmp_path / "src").mkdir()
    for cmd in (c for c in builder if c.cmd == "RUN"):
        script = cmd.value[0].replace("/rust-target", f"{tmp_path}/rust-target").replace(
            "/out/", f"{tmp_path}/out/")
        out = subprocess.run(["/bin/sh", "-c", script], env=env, cwd=tmp_path / "src",
                             capture_output=True, text=True, timeout=60)
        if out.returncode:
            return out
    return out


@pytest.mark.parametrize("build_arch, target_arch, triple, cross", [
    ("amd64", "amd64", "x86_64-unknown-linux-gnu", None),
    ("amd64", "arm64", "aarch64-unknown-linux-gnu", "gcc-aarch64-linux-gnu libc6-dev-arm64-cross"),
    ("arm64", "amd64", "x86_64-unknown-linux-gnu", "gcc-x86-64-linux-gnu libc6-dev-amd64-cross"),
    ("arm64", "arm64", "aarch64-unknown-linux-gnu", None),
])
def test_dockerfile_builder_targets_targetarch(tmp_path, build_arch, target_arch, triple, cross):
    out = run_builder(tmp_path, build_arch, target_arch)
    assert out.returncode == 0, out.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    installs = [c for c in calls if c.startswith("apt-get install")]
    assert installs == ([f"apt-get install -y --no-install-recommends {cross}"] if cross else [])
    assert f"rustup target add {triple}" in calls
    assert any(c.startswith("cargo build --release --locked --target " + triple) for c in calls)
    assert (tmp_path / "out/spin-operator").read_text() == "binary\n"


def test_dockerfile_builder_refuses_other_arches(tmp_path):
    out = run_builder(tmp_path, "amd64", "riscv64")
    assert out.returncode == 1
    assert "unsupported TARGETARCH 'riscv64' (amd64, arm64)" in out.stderr
