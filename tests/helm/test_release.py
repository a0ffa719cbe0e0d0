"""What a release publishes agrees: the crate, chart and image versions, the image the release
workflow pushes and the one the chart runs, pinned actions, and a Keep a Changelog CHANGELOG.md.
(actionlint and `helm package` run in `make release-check`.)"""

from __future__ import annotations

import re
import tomllib

import yaml

from conftest import CHART, REPO, operator_container, render

WORKFLOWS = REPO / ".github" / "workflows"


def cargo_version() -> str:
    return tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]


def chart_meta() -> dict:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())


def release_workflow() -> dict:
    return yaml.safe_load((WORKFLOWS / "release.yml").read_text())


def test_crate_chart_and_app_versions_agree() -> None:
    meta = chart_meta()
    assert meta["version"] == meta["appVersion"] == cargo_version(), (
        f"Cargo.toml {cargo_version()}, Chart.yaml version {meta['version']}, appVersion {meta['appVersion']}: "
        "bump them together (the release tag must equal all three)"
    )


def test_default_image_is_what_the_release_workflow_pushes() -> None:
    image = operator_container(render())["image"]
    assert image == f"{release_workflow()['env']['IMAGE']}:{cargo_version()}"


def test_release_runs_on_version_tags_and_signs_keylessly() -> None:
    workflow = release_workflow()
    # PyYAML reads the key `on` as True.
    assert workflow[True] == {"push": {"tags": ["v*"]}}
    jobs = workflow["jobs"]
    for job in ("image", "chart"):
        assert jobs[job]["permissions"]["id-token"] == "write", job
    build = next(s for s in jobs["image"]["steps"] if s.get("uses", "").startswith("docker/build-push-action@"))
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    # Cross-compiled, never emulated.
    uses = [s.get("uses", "") for job in jobs.values() for s in job["steps"]]
    assert not any(u.startswith("docker/setup-qemu-action") for u in uses)


def test_every_action_is_pinned_to_a_version() -> None:
    pattern = re.compile(r"^\s*(?:-\s*)?uses:\s*(\S+)", re.M)
    found = [m for path in sorted(WORKFLOWS.glob("*.yml")) for m in pattern.findall(path.read_text())]
    assert found, "no `uses:` found"
    unpinned = [u for u in found if not re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@v\d+(\.\d+){0,2}", u)]
    assert unpinned == []


def test_ci_runs_make_test() -> None:
    steps = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())["jobs"]["test"]["steps"]
    assert any(s.get("run") == ".ci/run" for s in steps)
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_changelog_follows_keep_a_changelog() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n")
    assert "https://keepachangelog.com/en/1.1.0/" in text
    sections = re.findall(r"^## \[([^\]]+)\]", text, re.M)
    assert sections and sections[0] == "Unreleased", sections
    kinds = set(re.findall(r"^### (\w+)", text, re.M))
    assert kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, kinds
    for version in sections:
        assert re.search(rf"^\[{re.escape(version)}\]: \S+", text, re.M), f"no link for [{version}]"
