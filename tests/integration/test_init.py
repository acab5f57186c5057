"""pydeploy.stack.init: a new stack's inventory written from nothing (hosts,
the stack description, secrets in ansible-vault), refused over an existing
one, and deployed as written once a user filled in the image and how to reach
the host: the Flight Hunter image as the stack initdemo, its proxy on
127.0.0.1:9873, removed with teardown.yml at the end."""

from __future__ import annotations

import json
import re
import secrets
import stat
from pathlib import Path

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from conftest import teardown_stack
from playbook import REPO, run_playbook
from proxy import https_request

STACK = "initdemo"
HTTP_PORT, HTTPS_PORT = 9870, 9873
PLACEHOLDER_IMAGE = "registry.example.com/team/initdemo"
GROUPS = ("proxy", "web", "worker", "beat", "cron", "postgres", "redis")
VAULT_KEYS = (
    "vault_postgres_password",
    "vault_postgres_superuser_password",
    "vault_redis_password",
    "vault_secret_key",
)


def init(*pairs: str, check: bool = False, playbook: str = "pydeploy.stack.init"):
    """ansible-playbook pydeploy.stack.init with ``-e key=value`` for each pair, as a user types it (no
    inventory: the checkout's default one would lend its stack_* values)."""
    args = [arg for pair in pairs for arg in ("-e", pair)]
    return run_playbook(playbook, "localhost,", args=args, check=check, json_output=False)


def output(run) -> str:
    return run.stdout + run.stderr


def said(run) -> str:
    """The output with its lines unwrapped (the yaml callback folds long messages)."""
    return " ".join(output(run).split())


def decrypt(path: Path, password: str) -> dict:
    vault = VaultLib([("default", VaultSecret(password.encode()))])
    return yaml.safe_load(vault.decrypt(path.read_bytes()))


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def password_file(tmp_path_factory) -> tuple[Path, str]:
    password = secrets.token_urlsafe(24)
    path = tmp_path_factory.mktemp("vault") / "vault-password"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path, password


@pytest.fixture(scope="module")
def written(tmp_path_factory, password_file):
    """One init, at -v and with --diff, into a directory of the test's own."""
    dest = tmp_path_factory.mktemp("init") / "inventories"
    pairs = [
        f"stack_name={STACK}",
        f"stack_image={PLACEHOLDER_IMAGE}",
        "init_hosts=localhost",
        f"init_dest={dest}",
        f"init_vault_password_file={password_file[0]}",
    ]
    args = [arg for pair in pairs for arg in ("-e", pair)]
    run = run_playbook("pydeploy.stack.init", "localhost,", args=[*args, "--diff"], verbosity=1, json_output=False)
    assert run.rc == 0, output(run)[-3000:]
    return dest / "prod", run


# --------------------------------------------------------------------------- what it writes


def test_it_writes_hosts_the_stack_and_an_encrypted_vault(written, password_file):
    directory, _ = written
    hosts = yaml.safe_load((directory / "hosts.yml").read_text())
    for group in GROUPS:
        assert list(hosts["all"]["children"][group]["hosts"]) == ["localhost"], group
    assert hosts["all"]["vars"]["ansible_become"] is True

    description = yaml.safe_load((directory / "group_vars/all/stack.yml").read_text())
    assert description["stack_name"] == STACK
    assert description["stack_image"] == PLACEHOLDER_IMAGE
    assert description["stack_processes"]["web"]["port"] == 8000
    assert description["stack_domains"] == ["localhost"]
    assert description["postgres_password"] == "{{ vault_postgres_password }}"

    vault_file = directory / "group_vars/all/vault.yml"
    assert vault_file.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256\n")
    assert stat.S_IMODE(vault_file.stat().st_mode) == 0o600
    secrets_written = decrypt(vault_file, password_file[1])
    assert set(VAULT_KEYS) <= set(secrets_written)
    assert all(re.fullmatch(r"[A-Za-z0-9]{32,}", secrets_written[key]) for key in VAULT_KEYS)
    assert len(set(secrets_written[key] for key in VAULT_KEYS)) == len(VAULT_KEYS)


def test_no_secret_is_in_its_output(written, password_file):
    directory, run = written
    secrets_written = decrypt(directory / "group_vars/all/vault.yml", password_file[1])
    text = output(run)
    assert "Wrote " in text  # the -v output is there
    for key in VAULT_KEYS:
        assert secrets_written[key] not in text, key
    assert password_file[1] not in text


