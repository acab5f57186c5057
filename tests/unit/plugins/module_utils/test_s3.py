"""The S3 helpers with a fake client: the multipart writer (bounded buffer, checksums, abort on any
exception), sweeping stale uploads, batched deletes, preflight messages, and the option spec against
its doc fragment."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from ansible_collections.pydeploy.stack.plugins.doc_fragments.s3 import ModuleDocFragment
from ansible_collections.pydeploy.stack.plugins.module_utils import _s3
from botocore.exceptions import ClientError

MiB = 1024 * 1024
SECRET = "Sup3r-S3cret-Key-value"


def client_error(code: str, operation: str = "Op") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}}, operation)


class FakeS3:
    """Enough of a boto3 S3 client for the writer: records calls, checks part checksums as S3 does (on each part,
    and again at completion against what each part stored), assembles objects."""

    def __init__(self, fail_on_part=None, part_delay=0.0):
        self.calls = []
        self.part_delay = part_delay
        self.sending = threading.Event()  # set while a part is being 'sent'
        self.uploads = {}
        self.objects = {}
        self.fail_on_part = fail_on_part

    def create_multipart_upload(self, **kwargs):
        self.calls.append(("create", kwargs))
        upload_id = f"u{len(self.uploads)}"
        self.uploads[upload_id] = {"key": kwargs["Key"], "parts": {}}
        return {"UploadId": upload_id}

    def upload_part(self, **kwargs):
        body = kwargs["Body"]
        self.calls.append(("part", kwargs["PartNumber"], len(body)))
        if self.part_delay:
            self.sending.set()
            time.sleep(self.part_delay)
            self.sending.clear()
        if self.fail_on_part == kwargs["PartNumber"]:
            raise client_error("InternalError", "UploadPart")
        assert kwargs["ChecksumAlgorithm"] == "SHA256"
        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
        if kwargs["ChecksumSHA256"] != checksum:
            raise client_error("BadDigest", "UploadPart")
        etag = f'"{hashlib.md5(body).hexdigest()}"'  # noqa: S324 - an ETag, as S3 makes it
        # what S3 keeps is what was sent: a copy (the writer fills a sent part's buffer again)
        self.uploads[kwargs["UploadId"]]["parts"][kwargs["PartNumber"]] = (bytes(body), etag, checksum)
        return {"ETag": etag, "ChecksumSHA256": checksum}

    def complete_multipart_upload(self, **kwargs):
        listed = kwargs["MultipartUpload"]["Parts"]
        self.calls.append(("complete", [part["PartNumber"] for part in listed]))
        upload = self.uploads[kwargs["UploadId"]]
        numbers = [part["PartNumber"] for part in listed]
        if numbers != sorted(set(numbers)):
            raise client_error("InvalidPartOrder", "CompleteMultipartUpload")
        for part in listed:
            # an upload created with a checksum algorithm needs each part's checksum, and S3 matches it (and the
            # ETag) against the part it stored: a part that does not match is "not found"
            if "ChecksumSHA256" not in part:
                raise client_error("InvalidRequest", "CompleteMultipartUpload")
            stored = upload["parts"].get(part["PartNumber"])
            if stored is None or (part["ETag"], part["ChecksumSHA256"]) != stored[1:]:
                raise client_error("InvalidPart", "CompleteMultipartUpload")
        del self.uploads[kwargs["UploadId"]]
        self.objects[upload["key"]] = b"".join(upload["parts"][n][0] for n in numbers)
        return {"Key": upload["key"]}

    def abort_multipart_upload(self, **kwargs):
        self.calls.append(("abort", kwargs["UploadId"]))
        self.uploads.pop(kwargs["UploadId"], None)


def chunks_of(data: bytes, seed: int = 1):
    rng = random.Random(seed)
    position = 0
    while position < len(data):
        size = rng.choice([1, 100, 32 * 1024, 700 * 1024, 3 * MiB])
        yield data[position : position + size]
        position += size


def test_writer_streams_parts_with_a_bounded_buffer():
    data = os.urandom(21 * MiB + 12345)
    fake = FakeS3()
    extra = {"ServerSideEncryption": "AES256", "StorageClass": "STANDARD_IA"}
    with _s3.MultipartWriter(fake, "b", "k", part_size=5 * MiB, extra=extra) as writer:
        for chunk in chunks_of(data):
            writer.write(chunk)
            assert writer.buffered < 5 * MiB
        writer.complete()
    assert fake.objects["k"] == data
    assert writer.hexdigest == hashlib.sha256(data).hexdigest()
    assert writer.size == len(data)
    assert writer.max_buffered <= 5 * MiB
    parts = [call for call in fake.calls if call[0] == "part"]
    assert [size for _, _, size in parts] == [5 * MiB] * 4 + [MiB + 12345]
    create = fake.calls[0][1]
    assert create["ChecksumAlgorithm"] == "SHA256"
    assert create["ServerSideEncryption"] == "AES256" and create["StorageClass"] == "STANDARD_IA"
    assert fake.calls[-1] == ("complete", [1, 2, 3, 4, 5])
    assert not fake.uploads


def test_empty_stream_is_one_empty_part():
    fake = FakeS3()
    with _s3.MultipartWriter(fake, "b", "empty", part_size=5 * MiB) as writer:
        writer.complete()
    assert fake.objects["empty"] == b""
    assert writer.hexdigest == hashlib.sha256(b"").hexdigest()


def test_any_exception_aborts_the_upload():
    fake = FakeS3()
    with pytest.raises(RuntimeError), _s3.MultipartWriter(fake, "b", "k", part_size=5 * MiB) as writer:
        writer.write(os.urandom(6 * MiB))
        raise RuntimeError("the dump tool died")
    assert fake.calls[-1] == ("abort", "u0")
    assert writer.aborted and not writer.completed
    assert not fake.uploads and "k" not in fake.objects
    assert writer.buffered == 0 and len(writer.buffer) == 0


def test_base_exceptions_abort_too():
    fake = FakeS3()
    with pytest.raises(KeyboardInterrupt), _s3.MultipartWriter(fake, "b", "k", part_size=5 * MiB):
        raise KeyboardInterrupt
    assert fake.calls[-1] == ("abort", "u0")


def test_a_failing_part_aborts_and_the_error_propagates():
    fake = FakeS3(fail_on_part=2)
    with pytest.raises(ClientError), _s3.MultipartWriter(fake, "b", "k", part_size=5 * MiB) as writer:
        for _ in range(6):
            writer.write(os.urandom(5 * MiB))
        writer.complete()
    assert ("abort", "u0") in fake.calls
    # the failed part stops the sending: nothing after it went out
    assert [call[1] for call in fake.calls if call[0] == "part"] == [1, 2]
    assert not any(call[0] == "complete" for call in fake.calls)
    assert writer.aborted


def test_a_wrong_part_checksum_at_completion_fails_and_aborts_the_upload():
    fake = FakeS3()
    with (
        pytest.raises(ClientError) as excinfo,
        _s3.MultipartWriter(fake, "b", "k", part_size=5 * MiB, background=False) as writer,
    ):
        writer.write(os.urandom(6 * MiB))
        assert [call[1] for call in fake.calls if call[0] == "part"] == [1]
        writer.parts[0]["ChecksumSHA256"] = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()
        writer.complete()
    assert _s3.error_code(excinfo.value) == "InvalidPart"
    assert fake.calls[-2] == ("complete", [1, 2]) and fake.calls[-1] == ("abort", "u0")
    assert writer.aborted and not writer.completed
    assert not fake.uploads and "k" not in fake.objects


def test_a_part_sent_with_a_checksum_of_other_bytes_is_refused():
    fake = FakeS3()
    upload_id = fake.create_multipart_upload(Bucket="b", Key="k", ChecksumAlgorithm="SHA256")["UploadId"]
    with pytest.raises(ClientError) as excinfo:
        fake.upload_part(
            Bucket="b",
            Key="k",
            UploadId=upload_id,
            PartNumber=1,
            Body=b"sent",
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(hashlib.sha256(b"meant").digest()).decode(),
        )
    assert _s3.error_code(excinfo.value) == "BadDigest"
    assert fake.uploads[upload_id]["parts"] == {}


def test_parts_are_sent_while_the_next_one_fills():
    fake = FakeS3(part_delay=0.3)
    data = os.urandom(20 * MiB)
    with _s3.MultipartWriter(fake, "b", "k", part_size=5 * MiB) as writer:
        writer.write(data[: 5 * MiB])
        assert fake.sending.wait(5)  # part 1 is on the wire ...
        writer.write(data[5 * MiB : 9 * MiB])  # ... and the writer goes on filling part 2 meanwhile
        assert fake.sending.is_set()
        writer.write(data[9 * MiB :])
        writer.complete()
    assert fake.objects["k"] == data
    assert fake.calls[-1] == ("complete", [1, 2, 3, 4])
    # the part being filled and the one on the wire, never more; two buffers serve all parts
    assert writer.max_in_memory <= 2 * 5 * MiB
    assert writer.buffers_made == 2


def test_in_the_callers_thread_when_asked():
    fake = FakeS3()
    with _s3.MultipartWriter(fake, "b", "k", part_size=5 * MiB, background=False) as writer:
        writer.write(os.urandom(6 * MiB))
        assert [call[1] for call in fake.calls if call[0] == "part"] == [1]
        writer.complete()
    assert writer._thread is None and fake.calls[-1] == ("complete", [1, 2])


def test_an_abort_waits_for_the_part_on_the_wire():
    fake = FakeS3(part_delay=0.3)
    with pytest.raises(RuntimeError), _s3.MultipartWriter(fake, "b", "k", part_size=5 * MiB) as writer:
        writer.write(os.urandom(5 * MiB))
        assert fake.sending.wait(5)
        raise RuntimeError("the dump tool died")
    assert not fake.sending.is_set()  # the part had ended before the abort
    assert fake.calls[-1] == ("abort", "u0") and not writer._thread.is_alive()


def test_a_failing_abort_is_kept_for_the_message():
    fake = FakeS3()

    def refuse(**kwargs):
        raise client_error("ServiceUnavailable", "AbortMultipartUpload")

    fake.abort_multipart_upload = refuse
    with pytest.raises(RuntimeError), _s3.MultipartWriter(fake, "b", "k", part_size=5 * MiB) as writer:
        raise RuntimeError("boom")
    assert writer.abort_error == "ServiceUnavailable: ServiceUnavailable happened"
    assert not writer.aborted


def test_parts_smaller_than_s3_allows_are_refused():
    with pytest.raises(ValueError):
        _s3.MultipartWriter(FakeS3(), "b", "k", part_size=MiB)


def test_part_size_doubles_so_that_any_dump_fits():
    base = 8 * MiB
    assert _s3.part_size_for(1, base) == base
    assert _s3.part_size_for(2000, base) == base
    assert _s3.part_size_for(2001, base) == 2 * base
    assert _s3.part_size_for(10000, base) == 16 * base
    total = sum(_s3.part_size_for(n, base) for n in range(1, _s3.MAX_PARTS + 1))
    assert total > 400 * 1024 * MiB


class FakeListing:
    def __init__(self, uploads, page=3):
        self.uploads = uploads
        self.page = page
        self.aborted = []
        self.delete_calls = []

    def list_multipart_uploads(self, Bucket, Prefix, KeyMarker="", UploadIdMarker=""):
        matching = [u for u in self.uploads if u["Key"].startswith(Prefix)]
        start = 0
        if KeyMarker:
            start = next(i for i, u in enumerate(matching) if u["UploadId"] == UploadIdMarker) + 1
        page = matching[start : start + self.page]
        truncated = start + self.page < len(matching)
        answer = {"Uploads": page, "IsTruncated": truncated}
        if truncated:
            answer.update(NextKeyMarker=page[-1]["Key"], NextUploadIdMarker=page[-1]["UploadId"])
        return answer

    def abort_multipart_upload(self, Bucket, Key, UploadId):
        self.aborted.append(UploadId)

    def delete_objects(self, Bucket, Delete):
        keys = [item["Key"] for item in Delete["Objects"]]
        self.delete_calls.append(len(keys))
        return {"Deleted": [{"Key": key} for key in keys if not key.endswith("locked")]} | (
            {
                "Errors": [
                    {"Key": key, "Code": "AccessDenied", "Message": "no"} for key in keys if key.endswith("locked")
                ]
            }
        )


def test_sweep_aborts_only_old_uploads_under_the_prefix_across_pages():
    now = datetime.now(UTC)
    uploads = [
        {"Key": f"backups/app/k{i}", "UploadId": f"old{i}", "Initiated": now - timedelta(hours=10)} for i in range(7)
    ]
    uploads += [{"Key": "backups/app/new", "UploadId": "new", "Initiated": now - timedelta(minutes=1)}]
    uploads += [{"Key": "other/x", "UploadId": "other", "Initiated": now - timedelta(days=3)}]
    fake = FakeListing(uploads)
    swept = _s3.sweep_uploads(fake, "b", "backups/app/", 3600)
    assert sorted(fake.aborted) == sorted(f"old{i}" for i in range(7))
    assert [entry["upload_id"] for entry in swept] == [f"old{i}" for i in range(7)]

    fake = FakeListing(uploads)
    dry = _s3.sweep_uploads(fake, "b", "backups/app/", 0, dry_run=True)
    assert len(dry) == 8 and fake.aborted == []


def test_deletes_go_in_batches_of_a_thousand():
    fake = FakeListing([])
    keys = [f"k{i}" for i in range(2500)] + ["k-locked"]
    deleted, errors = _s3.delete_keys(fake, "b", keys)
    assert fake.delete_calls == [1000, 1000, 501]
    assert len(deleted) == 2500
    assert errors == [{"key": "k-locked", "code": "AccessDenied", "message": "no"}]


PARAMS = {
    "endpoint_url": "http://127.0.0.1:18333",
    "bucket": "backups-bucket",
    "prefix": "backups/",
    "region": "us-east-1",
    "access_key": "AKIAEXAMPLE",
    "secret_key": SECRET,
    "session_token": None,
}


class Refusing:
    def __init__(self, head=None, listing=None):
        self.head, self.listing = head, listing

    def head_bucket(self, Bucket):
        if self.head:
            raise self.head

    def list_objects_v2(self, **kwargs):
        if self.listing:
            raise self.listing
        return {}


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (Refusing(head=client_error("404", "HeadBucket")), "the bucket does not exist"),
        (Refusing(listing=client_error("NoSuchBucket", "ListObjectsV2")), "the bucket does not exist"),
        (Refusing(head=client_error("403", "HeadBucket")), "access denied (403: 403 happened)"),
        (Refusing(listing=client_error("SignatureDoesNotMatch", "ListObjectsV2")), "access denied"),
    ],
)
def test_preflight_names_endpoint_and_bucket_never_the_secret(client, expected):
    with pytest.raises(_s3.S3Error) as excinfo:
        _s3.preflight(client, PARAMS)
    message = str(excinfo.value)
    assert message.startswith("S3 bucket backups-bucket at http://127.0.0.1:18333: ")
    assert expected in message
    assert SECRET not in message


def test_preflight_passes():
    _s3.preflight(Refusing(), PARAMS)


def test_client_settings_bound_every_request():
    client = _s3.get_client(
        {
            **PARAMS,
            "validate_certs": True,
            "s3_connect_timeout": 3,
            "s3_read_timeout": 7,
            "s3_max_attempts": 2,
            "sse": "none",
        }
    )
    config = client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (3, 7)
    assert config.retries["total_max_attempts"] == 2
    assert config.s3["addressing_style"] == "path"


def test_kms_needs_a_key_id():
    params = {**PARAMS, "validate_certs": True, "s3_connect_timeout": 3, "s3_read_timeout": 7, "s3_max_attempts": 2}
    with pytest.raises(_s3.S3Error, match="sse=aws:kms needs sse_kms_key_id"):
        _s3.get_client({**params, "sse": "aws:kms", "sse_kms_key_id": None})
    assert _s3.write_args({"sse": "aws:kms", "sse_kms_key_id": "alias/x", "storage_class": "GLACIER_IR"}) == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "alias/x",
        "StorageClass": "GLACIER_IR",
    }
    assert _s3.write_args({"sse": "none"}) == {}


def test_spec_and_doc_fragment_agree():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    spec = _s3.s3_argument_spec()
    assert set(documented) == set(spec)
    for name, option in spec.items():
        doc = documented[name]
        assert doc["type"] == option["type"], name
        assert doc.get("default") == option.get("default"), name
        assert doc.get("choices") == option.get("choices"), name
        assert sorted(doc.get("aliases", [])) == sorted(option.get("aliases", [])), name
    assert spec["secret_key"]["no_log"] and spec["session_token"]["no_log"]
