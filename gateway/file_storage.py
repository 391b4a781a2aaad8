"""The Files and Uploads APIs' parts built from the settings (a builder of the composition root,
gateway/components.py): the blob store the settings choose, the services, and the sweeper."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from gateway.admission import Admission
from gateway.blobs import BlobStore, LocalBlobStore, S3BlobStore, S3Options
from gateway.http.client_address import TrustedProxies
from gateway.services.file_sweeper import FileSweeper
from gateway.services.files import FilesService
from gateway.services.stored import FileLimits, StoredObjects
from gateway.services.uploads import UploadsService
from gateway.settings.schema import Settings
from gateway.store import Database, FileStore


@dataclass(eq=False)
class FileStorage:
    blobs: BlobStore
    files: FilesService
    uploads: UploadsService
    sweeper: FileSweeper
    # The admission, store and quota the files services share (the Batch API's too).
    objects: StoredObjects | None = None

    async def start(self) -> None:
        await self.blobs.start()
        self.sweeper.start()

    async def close(self) -> None:
        await self.sweeper.close()
        await self.blobs.close()


def blob_store(settings: Settings) -> BlobStore:
    """The one place `blob_backend` names a class."""
    if settings.blob_backend == "s3":
        key_id, secret = settings.blob_s3_access_key_id, settings.blob_s3_secret_access_key
        return S3BlobStore(
            S3Options(
                bucket=settings.blob_s3_bucket,
                prefix=settings.blob_s3_prefix,
                endpoint_url=settings.blob_s3_endpoint_url or None,
                region=settings.blob_s3_region or None,
                access_key_id=key_id.get_secret_value() if key_id else None,
                secret_access_key=secret.get_secret_value() if secret else None,
                part_bytes=settings.blob_s3_part_bytes,
            )
        )
    return LocalBlobStore(settings.blob_dir)


def file_storage(settings: Settings, admission: Admission, database: Database) -> FileStorage | None:
    if not settings.files_enabled:
        return None
    blobs = blob_store(settings)
    files = FileStore(database)
    proxies = TrustedProxies(settings.trusted_proxies)

    def user_of(request: Request) -> str | None:
        # The end user an authenticating proxy names, kept for erasure by user.
        return proxies.forwarded_user(request.client.host if request.client else None, request.headers)

    objects = StoredObjects(
        admission,
        files,
        FileLimits(
            max_file_bytes=settings.files_max_file_bytes,
            max_upload_bytes=settings.files_max_upload_bytes,
            max_part_bytes=settings.files_max_part_bytes,
            quota_bytes=settings.files_storage_quota_bytes,
        ),
        user_of,
    )
    return FileStorage(
        blobs=blobs,
        files=FilesService(objects, blobs),
        uploads=UploadsService(objects, blobs),
        sweeper=FileSweeper(files, blobs, interval_s=settings.files_sweep_interval_s),
        objects=objects,
    )
