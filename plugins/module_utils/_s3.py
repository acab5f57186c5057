# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 access shared by the backup modules.

One argument spec (documented by the ``pydeploy.stack.s3`` doc fragment), one
way to get a client (path addressing, bounded retries and timeouts, so that a
fault fails within bounded time), a preflight that turns wrong credentials or
a missing bucket into one clear message, a streaming multipart writer with a
bounded buffer, and the listing, sweeping and deleting helpers retention needs.

No message built here ever contains the secret key or the session token:
they only ever go to boto3.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import threading
import traceback
from datetime import UTC, datetime, timedelta

from ansible.module_utils.basic import env_fallback, missing_required_lib

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = traceback.format_exc()

    # Stand-ins that keep this file importable without boto3. A module fails on HAS_BOTO3 before
    # anything talks to S3, so neither is ever raised.
    class BotoCoreError(Exception):
        pass

    class ClientError(Exception):
        pass

    # Errors a caller can expect from boto3 and its transport; set in each branch, as DOCKER_ERRORS is in _docker.py.
    S3_ERRORS = (BotoCoreError, ClientError)
else:
    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None
    S3_ERRORS = (BotoCoreError, ClientError)

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10000
# The part size doubles after this many parts, so that a dump of any size fits in
# MAX_PARTS parts while a small one never buffers more than the configured part.
PARTS_PER_SIZE_STEP = 2000
# How long an abort waits for a part on the wire to end (the client's own timeouts bound it too).
ABORT_WAIT = 30
DELETE_BATCH = 1000  # delete_objects accepts at most 1000 keys per call


class S3Error(Exception):
    """A failure talking to S3, with a message that names endpoint, bucket and key but never a secret."""


def s3_argument_spec() -> dict:
    """S3 options of every backup module (doc fragment ``pydeploy.stack.s3``)."""
    return {
        "endpoint_url": {"type": "str", "aliases": ["s3_url"]},
        "bucket": {"type": "str", "required": True},
        "prefix": {"type": "str", "default": "backups/"},
        "region": {"type": "str", "default": "us-east-1"},
        "access_key": {
            "type": "str",
            # The key id names the credential; secret_key is the secret.
            "no_log": False,
            "aliases": ["aws_access_key_id"],
            "fallback": (env_fallback, ["AWS_ACCESS_KEY_ID"]),
        },
        "secret_key": {
            "type": "str",
            "no_log": True,
            "aliases": ["aws_secret_access_key"],
            "fallback": (env_fallback, ["AWS_SECRET_ACCESS_KEY"]),
        },
        "session_token": {
            "type": "str",
            "no_log": True,
            "aliases": ["aws_session_token"],
            "fallback": (env_fallback, ["AWS_SESSION_TOKEN"]),
        },
        "validate_certs": {"type": "bool", "default": True},
        "sse": {"type": "str", "choices": ["AES256", "aws:kms", "none"], "default": "none"},
        "sse_kms_key_id": {"type": "str"},
        "storage_class": {"type": "str"},
        "s3_connect_timeout": {"type": "int", "default": 10},
        "s3_read_timeout": {"type": "int", "default": 60},
        "s3_max_attempts": {"type": "int", "default": 3},
    }


def s3_secrets(params: dict) -> list[str]:
    """The values that must never appear in anything a module returns."""
    return [value for value in (params.get("secret_key"), params.get("session_token")) if value]


def where(params: dict) -> str:
    """``bucket B at ENDPOINT``: how messages name the place, never with credentials."""
    endpoint = params.get("endpoint_url") or f"the AWS endpoint of region {params.get('region')}"
    return f"bucket {params['bucket']} at {endpoint}"


