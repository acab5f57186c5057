# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Renew the proxy's ACME certificate on this host when it is due, the way a deploy does (tasks/acme.yml):

    python3 pydeploy-acme.pyz <renew.json>          renew when due (fewer than renew_days left), else nothing
    PYDEPLOY_ACME_FORCE=1 python3 pydeploy-acme.pyz <renew.json>     renew now, due or not

The main of pydeploy-acme.pyz, a zip of community.crypto's acme_certificate module, its module_utils and
Ansible's module_utils: the very code a deploy's ACME tasks run, without Ansible on the host. The nginx role
writes renew.json (0600, no secret: files are named, not read into it) and schedules this through the job
runner (pydeploy-job), which keeps its log, its status and its lock.

A renewal: the account key kept by the deploys (never made here: a host without one was never deployed in
acme mode), a signing request for the same names and the same certificate key, an order, the HTTP-01
challenge files written in the webroot nginx serves (checked through nginx before the CA is asked), the new
chain written beside the served one and moved in place (each file atomically), `nginx -t` in the proxy's
container, then `nginx -s reload` (graceful: no request dropped). A new chain nginx refuses is put back.

Exit status 0 when not due or renewed, 1 on failure; one line of JSON on stdout, and in $PYDEPLOY_JOB_RESULT
when the runner sets it: renewed, not_after, days_left, serial (hex), msg.
"""

import contextlib
import datetime
import io
import json
import os
import runpy
import subprocess
import sys
import tempfile
import time
import urllib.request

MODULE = "ansible_collections.community.crypto.plugins.modules.acme_certificate"


def now():
    return datetime.datetime.now(datetime.UTC)


def read_leaf(path):
    from cryptography import x509

    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def not_after(cert):
    value = getattr(cert, "not_valid_after_utc", None)
    return value if value is not None else cert.not_valid_after.replace(tzinfo=datetime.UTC)


def signing_request(key_path, names):
    """A CSR for ``names`` with the served certificate's key (as openssl_csr_pipe builds it in a deploy)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    with open(key_path, "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode()


