"""The Files and Uploads APIs: OpenAI's objects (`FileObject`, `Upload`, `UploadPart`), the list and
deletion answers, and the JSON request bodies of /v1/uploads."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from gateway.protocol.common import Strict

FilePurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]
PURPOSES: tuple[str, ...] = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
# OpenAI's bounds of `expires_after.seconds`: one hour to thirty days.
MIN_EXPIRY_S = 3600
MAX_EXPIRY_S = 2_592_000


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: str
    # Every stored file is ready once its upload returns; OpenAI's deprecated fields keep their shape.
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: Literal[True] = True


class ExpiresAfter(Strict):
    anchor: Literal["created_at"]
    seconds: Annotated[int, Field(ge=MIN_EXPIRY_S, le=MAX_EXPIRY_S)]


class CreateUploadRequest(Strict):
    filename: Annotated[str, Field(min_length=1, max_length=512)]
    purpose: FilePurpose
    bytes: Annotated[int, Field(ge=0)]
    mime_type: Annotated[str, Field(min_length=1, max_length=255)]
    expires_after: ExpiresAfter | None = None


class CompleteUploadRequest(Strict):
    part_ids: Annotated[list[str], Field(min_length=1)]
    md5: str | None = None


class UploadObject(BaseModel):
    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: Literal["pending", "completed", "cancelled", "expired"]
    file: FileObject | None = None


class UploadPartObject(BaseModel):
    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str