def get_client(params: dict):
    """A boto3 S3 client configured from the module's S3 options (raises :class:`S3Error`)."""
    if not HAS_BOTO3:
        raise S3Error(missing_required_lib("boto3"))
    for option in ("s3_connect_timeout", "s3_read_timeout", "s3_max_attempts"):
        if params[option] < 1:
            raise S3Error(f"{option} must be at least 1, got {params[option]}")
    if params["sse"] == "aws:kms" and not params.get("sse_kms_key_id"):
        raise S3Error("sse=aws:kms needs sse_kms_key_id")
    options = {
        "connect_timeout": params["s3_connect_timeout"],
        "read_timeout": params["s3_read_timeout"],
        "retries": {"total_max_attempts": params["s3_max_attempts"], "mode": "standard"},
        # Every object and part is sent with its SHA-256 in a signed header, which S3 checks the body
        # against: signing the body too (what botocore does over plain HTTP) would hash each byte twice more.
        "s3": {"addressing_style": "path", "payload_signing_enabled": False},
        "signature_version": "s3v4",
    }
    if "request_checksum_calculation" in Config.OPTION_DEFAULTS:  # botocore 1.36+
        # Checksums are computed by us (SHA-256 per part); no CRC on top of them.
        options.update(request_checksum_calculation="when_required", response_checksum_validation="when_required")
    config = Config(**options)
    try:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=params.get("endpoint_url") or None,
            region_name=params.get("region") or None,
            aws_access_key_id=params.get("access_key") or None,
            aws_secret_access_key=params.get("secret_key") or None,
            aws_session_token=params.get("session_token") or None,
            verify=params.get("validate_certs", True),
            config=config,
        )
    except (BotoCoreError, ValueError) as exc:
        raise S3Error(f"cannot set up an S3 client for {where(params)}: {exc}") from None


