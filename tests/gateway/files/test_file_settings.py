"""The blob store the settings choose, and the settings' own check of an S3 backend."""

from __future__ import annotations

from pathlib import Path

from gateway import Settings
from gateway.blobs import LocalBlobStore, S3BlobStore
from gateway.file_storage import blob_store


def test_backend_chosen_by_settings(tmp_path: Path) -> None:
    local = blob_store(Settings(blob_dir=tmp_path))
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path
    s3 = blob_store(
        Settings(
            blob_backend="s3",
            blob_s3_bucket="b",
            blob_s3_endpoint_url="",
            blob_s3_access_key_id="id",
            blob_s3_secret_access_key="secret",
        )
    )
    assert isinstance(s3, S3BlobStore)
    # An empty endpoint (Compose's unset variable) means AWS itself, not an empty URL.
    assert s3.options.endpoint_url is None
    assert (s3.options.access_key_id, s3.options.secret_access_key) == ("id", "secret")


def test_s3_without_a_bucket_is_a_problem() -> None:
    problems = Settings(blob_backend="s3").problems()
    assert any(problem.startswith("blob_s3_bucket (TANTRA_BLOB_S3_BUCKET)") for problem in problems)
    assert not Settings().files_problems()
