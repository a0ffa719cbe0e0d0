"""The end-to-end script is safe to run anywhere: without a cluster it says so and succeeds."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import REPO

SCRIPT = REPO / "tests" / "e2e" / "kind.sh"


def test_e2e_script_skips_without_a_kubeconfig() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SPIN_OPERATOR_E2E_KUBECONFIG"}
    result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("skipped: set SPIN_OPERATOR_E2E_KUBECONFIG")


def test_e2e_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_e2e_script_passes_shellcheck() -> None:
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