def error_code(exc) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def describe(exc) -> str:
    """A one-line description of a boto3 error: code and message, or the transport error."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "?"
        message = error.get("Message") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        return f"{code}: {message}" if message else str(code)
    return f"{type(exc).__name__}: {exc}"


_AUTH_CODES = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}


def preflight(client, params: dict) -> None:
    """Fail early, with one message naming endpoint and bucket, when the bucket cannot be used.

    ``head_bucket`` proves the bucket exists and the credentials are accepted;
    a one-key listing under the prefix proves they may also list, which restores
    and retention need.
    """
    bucket = params["bucket"]
    try:
        client.head_bucket(Bucket=bucket)
        client.list_objects_v2(Bucket=bucket, Prefix=params.get("prefix") or "", MaxKeys=1)
    except ClientError as exc:
        code = error_code(exc)
        if code in {"404", "NoSuchBucket", "NotFound"}:
            raise S3Error(f"S3 {where(params)}: the bucket does not exist") from None
        if code in _AUTH_CODES:
            raise S3Error(
                f"S3 {where(params)}: access denied ({describe(exc)}); check access_key, secret_key and the"
                " bucket policy"
            ) from None
        raise S3Error(f"S3 {where(params)}: {describe(exc)}") from None
    except BotoCoreError as exc:
        raise S3Error(f"S3 {where(params)}: cannot reach the endpoint ({describe(exc)})") from None


def write_args(params: dict) -> dict:
    """Server-side encryption and storage class arguments for every object written."""
    args = {}
    if params.get("sse") and params["sse"] != "none":
        args["ServerSideEncryption"] = params["sse"]
        if params["sse"] == "aws:kms":
            args["SSEKMSKeyId"] = params["sse_kms_key_id"]
    if params.get("storage_class"):
        args["StorageClass"] = params["storage_class"]
    return args


def part_size_for(number: int, base: int) -> int:
    """Size of part ``number`` (1-based): ``base``, doubled every :data:`PARTS_PER_SIZE_STEP` parts."""
    return min(base * 2 ** ((number - 1) // PARTS_PER_SIZE_STEP), MAX_PART_SIZE)


def _b64_sha256(data) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class MultipartWriter:
    """Stream bytes into one S3 object with a multipart upload, with at most two parts in memory.

    ``write()`` hashes (SHA-256 of the stored bytes) and buffers; each full part
    is handed to one uploader thread, which sends it with its own SHA-256
    checksum (which S3 verifies) while the next part fills: the producer (a dump
    being compressed) never waits for the network unless a part is still on the
    wire when the next one is full.  So memory holds the part being filled and
    the part being sent, nothing more.  ``complete()`` sends the rest, waits for
    every part and completes the upload.  Used as a context manager, any
    exception (signals turned into exceptions included) or a failed part aborts
    the upload, so no part stays billed; a run killed outright leaves it for
    :func:`sweep_uploads`.  ``background=False`` sends each part in the caller's
    thread instead.
    """

    def __init__(
        self, client, bucket: str, key: str, *, part_size: int = DEFAULT_PART_SIZE, extra=None, background=True
    ):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part size must be at least {MIN_PART_SIZE} bytes, got {part_size}")
        self.client = client
        self.bucket = bucket
        self.key = key
        self.base_part_size = part_size
        self.extra = dict(extra or {})
        self.background = background
        self.upload_id = None
        self.buffer = bytearray()
        self._filled = 0  # bytes of the buffer in use
        self._spare: list[bytearray] = []  # buffers of sent parts, to fill again
        self.buffers_made = 0
        self.submitted = 0  # parts handed over (sent or on the wire)
        self.parts: list[dict] = []
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.completed = False
        self.aborted = False
        self.abort_error = None
        self.max_buffered = 0  # the largest the buffer ever got, for tests and benchmarks
        self.max_in_memory = 0  # the most part bytes held at once (filling + on the wire)
        self._queue = None
        self._thread = None
        self._free = threading.Semaphore(1)  # one part on the wire at a time
        self._error = None
        self._in_flight = 0
        self._stopping = False

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        answer = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=self.key, ChecksumAlgorithm="SHA256", **self.extra
        )
        self.upload_id = answer["UploadId"]
        if self.background:
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._sender, name="s3-parts", daemon=True)
            self._thread.start()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and not self.completed:
            self.abort()
        return False

    def _stop_sender(self, timeout) -> bool:
        """Let the uploader thread finish what it sends and end; False when it is still busy after ``timeout``."""
        if self._thread is None:
            return True
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def abort(self) -> None:
        """Abort the upload (best effort: a failure is kept in ``abort_error`` for the caller to report).

        A part still on the wire is given a bounded time to end first: one that
        lands after the abort would otherwise keep its storage.
        """
        self.buffer = bytearray()
        self._spare = []
        self._filled = 0
        self._stopping = True
        if self.upload_id is None or self.completed or self.aborted:
            self._stop_sender(0)
            return
        stopped = self._stop_sender(ABORT_WAIT)
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
            self.aborted = True
        except S3_ERRORS as exc:
            self.abort_error = describe(exc)
            return
        if not stopped and self._stop_sender(ABORT_WAIT):
            try:  # the part that was on the wire may have recreated storage: abort once more
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
            except S3_ERRORS:
                pass  # NoSuchUpload: nothing left

    # ----------------------------------------------------------------- data

    @property
    def buffered(self) -> int:
        """Bytes written and not yet handed to the uploader."""
        return self._filled

    @property
    def current_part_size(self) -> int:
        return part_size_for(self.submitted + 1, self.base_part_size)

    def _raise_sender_error(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data) -> None:
        if not data:
            return
        self._raise_sender_error()
        view = memoryview(data)
        self.sha256.update(view)
        self.size += len(view)
        while len(view):
            if not self._filled:
                self.buffer = self._part_buffer()
            room = len(self.buffer) - self._filled
            taken = min(room, len(view))
            self.buffer[self._filled : self._filled + taken] = view[:taken]
            self._filled += taken
            view = view[taken:]
            self.max_buffered = max(self.max_buffered, self._filled)
            self.max_in_memory = max(self.max_in_memory, len(self.buffer) + self._in_flight)
            if self._filled == len(self.buffer):
                self._submit()

    def _part_buffer(self) -> bytearray:
        """A buffer of the next part's whole size: a sent part's, or a new one.

        Filling it never reallocates, and the same two buffers serve every part
        (until the part size doubles), so the process does not churn through
        part-sized allocations that the allocator may keep afterwards.
        """
        size = self.current_part_size
        while self._spare:
            buffer = self._spare.pop()
            if len(buffer) == size:
                return buffer
        self.buffers_made += 1
        return bytearray(size)

    def _submit(self) -> None:
        number = self.submitted + 1
        if number > MAX_PARTS:
            raise S3Error(f"s3://{self.bucket}/{self.key}: more than {MAX_PARTS} parts; use a larger part size")
        body, self.buffer = self.buffer, bytearray()
        del body[self._filled :]  # a last part shorter than the others
        self._filled = 0
        self.submitted = number
        if self._thread is None:
            self._send(number, body)
            self._spare.append(body)
            return
        self._free.acquire()  # wait while the previous part is still on the wire (signals interrupt it)
        self._raise_sender_error()
        self._in_flight = len(body)
        self._queue.put((number, body))

    def _sender(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            number, body = item
            try:
                if self._error is None and not self._stopping:
                    self._send(number, body)
            except BaseException as exc:  # noqa: BLE001 - handed to the writer's thread, which raises it
                self._error = exc
            finally:
                if len(body) == self.current_part_size:
                    self._spare.append(body)  # a full part's buffer serves again
                del body, item
                self._in_flight = 0
                self._free.release()

    def _send(self, number: int, body) -> None:
        checksum = _b64_sha256(body)
        answer = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum})

    def complete(self) -> dict:
        """Send what is buffered (an empty object still gets its one part), wait for every part, complete."""
        self._raise_sender_error()
        if self._filled or not self.submitted:
            self._submit()
        if self._thread is not None:
            self._free.acquire()  # the last part is off the wire
            self._free.release()
            self._stop_sender(None)
            self._raise_sender_error()
        parts = sorted(self.parts, key=lambda part: part["PartNumber"])
        answer = self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts}
        )
        self.completed = True
        return answer

    @property
    def hexdigest(self) -> str:
        return self.sha256.hexdigest()


# --------------------------------------------------------------------------- reading, listing, deleting


def iter_object(client, bucket: str, key: str, chunk_size: int = 1 * MiB):
    """Yield the bytes of an object in chunks of at most ``chunk_size`` (one GET, streamed)."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        yield from body.iter_chunks(chunk_size)
    finally:
        body.close()


