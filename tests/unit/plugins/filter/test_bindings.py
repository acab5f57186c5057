"""Service bindings: the checks of stack_bindings, their values, and the parts of a service given by URL."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.pydeploy.stack.plugins.filter.bindings import bind, binding_errors, service_from_url

POSTGRES = {
    "scheme": "postgresql",
    "host": "shop-postgres",
    "port": 5432,
    "user": "shop",
    "password": "p@ss/w:rd",
    "database": "shop",
    "query": "",
}
REDIS = {"scheme": "redis", "host": "shop-redis", "port": 6379, "user": "", "password": "r3d!s", "db": 0, "query": ""}
# As the mongodb role's preflight composes it: the app's user is defined in its own database.
MONGODB = {
    "scheme": "mongodb",
    "host": "shop-mongodb",
    "port": 27017,
    "user": "shop",
    "password": "m@ngo/p:ss",
    "database": "shop",
    "query": "authSource=shop",
}
SERVICES = {"postgres": POSTGRES, "redis": REDIS, "mongodb": MONGODB}


def test_parts_in_the_apps_own_names():
    bound = bind(
        {
            "POSTGRES_SERVER": "postgres.host",
            "POSTGRES_PORT": "postgres.port",
            "POSTGRES_USER": "postgres.user",
            "POSTGRES_PASSWORD": "postgres.password",
            "POSTGRES_DB": "postgres.database",
            "REDIS_HOST": "redis.host",
        },
        SERVICES,
    )
    assert bound == {
        "POSTGRES_SERVER": "shop-postgres",
        "POSTGRES_PORT": "5432",
        "POSTGRES_USER": "shop",
        "POSTGRES_PASSWORD": "p@ss/w:rd",
        "POSTGRES_DB": "shop",
        "REDIS_HOST": "shop-redis",
    }


def test_urls_in_a_chosen_scheme_and_redis_database():
    bound = bind(
        {
            "DATABASE_URL": "postgres.url",
            "SQLALCHEMY_URL": {"service": "postgres", "property": "url", "scheme": "postgresql+psycopg"},
            "CELERY_BROKER_URL": {"service": "redis", "property": "url", "db": 1},
            "ACTIVITY_REDIS_URL": {"service": "redis", "property": "url", "db": 2},
            "CACHE_DB": {"service": "redis", "property": "db", "db": 3},
        },
        SERVICES,
        "postgresql",
    )
    # The credentials are percent-encoded: a password with @, / or : stays one password.
    assert bound["DATABASE_URL"] == "postgresql://shop:p%40ss%2Fw%3Ard@shop-postgres:5432/shop"
    assert bound["SQLALCHEMY_URL"] == "postgresql+psycopg://shop:p%40ss%2Fw%3Ard@shop-postgres:5432/shop"
    assert bound["CELERY_BROKER_URL"] == "redis://:r3d%21s@shop-redis:6379/1"
    assert bound["ACTIVITY_REDIS_URL"] == "redis://:r3d%21s@shop-redis:6379/2"
    assert bound["CACHE_DB"] == "3"


def test_an_external_service_keeps_its_scheme_and_query():
    postgres = service_from_url("postgres://app:s%3Acret@db.example.com/app?sslmode=require", "postgres")
    assert postgres == {
        "scheme": "postgres",
        "host": "db.example.com",
        "port": 5432,
        "user": "app",
        "password": "s:cret",
        "database": "app",
        "query": "sslmode=require",
    }
    redis = service_from_url("rediss://default:tok@cache.example.com:6380/4", "redis")
    assert (redis["scheme"], redis["port"], redis["user"], redis["password"], redis["db"]) == (
        "rediss",
        6380,
        "default",
        "tok",
        4,
    )
    bound = bind(
        {"DB": "postgres.url", "BROKER": "redis.url", "HOST": "postgres.host"},
        {"postgres": postgres, "redis": redis},
        "postgresql+psycopg",
    )
    assert bound == {
        "DB": "postgresql+psycopg://app:s%3Acret@db.example.com:5432/app?sslmode=require",
        "BROKER": "rediss://default:tok@cache.example.com:6380/4",
        "HOST": "db.example.com",
    }


def test_an_ipv6_host_is_bracketed_in_a_url():
    bound = bind({"URL": "redis.url"}, {"redis": {**REDIS, "host": "fd00::5", "password": ""}})
    assert bound == {"URL": "redis://[fd00::5]:6379/0"}


@pytest.mark.parametrize(
    ("bindings", "message"),
    [
        ({"POSTGRES_HOST": "postgres.hostname"}, "stack_bindings.POSTGRES_HOST: postgres has no property 'hostname'"),
        ({"X": "mysql.host"}, "stack_bindings.X: unknown service 'mysql' (known: postgres, redis, mongodb)"),
        ({"X": "postgres"}, "stack_bindings.X: 'postgres' is not service.property"),
        ({"1X": "postgres.host"}, "stack_bindings.1X: not an environment variable name"),
        ({"X": {"service": "redis", "property": "url", "db": 16}}, "stack_bindings.X: db must be a Redis database"),
        ({"X": {"service": "postgres", "property": "url", "db": 1}}, "stack_bindings.X: db does not apply to postgres"),
        (
            {"X": {"service": "redis", "property": "host", "scheme": "redis"}},
            "stack_bindings.X: scheme applies to a url",
        ),
        ({"X": {"service": "redis", "property": "url", "sheme": "x"}}, "stack_bindings.X: unknown key(s) sheme"),
        ({"X": 5}, "stack_bindings.X: must be service.property"),
        ({"X": "mongodb.db"}, "stack_bindings.X: mongodb has no property 'db'"),
        (
            {"X": {"service": "mongodb", "property": "url", "scheme": "mongodb"}},
            "stack_bindings.X: scheme does not apply",
        ),
        ({"X": {"service": "mongodb", "property": "url", "db": 1}}, "stack_bindings.X: db does not apply to mongodb"),
        (["postgres.host"], "stack_bindings must be a dict"),
    ],
)
def test_each_bad_binding_is_named(bindings, message):
    errors = binding_errors(bindings)
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_a_name_given_twice_and_a_service_the_stack_lacks_are_named():
    errors = binding_errors(
        {"APP_SECRET": "postgres.password", "BROKER": "redis.url"}, {"postgres": POSTGRES}, ["APP_SECRET"]
    )
    assert errors == [
        "stack_bindings.APP_SECRET: APP_SECRET is also in stack_env, stack_secrets or stack_generated_secrets; "
        "keep one",
        "stack_bindings.BROKER is bound to redis, but no Redis serves this stack "
        "(a host in the redis group, or redis_external_url)",
    ]
    with pytest.raises(AnsibleFilterError, match="no Redis serves this stack"):
        bind({"BROKER": "redis.url"}, {"postgres": POSTGRES})
    assert binding_errors({}) == [] and binding_errors(None) == []


def test_a_bad_url_never_shows_its_password():
    with pytest.raises(AnsibleFilterError) as caught:
        service_from_url("redis://:hunter2@cache/notanumber", "redis")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(AnsibleFilterError, match="names no host"):
        service_from_url("postgresql:///app", "postgres")


def test_mongodb_parts_and_url_with_percent_encoded_credentials():
    bound = bind(
        {
            "MONGO_HOST": "mongodb.host",
            "MONGO_PORT": "mongodb.port",
            "MONGO_USER": "mongodb.user",
            "MONGO_PASSWORD": "mongodb.password",
            "MONGO_DB": "mongodb.database",
            "MONGODB_URL": "mongodb.url",
        },
        SERVICES,
        "postgresql+psycopg",
    )
    assert bound == {
        "MONGO_HOST": "shop-mongodb",
        "MONGO_PORT": "27017",
        "MONGO_USER": "shop",
        "MONGO_PASSWORD": "m@ngo/p:ss",
        "MONGO_DB": "shop",
        # PostgreSQL's default scheme is not MongoDB's; @, / and : of the password are encoded.
        "MONGODB_URL": "mongodb://shop:m%40ngo%2Fp%3Ass@shop-mongodb:27017/shop?authSource=shop",
    }


def test_an_external_mongodb_atlas_seed_list_and_replica_set():
    atlas = service_from_url(
        "mongodb+srv://app:s%40cret@cluster0.ab1cd.mongodb.net/crm?retryWrites=true&w=majority", "mongodb"
    )
    assert atlas == {
        "scheme": "mongodb+srv",
        "host": "cluster0.ab1cd.mongodb.net",
        "port": 27017,
        "user": "app",
        "password": "s@cret",
        "database": "crm",
        "query": "retryWrites=true&w=majority",
        "hosts": "",
    }
    # A seed list's URL has no port.
    assert bind({"URL": "mongodb.url"}, {"mongodb": atlas}) == {
        "URL": "mongodb+srv://app:s%40cret@cluster0.ab1cd.mongodb.net/crm?retryWrites=true&w=majority"
    }
    replica = service_from_url("mongodb://app:pw@db1.example.com:27018,db2.example.com/crm?replicaSet=rs0", "mongodb")
    assert (replica["host"], replica["port"], replica["hosts"]) == (
        "db1.example.com",
        27018,
        "db1.example.com:27018,db2.example.com",
    )
    assert bind({"URL": "mongodb.url", "HOST": "mongodb.host"}, {"mongodb": replica}) == {
        "URL": "mongodb://app:pw@db1.example.com:27018,db2.example.com/crm?replicaSet=rs0",
        "HOST": "db1.example.com",
    }


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://app:hunter2@db/crm", r"must start with mongodb:// or mongodb\+srv://"),
        ("mongodb://app:hunter2@/crm", "names no host"),
        ("mongodb+srv://app:hunter2@cluster0.example.net:27017/crm", "one host and no port"),
        ("mongodb://app:hunter2@db:notaport/crm", "not a URL of mongodb"),
    ],
)
def test_a_bad_mongodb_url_is_refused_without_its_password(url, message):
    with pytest.raises(AnsibleFilterError, match=message) as caught:
        service_from_url(url, "mongodb")
    assert "hunter2" not in str(caught.value)


def test_a_mongodb_binding_without_a_mongodb_is_named():
    assert binding_errors({"MONGODB_URL": "mongodb.url"}, {"postgres": POSTGRES}) == [
        "stack_bindings.MONGODB_URL is bound to mongodb, but no MongoDB serves this stack "
        "(a host in the mongodb group, or mongodb_external_url)"
    ]
