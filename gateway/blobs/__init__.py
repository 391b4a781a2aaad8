"""Where the bytes of stored objects live (files, upload parts, later batch outputs): a `BlobStore`
with a local-directory backend and an S3-compatible one. The SQL store keeps what the bytes are."""

from gateway.blobs.interface import BlobStore, BlobTooLarge, counted, new_blob_key
from gateway.blobs.local import LocalBlobStore
from gateway.blobs.s3 import S3BlobStore, S3Options

__all__ = [
    "BlobStore",
    "BlobTooLarge",
    "LocalBlobStore",
    "S3BlobStore",
    "S3Options",
    "counted",
    "new_blob_key",
]