def test_every_option_of_the_stack_description_is_in_it(written):
    """Each stack_* variable, each key of a process, a job, a volume and of the nested options, at least as a
    commented example."""
    directory, _ = written
    text = (directory / "group_vars/all/stack.yml").read_text()
    specs = yaml.safe_load((REPO / "roles/stack/meta/argument_specs.yml").read_text())["argument_specs"]

    def names(options: dict) -> set[str]:
        found = set(options)
        for option in options.values():
            found |= names(option.get("options", {}))
        return found

    expected = set().union(*(names(spec.get("options", {})) for spec in specs.values()))
    missing = sorted(name for name in expected if not re.search(rf"^[#\s]*{name}:", text, re.MULTILINE))
    assert not missing, f"add them to playbooks/templates/init/stack.yml.j2: {missing}"


def test_what_it_writes_passes_the_stack_role_and_opens_the_vault(written, password_file, tmp_path):
    directory, _ = written
    playbook = tmp_path / "check.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "all",
                    "connection": "local",
                    "become": False,
                    "gather_facts": False,
                    "tasks": [
                        {"ansible.builtin.include_role": {"name": "pydeploy.stack.stack"}},
                        {
                            "ansible.builtin.assert": {
                                "that": [
                                    "postgres_password | length >= 32",
                                    "postgres_superuser_password | length >= 32",
                                    "redis_password | length >= 32",
                                ]
                            },
                            "no_log": True,
                        },
                    ],
                }
            ]
        )
    )
    run = run_playbook(
        str(playbook), str(directory), args=["--vault-password-file", str(password_file[0])], json_output=False
    )
    assert run.rc == 0, output(run)[-3000:]


def test_a_second_init_refuses_and_changes_nothing(written, password_file):
    directory, _ = written
    before = snapshot(directory)
    run = init(
        f"stack_name={STACK}",
        "stack_image=registry.example.com/team/other",
        "init_hosts=localhost",
        f"init_dest={directory.parent}",
        f"init_vault_password_file={password_file[0]}",
    )
    assert run.rc != 0
    assert f"{directory} exists already" in said(run)
    assert snapshot(directory) == before


def test_check_mode_says_what_it_would_write_and_writes_nothing(tmp_path, password_file):
    """Through the checkout's init.yml, which imports the collection's playbook."""
    run = init(
        "stack_name=checkdemo",
        "stack_image=registry.example.com/team/checkdemo",
        "init_hosts=app1.example.com,app2.example.com",
        "init_env=staging",
        f"init_dest={tmp_path / 'inventories'}",
        f"init_vault_password_file={password_file[0]}",
        check=True,
        playbook="init.yml",
    )
    assert run.rc == 0, output(run)[-3000:]
    assert f"Would write {tmp_path / 'inventories' / 'staging'}" in said(run)
    assert "app1.example.com also in beat, cron, postgres and redis" in said(run)
    assert not (tmp_path / "inventories").exists()


def test_bad_inputs_are_all_named_before_anything_is_written(tmp_path, password_file):
    run = init(
        "stack_name=My.App",
        "stack_image=registry.example.com:5000/team/myapp:v1",
        "init_hosts=,",
        f"init_dest={tmp_path / 'inventories'}",
        f"init_vault_password_file={password_file[0]}",
    )
    assert run.rc != 0
    text = said(run)
    assert "stack_name 'My.App' must be lower-case letters" in text
    assert "has a tag or digest: give the repository (registry.example.com:5000/team/myapp)" in text
    assert "init_hosts names no host" in text
    assert not (tmp_path / "inventories").exists()


def test_without_a_vault_password_it_fails_naming_the_ways_to_give_one(tmp_path, monkeypatch):
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    run = init(
        "stack_name=novault",
        "stack_image=registry.example.com/team/novault",
        "init_hosts=localhost",
        f"init_dest={tmp_path / 'inventories'}",
    )
    assert run.rc != 0
    assert "no vault password file" in said(run)
    assert "ANSIBLE_VAULT_PASSWORD_FILE" in said(run)
    assert not (tmp_path / "inventories").exists()


