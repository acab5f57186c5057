# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 options, shared by every module of the collection that stores or reads backups.

The options are built by ``s3_argument_spec()`` in ``plugins/module_utils/_s3.py``;
keep both in step.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  endpoint_url:
    description:
      - URL of the S3 API, for example V(https://s3.eu-west-1.amazonaws.com), V(https://minio.internal:9000)
        or V(http://127.0.0.1:18333).
      - Requests use path-style addressing (V(https://endpoint/bucket/key)), which every S3-compatible
        server understands.
      - When not set, boto3 picks the AWS endpoint of O(region).
    type: str
    aliases: [s3_url]
  bucket:
    description: The bucket the backups live in. It must exist; the modules never create it.
    type: str
    required: true
  prefix:
    description:
      - Key prefix under which the backups are stored, normally ending with C(/).
      - Each backup set (see the module's C(name) option) lives under C(<prefix><name>/).
      - Unfinished multipart uploads are swept only under this prefix.
    type: str
    default: backups/
  region:
    description: The S3 region; most S3-compatible servers accept any value.
    type: str
    default: us-east-1
  access_key:
    description:
      - The access key id. When not set, boto3's usual sources are used
        (E(AWS_ACCESS_KEY_ID), the instance profile, ...).
    type: str
    aliases: [aws_access_key_id]
  secret_key:
    description:
      - The secret access key. Never logged, and never part of a message or a returned value.
    type: str
    aliases: [aws_secret_access_key]
  session_token:
    description: A session token for temporary credentials. Never logged.
    type: str
    aliases: [aws_session_token]
  validate_certs:
    description: Whether to verify the TLS certificate of an V(https) O(endpoint_url).
    type: bool
    default: true
  sse:
    description:
      - Server-side encryption of every object written.
      - V(AES256) uses keys managed by the S3 service, V(aws:kms) a KMS key (see O(sse_kms_key_id)),
        V(none) asks for none (the bucket's default encryption still applies).
    type: str
    choices: [AES256, "aws:kms", none]
    default: none
  sse_kms_key_id:
    description:
      - With O(sse=aws:kms), the KMS key id, ARN or alias, for example V(alias/backups).
        SeaweedFS uses V(alias/seaweedfs-default).
    type: str
  storage_class:
    description:
      - Storage class of every object written, for example V(STANDARD_IA) or V(GLACIER_IR).
        Not set means the bucket's default (V(STANDARD) on AWS).
      - Restores read objects directly, so classes that need a thaw first (V(GLACIER), V(DEEP_ARCHIVE))
        cannot be restored from by these modules.
    type: str
  s3_connect_timeout:
    description: Seconds to wait for a connection to the S3 endpoint.
    type: int
    default: 10
  s3_read_timeout:
    description:
      - Seconds to wait for any answer from the S3 endpoint on an open connection. A stalled
        transfer fails after this (times O(s3_max_attempts)).
    type: int
    default: 60
  s3_max_attempts:
    description:
      - How many times each S3 request is tried before the module fails (transient errors,
        throttling, cut connections and timeouts are retried with backoff).
    type: int
    default: 3
requirements:
  - boto3 (1.26, as in Debian 12, or newer) on the managed host.
"""
