"""The nginx stand-in: serves a mounted config, `nginx -t` rejects a broken one,
renders templates from the environment, and quits gracefully on SIGQUIT."""

from __future__ import annotations

import urllib.request

from conftest import container_logs, wait_for

SERVER = """
server {
    listen 80;
    location = /hello { default_type text/plain; return 200 "hello from the stand-in\\n"; }
}
"""


def _get(port: int, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.status, response.read().decode()


def test_default_page(run_container, bed_image):
    _, ports = run_container(bed_image("nginx"), ports={"80/tcp": None})
    status, body = wait_for(lambda: _get(ports["80/tcp"], "/"), what="nginx default page")
    assert status == 200
    assert "Welcome to nginx!" in body


def test_serves_a_mounted_config(run_container, bed_image, tmp_path):
    (tmp_path / "default.conf").write_text(SERVER)
    _, ports = run_container(
        bed_image("nginx"),
        ports={"80/tcp": None},
        volumes={str(tmp_path): {"bind": "/etc/nginx/conf.d", "mode": "ro"}},
    )
    status, body = wait_for(lambda: _get(ports["80/tcp"], "/hello"), what="nginx with a mounted config")
    assert (status, body) == (200, "hello from the stand-in\n")


def test_nginx_t_rejects_a_broken_config(docker_client, bed_image, tmp_path):
    (tmp_path / "default.conf").write_text("server { listen 80; location / { return 200 }\n")
    container = docker_client.containers.run(
        bed_image("nginx"),
        ["nginx", "-t"],
        volumes={str(tmp_path): {"bind": "/etc/nginx/conf.d", "mode": "ro"}},
        detach=True,
        labels={"pydeploy.test": "1"},
    )
    try:
        result = container.wait(timeout=60)
        logs = container_logs(container)
    finally:
        container.remove(force=True)
    assert result["StatusCode"] != 0
    assert "test failed" in logs
    assert "/etc/nginx/conf.d/default.conf" in logs


def test_templates_are_rendered_from_the_environment(run_container, bed_image, tmp_path):
    (tmp_path / "default.conf.template").write_text(
        'server { listen 80; location = /hello { default_type text/plain; return 200 "${GREETING}"; } }\n'
    )
    _, ports = run_container(
        bed_image("nginx"),
        ports={"80/tcp": None},
        environment={"GREETING": "templated"},
        volumes={str(tmp_path): {"bind": "/etc/nginx/templates", "mode": "ro"}},
    )
    status, body = wait_for(lambda: _get(ports["80/tcp"], "/hello"), what="templated nginx")
    assert (status, body) == (200, "templated")


def test_runs_as_official_user_and_stops_gracefully(run_container, bed_image):
    container, ports = run_container(bed_image("nginx"), ports={"80/tcp": None})
    wait_for(lambda: _get(ports["80/tcp"], "/"), what="nginx up")
    workers = container.exec_run(["sh", "-c", "ps -o user= -C nginx 2>/dev/null || cat /proc/[0-9]*/status"]).output
    assert b"nginx" in workers
    assert container.attrs["Config"]["StopSignal"] == "SIGQUIT"
    container.stop(timeout=20)
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0
