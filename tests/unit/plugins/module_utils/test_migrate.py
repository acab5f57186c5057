"""Pure logic behind db_migrate: names, env files, Alembic output, the lock, one-off runs.  No Docker:
where a client is needed, a fake one stands in."""

from __future__ import annotations

import json
import threading

import pytest
from ansible_collections.pydeploy.stack.plugins.module_utils import _docker
from ansible_collections.pydeploy.stack.plugins.module_utils._docker import (
    EnvFileError,
    OneOffTimeout,
    build_environment,
    parse_env_file,
    parse_env_file_text,
    run_oneoff,
    split_command,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._migrate import (
    LockTimeout,
    MigrationLock,
    RevisionGraph,
    holder_message,
    holder_record,
    image_name,
    parse_current,
    secret_values,
    stack_name,
    tail_lines,
    truncate,
    upgrade_target,
    upgraded_to,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._secrets import MASK

# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("127.0.0.1:5000/pydeploy/flight-hunter:v1", "flight-hunter"),
        ("registry.example.com/app/backend", "backend"),
        ("backend@sha256:" + "a" * 64, "backend"),
        ("reg:5000/team/app:v2@sha256:" + "b" * 64, "app"),
    ],
)
def test_image_name(image, name):
    assert image_name(image) == name


def test_stack_name_prefers_stack_and_is_safe_as_a_path_component():
    assert stack_name("flight_hunter", "x/y:z") == "flight_hunter"
    assert stack_name("../../etc", "x/y:z") == "etc"
    assert stack_name("my stack/1", "x/y:z") == "my-stack-1"
    assert stack_name(None, "reg:5000/team/app:v1") == "app"
    with pytest.raises(Exception, match="cannot derive a stack name"):
        stack_name("..", "x/y:z")


# --------------------------------------------------------------------------- env files and commands


def test_env_file_follows_docker_env_file_rules():
    text = (
        "\ufeff# a comment\n"
        "\n"
        "DATABASE_URL=postgresql://app:pa=ss@db/app\n"
        "   INDENTED=yes\n"
        'QUOTED="kept as is"\n'
        "EMPTY=\n"
        "  # indented comment\n"
        "TRAILING=space \r\n"
    )
    assert parse_env_file_text(text) == {
        "DATABASE_URL": "postgresql://app:pa=ss@db/app",
        "INDENTED": "yes",
        "QUOTED": '"kept as is"',
        "EMPTY": "",
        "TRAILING": "space ",
    }


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("OK=1\nsuper-secret-without-equals\n", "line 2: expected KEY=VALUE"),
        ("BAD KEY=super-secret\n", "line 1: invalid variable name"),
        ("=super-secret\n", "line 1: invalid variable name"),
    ],
)
def test_env_file_errors_name_the_line_never_the_value(text, error):
    with pytest.raises(EnvFileError) as caught:
        parse_env_file_text(text, source="/etc/app.env")
    assert str(caught.value) == f"/etc/app.env, {error}"
    assert "secret" not in str(caught.value)


def test_env_file_from_disk_and_overrides(tmp_path):
    path = tmp_path / "app.env"
    path.write_text("A=from-file\nB=file\n")
    assert parse_env_file(str(path)) == {"A": "from-file", "B": "file"}
    assert build_environment(str(path), {"B": "task", "C": 3, "D": None}) == {
        "A": "from-file",
        "B": "task",
        "C": "3",
        "D": "",
    }
    with pytest.raises(EnvFileError, match="cannot read env file"):
        parse_env_file(str(tmp_path / "missing.env"))


def test_split_command_never_needs_a_shell():
    assert split_command("alembic upgrade head") == ["alembic", "upgrade", "head"]
    assert split_command("python -c 'print(1); print(2)'") == ["python", "-c", "print(1); print(2)"]
    assert split_command(["echo", "$HOME", "a b"]) == ["echo", "$HOME", "a b"]
    assert split_command(["n", 1]) == ["n", "1"]
    assert split_command(None) == []


# --------------------------------------------------------------------------- Alembic output

LINEAR = """\
0001 -> 0002 (head), alerts.channel, price_cache.provider and an index
<base> -> 0001, price_cache and alerts
"""

