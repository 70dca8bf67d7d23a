"""The docker cluster harness's decisions that need no docker engine: where the base image
comes from, and how a failed command is reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import pytest

from slurm_qpu_lab import docker_cluster
from slurm_qpu_lab.docker_cluster import BASE_PACKAGES, ClusterError, DockerCluster, Result


class FakeImages:
    def __init__(self, have: set[str], registry: bool) -> None:
        self.have, self.registry = have, registry
        self.builds: list[dict[str, Any]] = []

    def get(self, tag: str) -> object:
        if tag not in self.have:
            raise docker.errors.ImageNotFound(tag)
        return object()

    def pull(self, repository: str, tag: str) -> object:
        if not self.registry:
            raise docker.errors.APIError("Get https://registry/v2/: no such host")
        return object()

    def build(self, **kwargs: Any) -> object:
        self.builds.append(kwargs)
        return object()


class FakeClient:
    def __init__(self, images: FakeImages) -> None:
        self.images = images


def cluster_with(images: FakeImages, tmp_path: Path, said: list[str],
                 monkeypatch: pytest.MonkeyPatch) -> DockerCluster:
    """A harness whose every docker client is the fake one."""
    client = FakeClient(images)
    monkeypatch.setattr(docker, "from_env", lambda **kw: client)
    c = DockerCluster(root=tmp_path, say=said.append)
    c._client = client  # type: ignore[assignment]
    return c


def test_base_image_is_built_on_debian_bookworm_when_a_registry_answers(tmp_path, monkeypatch):
    images, said = FakeImages(set(), registry=True), []
    c = cluster_with(images, tmp_path, said, monkeypatch)
    monkeypatch.setattr(c, "_import_debootstrap", lambda tag: pytest.fail("debootstrap ran"))
    tag = c.base_image()
    assert tag.startswith("slurm-qpu-base:bookworm-")
    [build] = images.builds
    assert build["tag"] == tag
    assert Path(build["path"]) == docker_cluster.REPO / "docker" / "base"
    assert build["buildargs"]["PACKAGES"].split() == list(BASE_PACKAGES)
    assert (Path(build["path"]) / "Dockerfile").read_text().count("FROM debian:${SUITE}") == 1


def test_base_image_comes_from_debootstrap_when_no_registry_answers(tmp_path, monkeypatch):
    images, said, imported = FakeImages(set(), registry=False), [], []
    c = cluster_with(images, tmp_path, said, monkeypatch)
    monkeypatch.setattr(c, "_import_debootstrap", imported.append)
    tag = c.base_image()
    assert imported == [tag]
    assert images.builds == []
    assert any("no registry answers" in s and "debootstrap" in s for s in said)


def test_a_cached_base_image_is_used_as_it_is(tmp_path, monkeypatch):
    first = cluster_with(FakeImages(set(), registry=False), tmp_path, [], monkeypatch)
    monkeypatch.setattr(first, "_import_debootstrap", lambda tag: None)
    tag = first.base_image()
    images = FakeImages({tag}, registry=True)
    c = cluster_with(images, tmp_path, [], monkeypatch)
    assert c.base_image() == tag
    assert images.builds == []


def test_a_failed_cluster_command_names_itself_and_shows_its_output():
    with pytest.raises(ClusterError, match="sbatch exited 1:\nsbatch: error: Invalid --qpu"):
        Result(1, "sbatch: error: Invalid --qpu argument").check("sbatch")
    assert Result(0, "ok\n").check("sbatch") == "ok\n"