def run_module(args, workdir):
    """Run acme_certificate with ``args`` as Ansible would; its result (a dict), failed or not."""
    fd, path = tempfile.mkstemp(dir=workdir, prefix=".args-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
        saved, sys.argv = sys.argv, ["acme_certificate", path]
        # AnsibleModule keeps the arguments it read first: the second step must read its own.
        import ansible.module_utils.basic

        ansible.module_utils.basic._ANSIBLE_ARGS = None
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            try:
                runpy.run_module(MODULE, run_name="__main__")
            except SystemExit:
                pass
        sys.argv = saved
    finally:
        os.unlink(path)
    for line in reversed(captured.getvalue().strip().splitlines()):
        with contextlib.suppress(ValueError):
            result = json.loads(line)
            if isinstance(result, dict):
                return result
    return {"failed": True, "msg": "acme_certificate printed no result: " + captured.getvalue()[-500:]}


def check_served(config, identifier, resource, value):
    """nginx serves the challenge file (the CA's failure would only say it could not fetch it)."""
    url = "http://{}:{}/{}".format(config["http_address"], config["http_port"], resource)
    request = urllib.request.Request(url, headers={"Host": identifier})  # noqa: S310 - http, our own nginx
    last = None
    for _attempt in range(20):
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - our own nginx
                if response.status == 200 and response.read().decode() == value:
                    return
                last = f"status {response.status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise RuntimeError(f"nginx does not serve the challenge of {identifier} at {url}: {last}")


def docker(config, *argv):
    return subprocess.run(
        [config.get("docker") or "docker", "exec", config["container"], *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def install(config, fresh):
    """Move the new fullchain and chain in place, check them with nginx -t, reload; put the old back if
    nginx refuses them."""
    kept = {}
    for name, source in fresh.items():
        target = config[name]
        with contextlib.suppress(FileNotFoundError):
            with open(target, "rb") as handle:
                kept[target] = handle.read()
        os.chmod(source, 0o644)
        os.replace(source, target)
    checked = docker(config, "nginx", "-t", "-q")
    if checked.returncode != 0:
        for target, data in kept.items():
            with open(target + ".restore", "wb") as handle:
                handle.write(data)
            os.chmod(target + ".restore", 0o644)
            os.replace(target + ".restore", target)
        raise RuntimeError("nginx -t refused the new certificate, the old one is kept: " + checked.stderr.strip())
    reloaded = docker(config, "nginx", "-s", "reload")
    if reloaded.returncode != 0:
        raise RuntimeError("nginx did not reload: " + reloaded.stderr.strip())


def renew(config, force):
    leaf = read_leaf(config["fullchain"])
    left = not_after(leaf) - now()
    days_left = round(left.total_seconds() / 86400, 1)
    if not force and left > datetime.timedelta(days=int(config["renew_days"])):
        return {
            "renewed": False,
            "not_after": not_after(leaf).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "days_left": days_left,
            "serial": format(leaf.serial_number, "x"),
            "msg": "not due: {} days left, renewed {} days before expiry".format(days_left, config["renew_days"]),
        }
    if not os.path.exists(config["account_key"]):
        raise RuntimeError("no ACME account key at {}: deploy in acme mode first".format(config["account_key"]))
    if config.get("ca_file"):
        # A private CA of the directory, trusted beside the host's store (as a deploy's tasks do).
        os.environ["SSL_CERT_FILE"] = config["ca_file"]
    workdir = os.path.dirname(config["record"])
    fresh = {
        "fullchain": os.path.join(workdir, ".renew-fullchain.pem"),
        "chain": os.path.join(workdir, ".renew-chain.pem"),
    }
    args = {
        "acme_directory": config["directory"],
        "acme_version": 2,
        "account_key_src": config["account_key"],
        "validate_certs": str(config["validate_certs"]).lower() in ("true", "1", "yes"),
        "modify_account": False,
        "csr_content": signing_request(config["privkey"], config["names"]),
        "challenge": "http-01",
        "fullchain_dest": fresh["fullchain"],
        "chain_dest": fresh["chain"],
        "force": True,
    }
    order = run_module(args, workdir)
    if order.get("failed"):
        raise RuntimeError("the order failed: " + str(order.get("msg")))
    challenges = os.path.join(config["webroot"], ".well-known")
    try:
        for identifier, challenge in (order.get("challenge_data") or {}).items():
            resource, value = challenge["http-01"]["resource"], challenge["http-01"]["resource_value"]
            path = os.path.join(config["webroot"], resource)
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(value)
            os.chmod(path, 0o644)
            check_served(config, identifier, resource, value)
        done = run_module({**args, "data": order}, workdir)
    finally:
        subprocess.run(["rm", "-rf", "--", challenges], check=False)
    if done.get("failed"):
        for path in fresh.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        raise RuntimeError("the CA did not issue the certificate: " + str(done.get("msg")))
    new = read_leaf(fresh["fullchain"])
    install(config, fresh)
    return {
        "renewed": True,
        "not_after": not_after(new).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "days_left": round((not_after(new) - now()).total_seconds() / 86400, 1),
        "serial": format(new.serial_number, "x"),
        "msg": "renewed {} days before expiry{}".format(days_left, " (forced)" if force else ""),
    }


def main():
    if len(sys.argv) != 2 or not os.path.isfile(sys.argv[1]):
        print("usage: pydeploy-acme.pyz RENEW.json", file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as handle:
        config = json.load(handle)
    force = os.environ.get("PYDEPLOY_ACME_FORCE", "") in ("1", "true", "yes")
    try:
        result = renew(config, force)
        result["failed"] = False
    except Exception as exc:  # noqa: BLE001 - one line for the job's log and status
        result = {"renewed": False, "failed": True, "msg": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result, sort_keys=True))
    target = os.environ.get("PYDEPLOY_JOB_RESULT")
    if target:
        with open(target, "w", encoding="utf-8") as handle:
            json.dump(result, handle, sort_keys=True)
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