BRANCHED = """\
INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.
c3, d4 -> e5 (head) (mergepoint), merge (the two branches)
b2 -> c3, left: with a colon
b2 -> d4, right
a1 (x9) -> b2 (branchpoint), second
<base> -> x9, a dependency
<base> -> a1 (mylabel), first, with a comma
"""


def test_history_is_parsed_into_a_graph():
    graph = RevisionGraph.parse(LINEAR)
    assert graph.parents == {"0002": ["0001"], "0001": []}
    assert graph.order == ["0001", "0002"]
    assert graph.heads == ["0002"]

    graph = RevisionGraph.parse(BRANCHED)
    assert graph.parents["e5"] == ["c3", "d4"]
    assert graph.parents["b2"] == ["a1", "x9"]  # depends_on counts as a parent
    assert graph.parents["a1"] == []
    assert graph.heads == ["e5"]
    assert "Context" not in graph


@pytest.mark.parametrize(
    ("current", "pending"),
    [
        ([], ["0001", "0002"]),
        (["0001"], ["0002"]),
        (["0002"], []),
    ],
)
def test_pending_linear(current, pending):
    assert RevisionGraph.parse(LINEAR).pending(current) == pending


def test_pending_respects_the_graph_order():
    graph = RevisionGraph.parse(BRANCHED)
    everything = graph.pending([])
    assert sorted(everything) == ["a1", "b2", "c3", "d4", "e5", "x9"]
    for rev, parents in graph.parents.items():
        for parent in parents:
            assert everything.index(parent) < everything.index(rev)
    assert graph.pending(["c3"]) == ["d4", "e5"]
    assert graph.pending(["c3", "d4"]) == ["e5"]
    assert graph.pending([], ["b2"]) == ["a1", "x9", "b2"]


def test_pending_with_two_heads():
    graph = RevisionGraph.parse("b2 -> d4 (head), right\nb2 -> c3 (head), left\n<base> -> b2, root\n")
    assert sorted(graph.heads) == ["c3", "d4"]
    assert graph.pending(["c3"]) == ["d4"]


def test_current_revision_is_read_among_log_lines():
    graph = RevisionGraph.parse(LINEAR)
    output = (
        "INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\n"
        "INFO  [alembic.runtime.migration] Will assume transactional DDL.\n"
        "0001\n"
    )
    assert parse_current(output, graph) == ["0001"]
    assert parse_current("0002 (head)\n", graph) == ["0002"]
    assert parse_current("INFO  [alembic] Context impl.\n", graph) == []
    # a lone word that is not a revision of this image is not taken for one
    assert parse_current("Connecting\n0001 (branchpoint)\n", graph) == ["0001"]
    assert parse_current("c3\nd4\n", RevisionGraph.parse(BRANCHED)) == ["c3", "d4"]


def test_upgrade_target():
    graph = RevisionGraph.parse(LINEAR)
    assert upgrade_target(["alembic", "upgrade", "head"], graph) is None
    assert upgrade_target(["alembic", "-c", "x.ini", "upgrade", "heads"], graph) is None
    assert upgrade_target(["alembic", "upgrade", "0001"], graph) == ["0001"]
    assert upgrade_target(["alembic", "upgrade", "--tag", "t", "0001"], graph) == ["0001"]
    assert upgrade_target(["alembic", "upgrade", "+1"], graph) is None
    assert upgrade_target(["python", "manage.py", "migrate"], graph) is None


def test_where_a_successful_upgrade_left_the_database_is_known_only_for_head_and_heads():
    linear = RevisionGraph.parse(LINEAR)
    branched = RevisionGraph.parse("b2 -> d4 (head), right\nb2 -> c3 (head), left\n<base> -> b2, root\n")
    assert upgraded_to(["alembic", "upgrade", "head"], linear) == ["0002"]
    assert upgraded_to(["/opt/venv/bin/alembic", "-c", "x.ini", "upgrade", "--tag", "t", "heads"], linear) == ["0002"]
    assert sorted(upgraded_to(["alembic", "upgrade", "heads"], branched)) == sorted(branched.heads)
    # Read back: 'head' with two heads fails in Alembic; a named or relative target may leave other
    # branches where they were; --sql writes nothing; another program says nothing.
    assert upgraded_to(["alembic", "upgrade", "head"], branched) is None
    assert upgraded_to(["alembic", "upgrade", "0001"], linear) is None
    assert upgraded_to(["alembic", "upgrade", "+1"], linear) is None
    assert upgraded_to(["alembic", "upgrade", "head", "--sql"], linear) is None
    assert upgraded_to(["sh", "-c", "alembic upgrade head"], linear) is None


