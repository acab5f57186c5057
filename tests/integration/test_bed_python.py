"""The python stand-in: python/pip on PATH, venvs, and pip allowed system-wide
as in the official python:3.11-slim image."""

from __future__ import annotations


def _run(docker_client, image: str, argv: list[str]) -> tuple[int, str]:
    container = docker_client.containers.run(image, argv, detach=True, labels={"pydeploy.test": "1"})
    try:
        status = container.wait(timeout=120)["StatusCode"]
        return status, container.logs().decode()
    finally:
        container.remove(force=True)


def test_python_and_pip_on_path(docker_client, bed_image):
    status, out = _run(docker_client, bed_image("python"), ["sh", "-c", "python --version && pip --version"])
    assert status == 0, out
    assert "Python 3.11" in out
    assert "pip " in out


def test_default_command_is_python(docker_client, bed_image):
    image = docker_client.images.get(bed_image("python"))
    assert image.attrs["Config"]["Cmd"] == ["python3"]


def test_venv_works(docker_client, bed_image):
    status, out = _run(
        docker_client,
        bed_image("python"),
        ["sh", "-c", "python -m venv /tmp/v && /tmp/v/bin/python -c 'import sys; print(sys.prefix)'"],
    )
    assert (status, out.strip()) == (0, "/tmp/v")


def test_pip_is_not_externally_managed(docker_client, bed_image):
    status, out = _run(docker_client, bed_image("python"), ["pip", "install", "--no-index", "no-such-package-x"])
    assert status != 0
    assert "externally-managed" not in out
    assert "No matching distribution" in out
