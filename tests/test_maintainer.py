"""Maintainer tasks that need no Docker engine to check: pushing refuses early."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

IMAGES = os.path.join(ROOT, "containers", "images.py")


@pytest.fixture
def docker_spy(tmp_path):
    """A DOCKER command that only records that it was called."""
    marker = tmp_path / "docker-called"
    spy = tmp_path / "docker"
    spy.write_text(f"#!/bin/sh\necho \"$@\" >> {marker}\nexit 1\n")
    spy.chmod(0o755)
    return str(spy), marker


def push(env_vars, *args):
    env = {k: v for k, v in os.environ.items() if k != "IMAGE_REPO"}
    return subprocess.run([sys.executable, IMAGES, "push", *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(env, **env_vars))


def test_push_without_a_registry_stops_before_docker(docker_spy):
    spy, marker = docker_spy
    result = push({"DOCKER": spy}, "latest")
    assert result.returncode == 2
    assert "set IMAGE_REPO" in result.stderr and not marker.exists()


def test_push_without_credentials_stops_before_docker(docker_spy, tmp_path):
    spy, marker = docker_spy
    result = push({"DOCKER": spy, "IMAGE_REPO": "ghcr.io/numerai", "DOCKER_CONFIG": str(tmp_path)}, "stable", "py312")
    assert result.returncode == 2
    assert "no credentials for ghcr.io: run `docker login ghcr.io` first" in result.stderr and not marker.exists()


def test_push_of_an_unbuilt_image_pushes_nothing(docker_spy, tmp_path):
    """With credentials but no local image, nothing is tagged or pushed."""
    spy, marker = docker_spy
    (tmp_path / "config.json").write_text('{"auths": {"ghcr.io": {"auth": "eDp5"}}}')
    result = push({"DOCKER": spy, "IMAGE_REPO": "ghcr.io/numerai", "DOCKER_CONFIG": str(tmp_path)}, "latest", "py311")
    assert result.returncode == 2 and "is not built: run `pixi run build-image py311` first" in result.stderr
    assert all(line.startswith("image inspect") for line in marker.read_text().splitlines())


def test_push_rejects_an_unknown_channel(docker_spy):
    spy, _ = docker_spy
    result = push({"DOCKER": spy, "IMAGE_REPO": "ghcr.io/numerai"}, "nightly")
    assert result.returncode == 2 and "channel must be latest or stable" in result.stderr