# --------------------------------------------------------------------------- failure messages

ALEMBIC_FAILURE = """\
INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.
INFO  [alembic.runtime.migration] Running upgrade 0002 -> 0003, a broken migration
Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/psycopg/cursor.py", line 117, in execute
    raise ex.with_traceback(None)
psycopg.errors.UndefinedTable: relation "price_history" does not exist

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/opt/venv/bin/alembic", line 8, in <module>
    sys.exit(main())
             ^^^^^^
sqlalchemy.exc.ProgrammingError: (psycopg.errors.UndefinedTable) relation "price_history" does not exist
[SQL: ALTER TABLE price_history ADD COLUMN airline text]
"""


def test_failure_message_keeps_the_last_step_and_the_final_exception():
    assert tail_lines(ALEMBIC_FAILURE) == (
        "INFO  [alembic.runtime.migration] Running upgrade 0002 -> 0003, a broken migration\n"
        'sqlalchemy.exc.ProgrammingError: (psycopg.errors.UndefinedTable) relation "price_history" does not exist\n'
        "[SQL: ALTER TABLE price_history ADD COLUMN airline text]"
    )


def test_failure_message_without_traceback_is_the_tail():
    text = "\n".join(f"line {n}" for n in range(30)) + "\n\n"
    assert tail_lines(text, 3) == "line 27\nline 28\nline 29"


def test_truncate_keeps_the_end():
    assert truncate("abc", 5) == "abc"
    assert truncate("0123456789", 4) == "[... 6 characters of earlier output dropped ...]\n6789"


# --------------------------------------------------------------------------- the lock


def test_lock_names_its_holder_and_is_emptied_on_release(tmp_path):
    path = tmp_path / "deep" / "stack" / "migrate.lock"
    holder = holder_record("reg/app:v2")
    with MigrationLock(str(path), 1, holder):
        written = json.loads(path.read_text())
        assert written == holder
        assert set(written) == {"pid", "host", "since", "image"}
    assert path.read_text() == ""
    # free again
    with MigrationLock(str(path), 0, holder):
        pass


def test_second_holder_times_out_naming_the_first(tmp_path):
    path = str(tmp_path / "migrate.lock")
    first = {"pid": 4242, "host": "web1", "since": "2025-11-05T14:30:22Z", "image": "reg/app:v2"}
    with MigrationLock(path, 1, first), pytest.raises(LockTimeout) as caught:
        # flock conflicts between two open() of the same file, even in one process
        with MigrationLock(path, 0.3, {"pid": 1}, poll=0.05):
            pytest.fail("the lock was taken twice")
    message = caught.value.msg
    assert message.startswith(f"migration lock {path} is held by pid 4242 on host web1 since 2025-11-05T14:30:22Z")
    assert "(image reg/app:v2)" in message
    assert message.endswith("gave up after 0 s (lock_timeout)")
    assert caught.value.result == {"lock_holder": first}


def test_waiting_for_the_lock_succeeds_once_it_is_released(tmp_path):
    path = str(tmp_path / "migrate.lock")
    first = MigrationLock(path, 1, {"pid": 1})
    first.__enter__()
    timer = threading.Timer(0.3, first.__exit__, (None, None, None))
    timer.start()
    with MigrationLock(path, 10, {"pid": 2}, poll=0.05):
        assert json.loads(open(path).read()) == {"pid": 2}
    timer.join()


def test_holder_message_without_a_holder_record():
    assert holder_message("/x.lock", None, 12.4) == (
        "migration lock /x.lock is held by a process that has not written its name yet;"
        " gave up after 12 s (lock_timeout)"
    )


def test_lock_in_an_unwritable_place_fails_clearly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(Exception, match="cannot open the migration lock"):
        MigrationLock(str(blocker / "migrate.lock"), 0, {}).__enter__()


# --------------------------------------------------------------------------- one-off containers (fake engine)