def test_the_configured_vault_password_file_may_be_a_script(tmp_path, monkeypatch):
    script = tmp_path / "vault-pass.sh"
    script.write_text("#!/bin/sh\necho from-a-password-manager\n")
    script.chmod(0o700)
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(script))
    run = init(
        "stack_name=scripted",
        "stack_image=registry.example.com/team/scripted",
        "init_hosts=localhost",
        f"init_dest={tmp_path / 'inventories'}",
    )
    assert run.rc == 0, output(run)[-3000:]
    vault = decrypt(tmp_path / "inventories/prod/group_vars/all/vault.yml", "from-a-password-manager")
    assert set(VAULT_KEYS) <= set(vault)


# --------------------------------------------------------------------------- deployed as written


def fill_in(path: Path, replacements: list[tuple[str, str]]) -> None:
    """Edit a written file as a user would: each line matching a pattern (an option, or its commented example)
    becomes the given text."""
    text = path.read_text()
    for pattern, line in replacements:
        text, count = re.subn(pattern, line, text, count=1, flags=re.MULTILINE)
        assert count == 1, f"{path.name} has no line matching {pattern!r}"
    path.write_text(text)


@pytest.fixture(scope="module")
def deployed(bed, docker_client, written, password_file):
    """The inventory as written, with the Flight Hunter image, its migration and this machine's loopback filled
    in, deployed; removed with teardown.yml by the last test (and by this fixture whatever happened)."""
    directory, _ = written
    images = {name: image["ref"] for name, image in bed["images"].items()}
    fill_in(
        directory / "hosts.yml",
        [
            (r"^    ansible_become: true$", "    ansible_become: false"),
            (
                r"^      # ansible_host: .*$",
                '      ansible_connection: local\n      ansible_python_interpreter: "{{ ansible_playbook_python }}"',
            ),
        ],
    )
    fill_in(
        directory / "group_vars/all/stack.yml",
        [
            (r"^stack_image: .*$", f"stack_image: {images['flight_hunter'].rsplit(':', 1)[0]}"),
            (r"^stack_version: .*$", "stack_version: v2"),
            (r"^stack_migrations: \{\}$", "stack_migrations:\n  command: alembic upgrade head"),
            (r"^  # expect: .*$", "  expect: {status: ok}"),
            (r"^# postgres_image: .*$", f"postgres_image: {images['postgres']}"),
            (r"^# redis_image: .*$", f"redis_image: {images['redis']}"),
            (r"^# nginx_image: .*$", f"nginx_image: {images['nginx']}"),
            (r"^# nginx_bind_address: .*$", "nginx_bind_address: 127.0.0.1"),
            (r"^# nginx_http_port: .*$", f"nginx_http_port: {HTTP_PORT}"),
            (r"^# nginx_https_port: .*$", f"nginx_https_port: {HTTPS_PORT}"),
        ],
    )
    with (directory / "group_vars/all/stack.yml").open("a") as handle:
        handle.write("\n# This host's interpreter is the controller's virtualenv: nothing to install.\n")
        handle.write("docker_host_python_deps: none\n")
    teardown_stack(docker_client, STACK)
    run = run_playbook("deploy.yml", str(directory), args=["--vault-password-file", str(password_file[0])])
    assert run.rc == 0, run.explain()
    yield directory
    teardown_stack(docker_client, STACK)


def test_the_app_answers_through_the_proxy(deployed):
    status, _, body = https_request(STACK, HTTPS_PORT, "/health")
    assert status == 200, body
    assert json.loads(body)["version"] == "v2"
    # The generated passwords reached PostgreSQL, Redis and the app alike.
    status, _, body = https_request(STACK, HTTPS_PORT, "/ready")
    assert status == 200, body
    assert (json.loads(body)["database"], json.loads(body)["redis"]) == ("ok", "ok")


def test_teardown_removes_the_stack(deployed, docker_client, password_file):
    run = run_playbook(
        "teardown.yml",
        str(deployed),
        extra_vars={"teardown_stack": STACK, "teardown_volumes": True},
        args=["--vault-password-file", str(password_file[0])],
    )
    assert run.rc == 0, run.explain()
    assert not docker_client.containers.list(all=True, filters={"label": f"pydeploy.stack={STACK}"})
    assert not [volume.name for volume in docker_client.volumes.list() if volume.name.startswith(f"{STACK}-")]
    assert not docker_client.networks.list(names=[STACK])
    assert not Path(f"/etc/pydeploy/{STACK}").exists()
