"""The chart's blob store for the Files API (gateway.blobs): off by default (no shared store, so no
Files API), an S3 bucket with keys from a Secret, or a ReadWriteMany claim mounted where the
gateway's local blob store writes; each rendered into settings the gateway has."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.settings.schema import Settings
from tests.deploy.support import Manifests, render_chart, setting_name


def _gateway(manifests: Manifests) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    workload = manifests.get("Deployment", "-gateway")
    spec = workload["spec"]["template"]["spec"]
    (main,) = [c for c in spec["containers"] if c["name"] == "gateway"]
    return manifests.get("ConfigMap", "-gateway")["data"], main, spec


def _settings(config: dict[str, str], env: list[dict[str, Any]]) -> Settings:
    """The gateway's Settings from what the chart sets (Secret values stand in as `secret`)."""
    values = {setting_name(name): value for name, value in config.items() if name.startswith("TANTRA_BLOB_")}
    values |= {
        setting_name(item["name"]): "secret" for item in env if item["name"].startswith("TANTRA_BLOB_")
    }
    if "TANTRA_FILES_ENABLED" in config:
        values["files_enabled"] = config["TANTRA_FILES_ENABLED"]
    return Settings(**values)


def test_default_serves_no_files(rendered: dict[str, Manifests]) -> None:
    config, _, _ = _gateway(rendered["default"])
    assert config["TANTRA_FILES_ENABLED"] == "false"


def test_s3_backend_with_keys_from_a_secret() -> None:
    blobs = {
        "backend": "s3",
        "s3": {
            "bucket": "files",
            "prefix": "t/",
            "endpointUrl": "http://minio:9000",
            "existingSecret": "keys",
        },
    }
    config, main, _ = _gateway(render_chart({"gateway": {"blobs": blobs}}))
    settings = _settings(config, main["env"])
    assert (settings.blob_backend, settings.blob_s3_bucket, settings.blob_s3_prefix) == ("s3", "files", "t/")
    assert settings.blob_s3_endpoint_url == "http://minio:9000"
    secret_env = {
        item["name"]: item["valueFrom"]["secretKeyRef"] for item in main["env"] if "valueFrom" in item
    }
    assert secret_env["TANTRA_BLOB_S3_ACCESS_KEY_ID"] == {"name": "keys", "key": "access-key-id"}
    assert secret_env["TANTRA_BLOB_S3_SECRET_ACCESS_KEY"] == {"name": "keys", "key": "secret-access-key"}
    assert not settings.files_problems()


def test_pvc_backend_mounts_the_claim_where_blobs_are_written() -> None:
    config, main, spec = _gateway(
        render_chart({"gateway": {"blobs": {"backend": "pvc", "pvc": {"existingClaim": "rwx"}}}})
    )
    settings = _settings(config, main["env"])
    assert settings.blob_backend == "local"
    mounts = {mount["name"]: mount["mountPath"] for mount in main["volumeMounts"]}
    assert mounts["blobs"] == str(settings.blob_dir)
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert volumes["blobs"]["persistentVolumeClaim"]["claimName"] == "rwx"


@pytest.mark.parametrize(
    "blobs", [{"backend": "s3", "s3": {"bucket": ""}}, {"backend": "pvc"}, {"backend": "ftp"}]
)
def test_incomplete_blob_values_are_refused(blobs: dict[str, Any]) -> None:
    with pytest.raises(Exception):  # noqa: B017 - helm's schema error, whatever its class
        render_chart({"gateway": {"blobs": blobs}})