class FakeContainer:
    def __init__(self, engine, **spec):
        self.engine = engine
        self.spec = spec
        self.name = spec["name"]
        self.killed = threading.Event()

    def start(self):
        if self.engine.fail_on == "start":
            raise _docker.APIError("start refused")

    def logs(self, **kwargs):
        if not kwargs.get("stream"):
            # The complete log, read once the container stopped; the stream may have missed its start.
            assert kwargs == {"stdout": True, "stderr": True}
            return b"".join(self.engine.complete_log or self.engine.chunks)
        assert kwargs == {"stream": True, "follow": True, "stdout": True, "stderr": True}
        return self._stream()

    def _stream(self):
        yield from self.engine.chunks
        if self.engine.hang:
            self.killed.wait(10)

    def wait(self, timeout=None):
        return {"StatusCode": 137 if self.killed.is_set() else self.engine.exit_code}

    def kill(self):
        self.killed.set()

    def remove(self, force=False, v=False):
        assert force and v
        self.engine.removed.append(self.name)


class FakeEngine:
    def __init__(self, chunks=(b"",), exit_code=0, hang=False, fail_on=None, complete_log=None):
        self.chunks = chunks
        self.complete_log = complete_log
        self.exit_code = exit_code
        self.hang = hang
        self.fail_on = fail_on
        self.created = []
        self.removed = []
        self.containers = self

    def create(self, image, **spec):
        container = FakeContainer(self, image=image, **spec)
        self.created.append(container)
        return container


def test_oneoff_returns_exit_code_and_output_and_removes_the_container():
    engine = FakeEngine(chunks=[b"hello ", b"w\xc3\xb6rld\n"], exit_code=3)
    code, output = run_oneoff(
        engine,
        "img:1",
        "alembic upgrade head",
        environment={"A": "1"},
        network="net",
        labels={"pydeploy.oneoff": "migrate", "n": 1},
        name="app-migrate-1",
    )
    assert (code, output) == (3, "hello wörld\n")
    spec = engine.created[0].spec
    assert spec["command"] == ["alembic", "upgrade", "head"]
    assert spec["environment"] == {"A": "1"}
    assert spec["labels"] == {"pydeploy.oneoff": "migrate", "n": "1"}
    assert spec["network"] == "net"
    assert engine.removed == ["app-migrate-1"]


def test_oneoff_output_is_bounded_to_its_tail():
    engine = FakeEngine(chunks=[b"x" * 100, b"y" * 100])
    _, output = run_oneoff(engine, "img", ["true"], name="c", max_output=50)
    assert output == "[... 150 bytes of earlier output dropped ...]\n" + "y" * 50


def test_oneoff_timeout_kills_and_removes():
    engine = FakeEngine(chunks=[b"working...\n"], hang=True)
    with pytest.raises(OneOffTimeout) as caught:
        run_oneoff(engine, "img", ["sleep", "1000"], name="slow", timeout=0.2)
    assert caught.value.output == "working...\n"
    assert engine.created[0].killed.is_set()
    assert engine.removed == ["slow"]


def test_oneoff_removes_the_container_when_the_engine_fails():
    engine = FakeEngine(fail_on="start")
    with pytest.raises(_docker.APIError):
        run_oneoff(engine, "img", ["true"], name="broken")
    assert engine.removed == ["broken"]


# --------------------------------------------------------------------------- masking


def test_secret_values_hide_urls_only_by_their_password():
    secrets, urls = secret_values(
        {
            "DATABASE_URL": "postgresql://app:p%40ss-word@db:5432/app",
            "REDIS_URL": "redis://cache:6379/0",
            "STRIPE_SECRET_KEY": "sk_live_123456",
            "EMPTY": "",
        }
    )
    assert urls == {"postgresql://app:p%40ss-word@db:5432/app": f"postgresql://app:{MASK}@db:5432/app"}
    assert sorted(secrets) == sorted(["p%40ss-word", "p@ss-word", "redis://cache:6379/0", "sk_live_123456"])


def test_oneoff_output_is_the_complete_log_when_the_stream_missed_its_start():
    engine = FakeEngine(
        chunks=[b"ERROR: it failed\n"], exit_code=1, complete_log=[b"connecting\n", b"ERROR: it failed\n"]
    )
    code, output = _docker.run_oneoff(engine, "img", ["migrate"])
    assert (code, output) == (1, "connecting\nERROR: it failed\n")
