"""The stored-objects settings: the Files and Uploads APIs (`TANTRA_FILES_*`) and the blob store
their bytes live in (`TANTRA_BLOB_*`: a local directory, or an S3-compatible bucket).

A mixin of `Settings` (gateway/settings/schema.py), read, named and reloaded (not: these need a
restart) exactly as the schema's own fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

_MiB = 1024 * 1024


class FilesFields(BaseModel):
    """/v1/files and /v1/uploads (gateway/services/files.py, docs/files.md) and the blob store."""

    files_enabled: bool = Field(True, description="Serve the Files API (/v1/files) and the Uploads API.")
    # OpenAI's own cap for one file sent to POST /v1/files.
    files_max_file_bytes: int = Field(
        512 * _MiB,
        gt=0,
        description="Largest file POST /v1/files takes (413 `file_too_large`, refused before the body is "
        "read when its Content-Length says so); larger files go through /v1/uploads.",
    )
    # OpenAI's caps for the Uploads API: 8 GB a file, 64 MB a part.
    files_max_upload_bytes: int = Field(
        8 * 1024 * _MiB, gt=0, description="Largest file an upload (/v1/uploads) may declare and assemble."
    )
    files_max_part_bytes: int = Field(
        64 * _MiB, gt=0, description="Largest part of an upload (POST /v1/uploads/{id}/parts)."
    )
    files_storage_quota_bytes: int = Field(
        10 * 1024 * _MiB,
        ge=0,
        description="Bytes each tenant may store (its files and the parts of its open uploads); an upload "
        "past it is refused with 413 `storage_quota_exceeded` as soon as it passes. 0: no quota.",
    )
    files_sweep_interval_s: float = Field(
        300.0,
        gt=0,
        description="How often a replica deletes the blobs of expired and deleted files, of expired "
        "uploads, and of uploads a crash interrupted.",
    )

    blob_backend: Literal["local", "s3"] = Field(
        "local",
        description="Where file bytes live: `local` (a directory, one host or a shared volume) or `s3` "
        "(an S3-compatible bucket, for replicas on several hosts).",
    )
    blob_dir: Path = Field(
        Path(".cache/tantra/blobs"), description="The local blob store's directory (blob_backend local)."
    )
    blob_s3_bucket: str = Field("", description="The bucket (blob_backend s3; it must exist).")
    blob_s3_prefix: str = Field("", description="Prefix of every key in the bucket, e.g. `tantra/`.")
    blob_s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, Ceph, R2...); unset: AWS S3 of blob_s3_region."
    )
    blob_s3_region: str | None = Field(None, description="The bucket's region.")
    # Unset: botocore's own chain (environment, instance or pod role, ~/.aws).
    blob_s3_access_key_id: SecretStr | None = Field(
        None, description="Access key id (or TANTRA_BLOB_S3_ACCESS_KEY_ID_FILE)."
    )
    blob_s3_secret_access_key: SecretStr | None = Field(
        None, description="Secret access key (or TANTRA_BLOB_S3_SECRET_ACCESS_KEY_FILE)."
    )
    blob_s3_part_bytes: int = Field(
        8 * _MiB,
        ge=5 * _MiB,
        description="Part size of multipart puts to S3: the memory one streamed upload holds at most.",
    )

    def files_problems(self) -> list[str]:
        if self.blob_backend == "s3" and not self.blob_s3_bucket:
            return ["blob_s3_bucket (TANTRA_BLOB_S3_BUCKET): required when blob_backend is s3"]
        return []
