"""SeaweedFS S3 on loopback: multipart with SSE and SHA-256 checksums, byte-identical."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

PART = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def s3(bed):
    conf = bed["s3"]
    return boto3.client(
        "s3",
        endpoint_url=conf["endpoint"],
        aws_access_key_id=conf["access_key"],
        aws_secret_access_key=conf["secret_key"],
        region_name=conf["region"],
        config=Config(retries={"max_attempts": 2}, s3={"addressing_style": "path"}),
    )


@pytest.fixture
def bucket(s3):
    name = f"pydeploy-test-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    s3.delete_bucket(Bucket=name)


def test_default_bucket_exists(s3, bed):
    s3.head_bucket(Bucket=bed["s3"]["bucket"])


def test_multipart_upload_with_sse_and_sha256_round_trips(s3, bucket):
    parts_data = [os.urandom(PART), os.urandom(PART), os.urandom(1234)]
    key = "backups/roundtrip.bin"
    upload = s3.create_multipart_upload(
        Bucket=bucket, Key=key, ServerSideEncryption="AES256", ChecksumAlgorithm="SHA256"
    )
    parts = []
    for number, data in enumerate(parts_data, start=1):
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        answer = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts})

    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ServerSideEncryption"] == "AES256"
    assert head.get("ChecksumSHA256")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(b"".join(parts_data)).digest()


def test_wrong_checksum_is_refused(s3, bucket):
    wrong = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"payload", ChecksumAlgorithm="SHA256", ChecksumSHA256=wrong)
    assert excinfo.value.response["Error"]["Code"] in {"BadDigest", "InvalidRequest", "XAmzContentChecksumMismatch"}
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_wrong_credentials_are_refused(bed):
    conf = bed["s3"]
    client = boto3.client(
        "s3",
        endpoint_url=conf["endpoint"],
        aws_access_key_id=conf["access_key"],
        aws_secret_access_key="not-the-secret",
        region_name=conf["region"],
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as excinfo:
        client.list_objects_v2(Bucket=conf["bucket"])
    assert excinfo.value.response["Error"]["Code"] in {"SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId"}