def get_json(client, bucket: str, key: str):
    """The JSON document stored at ``key``, or None when there is no such object."""
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        if error_code(exc) in {"NoSuchKey", "404", "NotFound"}:
            return None
        raise
    with body:
        return json.loads(body.read().decode("utf-8"))


def put_json(client, bucket: str, key: str, document, extra=None) -> None:
    data = (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()
    client.put_object(
        Bucket=bucket,
        Key=key,
        Body=data,
        ContentType="application/json",
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=_b64_sha256(data),
        **(extra or {}),
    )


def object_exists(client, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if error_code(exc) in {"NoSuchKey", "404", "NotFound"}:
            return False
        raise


def list_objects(client, bucket: str, prefix: str):
    """Every object under ``prefix``, page by page: dicts with Key, Size, LastModified."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": 1000}):
        yield from page.get("Contents", [])


def list_uploads(client, bucket: str, prefix: str):
    """Every unfinished multipart upload under ``prefix``, page by page."""
    kwargs = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = client.list_multipart_uploads(**kwargs)
        yield from page.get("Uploads", [])
        if not page.get("IsTruncated"):
            return
        kwargs["KeyMarker"] = page.get("NextKeyMarker", "")
        kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")


def stale_uploads(uploads, older_than: float, now: datetime | None = None) -> list[dict]:
    """The uploads initiated more than ``older_than`` seconds before ``now`` (all of them for 0)."""
    now = now or datetime.now(UTC)
    limit = now - timedelta(seconds=older_than)
    stale = []
    for upload in uploads:
        initiated = upload.get("Initiated")
        if older_than <= 0 or initiated is None or initiated <= limit:
            stale.append(upload)
    return stale


def sweep_uploads(client, bucket: str, prefix: str, older_than: float, *, dry_run: bool = False) -> list[dict]:
    """Abort the unfinished uploads under ``prefix`` older than ``older_than`` seconds (left by a killed run).

    Returns what was (or, with ``dry_run``, would be) aborted: key, upload id, when initiated.
    """
    swept = []
    for upload in stale_uploads(list(list_uploads(client, bucket, prefix)), older_than):
        if not dry_run:
            try:
                client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            except ClientError as exc:
                if error_code(exc) != "NoSuchUpload":  # finished or aborted meanwhile
                    raise
        initiated = upload.get("Initiated")
        swept.append(
            {
                "key": upload["Key"],
                "upload_id": upload["UploadId"],
                "initiated": initiated.strftime("%Y-%m-%dT%H:%M:%SZ") if initiated else None,
            }
        )
    return swept


def delete_keys(client, bucket: str, keys) -> tuple[list[str], list[dict]]:
    """Delete ``keys`` with ``delete_objects``, 1000 per call; return (deleted, errors)."""
    keys = list(keys)
    deleted: list[str] = []
    errors: list[dict] = []
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start : start + DELETE_BATCH]
        answer = client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": False}
        )
        deleted += [item["Key"] for item in answer.get("Deleted", [])]
        errors += [
            {"key": item.get("Key"), "code": item.get("Code"), "message": item.get("Message")}
            for item in answer.get("Errors", [])
        ]
    return deleted, errors
