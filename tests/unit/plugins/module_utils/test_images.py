"""check_image: a registry that wants a login is asked with the credentials given, else with the engine's."""

from __future__ import annotations

from ansible_collections.pydeploy.stack.plugins.module_utils._images import check_image, registry_reason
from docker.errors import APIError, ImageNotFound


class FakeClient:
    """The engine: the image is not on the host; the registry serves it only to ``user``."""

    def __init__(self, user: str):
        self.user = user
        self.asked_with = []
        self.images = self
        self.api = self

    def get(self, name):
        raise ImageNotFound("no such image")

    def inspect_distribution(self, name, auth_config=None):
        self.asked_with.append(auth_config)
        if (auth_config or {}).get("username") != self.user:
            raise APIError("500", explanation='Head "http://reg/v2/app/manifests/v1": no basic auth credentials')
        return {"Descriptor": {"digest": "sha256:abc"}}


def test_the_credentials_given_are_used_for_the_request():
    client = FakeClient("deploy")
    result, problem = check_image(client, "reg/app:v1", auth={"username": "deploy", "password": "pw"})
    assert (problem, result["digest"], result["in_registry"]) == ("", "sha256:abc", True)
    assert client.asked_with == [{"username": "deploy", "password": "pw"}]


def test_without_credentials_the_engine_logins_apply_and_a_refusal_is_named():
    client = FakeClient("deploy")
    result, problem = check_image(client, "reg/app:v1")
    assert client.asked_with == [None]
    assert "refused the credentials" in problem and not result["in_registry"]
    assert registry_reason("no basic auth credentials").startswith("the registry refused")
