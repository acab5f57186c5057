from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.pydeploy.stack.plugins.filter.jobs import cron_job
from ansible_collections.pydeploy.stack.plugins.filter.processes import process_containers, process_replicas
from ansible_collections.pydeploy.stack.plugins.filter.volumes import (
    served_volumes,
    volume_binds,
    volume_errors,
    volume_fills,
)

VOLUMES = {
    "static": {"path": "/app/static", "serve": "/static/", "fill": "python manage.py collectstatic --noinput"},
    "images": {"path": "/app/images", "serve": "/images/", "max_age": 60},
    "cache": "/app/cache",
}


def test_a_process_naming_no_volume_mounts_them_all_read_write_sorted_by_path():
    assert volume_binds(None, VOLUMES, "gal") == [
        "gal-cache:/app/cache:rw",
        "gal-images:/app/images:rw",
        "gal-static:/app/static:rw",
    ]


def test_a_process_mounts_the_volumes_it_names_and_read_only_when_told():
    assert volume_binds(["static:ro", "images"], VOLUMES, "gal") == [
        "gal-images:/app/images:rw",
        "gal-static:/app/static:ro",
    ]
    assert volume_binds([], VOLUMES, "gal") == []
    assert volume_binds(None, {}, "gal") == []


def test_an_unknown_volume_is_an_error_of_the_filter():
    with pytest.raises(AnsibleFilterError, match="no volume 'uploads'"):
        volume_binds(["uploads"], VOLUMES, "gal")


def test_the_proxy_serves_the_volumes_with_a_prefix_longest_first_read_only():
    served = served_volumes({**VOLUMES, "css": {"path": "/app/css", "serve": "/static/css/"}}, "gal", 100)
    assert [entry["prefix"] for entry in served] == ["/static/css/", "/images/", "/static/"]
    images = served[1]
    assert images["max_age"] == 60 and served[2]["max_age"] == 100
    assert images["mount"] == {
        "type": "volume",
        "source": "gal-images",
        "target": "/srv/pydeploy/images",
        "read_only": True,
    }
    assert images["root"] == "/srv/pydeploy/images/"


def test_fills_run_the_command_at_the_path_or_copy_the_image_directory_elsewhere():
    volumes = {**VOLUMES, "public": {"path": "/app/public", "copy": "/app/assets/"}}
    assert volume_fills(volumes, "gal") == [
        {
            "name": "public",
            "volume": "gal-public",
            "path": "/.pydeploy-fill/public",
            "command": ["cp", "-a", "/app/assets/.", "/.pydeploy-fill/public/"],
            "user": "0",
        },
        {
            "name": "static",
            "volume": "gal-static",
            "path": "/app/static",
            "command": "python manage.py collectstatic --noinput",
        },
    ]


def test_a_good_description_has_no_error():
    processes = {"web": {"command": "gunicorn", "port": 8000, "volumes": ["static:ro", "images"]}, "worker": "celery"}
    jobs = {"thumbs": {"schedule": "@hourly", "command": "x", "volumes": ["images"]}}
    assert volume_errors(VOLUMES, processes, jobs) == []


def test_each_problem_is_named_once():
    volumes = {
        "Bad": "/a",
        "relative": "app/x",
        "root": "/",
        "twin": {"path": "/a/"},
        "prefix": {"path": "/p", "serve": "static"},
        "both": {"path": "/b", "fill": "x", "copy": "/y"},
        "same-prefix": {"path": "/q", "serve": "/s/"},
        "same-prefix2": {"path": "/r", "serve": "/s/"},
        "age": {"path": "/t", "max_age": -1},
    }
    processes = {"web": {"command": "w", "volumes": ["nope", "prefix:rx"]}}
    jobs = {"j": {"schedule": "@daily", "command": "x", "volumes": ["gone"]}}
    errors = volume_errors(volumes, processes, jobs)
    expected = [
        "stack_volumes.Bad: a volume name",
        "stack_volumes.relative.path must be an absolute path",
        "stack_volumes.root.path must be an absolute path",
        "stack_volumes.twin.path /a/ is also stack_volumes.Bad's",
        "stack_volumes.prefix.serve must be a URL path prefix",
        "stack_volumes.both: fill and copy",
        "stack_volumes.same-prefix2.serve /s/ is also stack_volumes.same-prefix's",
        "stack_volumes.age.max_age must be seconds",
        "stack_processes.web.volumes: no volume 'nope'",
        "stack_processes.web.volumes: 'prefix:rx'",
        "stack_jobs.j.volumes: no volume 'gone'",
    ]
    for message in expected:
        assert sum(message in error for error in errors) == 1, (message, errors)
    assert len(errors) == len(expected), errors


def test_background_processes_and_jobs_mount_their_volumes():
    processes = {
        "web": {"command": "w", "port": 1},
        "worker": {"command": "celery worker", "volumes": ["images"]},
        "beat": {"command": "celery beat", "singleton": True},
    }
    wanted = process_containers(processes, "gal", "h", ["h"], "h")
    replicas = {entry["name"]: entry for entry in process_replicas(wanted, VOLUMES, "gal")}
    assert replicas["gal-worker-1"]["volumes"] == ["gal-images:/app/images:rw"]
    assert len(replicas["gal-beat-1"]["volumes"]) == 3
    # Without volumes, the entries stay as they were.
    assert "volumes" not in process_replicas(wanted)[0]
    job = cron_job({"schedule": "@daily", "command": "x", "volumes": ["images:ro"]}, 60, 5, VOLUMES, "gal")
    assert job["volumes"] == ["gal-images:/app/images:ro"]
    assert "volumes" not in cron_job({"schedule": "@daily", "command": "x"}, 60, 5)
