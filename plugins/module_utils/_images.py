# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where an image reference can be found: its registry, the host, both."""

from __future__ import annotations

try:
    from docker.errors import APIError, ImageNotFound, NotFound
except ImportError:  # reported by _docker.get_client
    APIError = ImageNotFound = NotFound = Exception


def registry_reason(error: str) -> str:
    """Turn the engine's answer into a cause a person can act on."""
    lowered = error.lower()
    if "manifest unknown" in lowered or "not found" in lowered or "name unknown" in lowered:
        return "the tag is not in the registry"
    if any(words in lowered for words in ("unauthorized", "authentication required", "denied", "no basic auth")):
        return "the registry refused the credentials (docker_host_registry_username/password)"
    if "connection refused" in lowered or "no such host" in lowered or "timeout" in lowered or "dial tcp" in lowered:
        return "the registry is unreachable"
    return "the registry did not confirm the tag"


def check_image(client, name: str, source: str = "registry", auth: dict | None = None) -> tuple[dict, str]:
    """Return what is known of ``name`` and the problem for ``source`` ('' when none); ``auth`` (username,
    password) logs in to its registry for this request instead of the engine's stored logins."""
    result = {"name": name, "digest": "", "in_registry": False, "local": False, "local_id": "", "registry_error": ""}
    try:
        image = client.images.get(name)
        result["local"], result["local_id"] = True, image.id
    except (ImageNotFound, NotFound):
        pass
    try:
        answer = client.api.inspect_distribution(name, auth_config=auth)
        result["digest"] = answer.get("Descriptor", {}).get("digest", "")
        result["in_registry"] = True
    except APIError as exc:
        result["registry_error"] = str(getattr(exc, "explanation", None) or exc)

    if source == "local":
        return result, "" if result["local"] else f"image {name} is not on this host"
    if result["in_registry"] or (source == "any" and result["local"]):
        return result, ""
    reason = registry_reason(result["registry_error"])
    where = " and not on this host" if source == "any" else ""
    return result, f"image {name}: {reason}{where} ({result['registry_error'].strip()})"
