"""Where finished recordings live: a local folder, or a bucket (Google Cloud Storage, S3).

Every sink keeps two objects per call, named by its CallSid: ``{sid}.wav`` (stereo, 8 kHz) and
``{sid}.json`` (when it started, its length, where sample 0 sits on the call's timeline). The
bucket sinks are blocking client libraries: the service calls them in a worker thread.

- ``RECORDINGS_DIR`` alone: :class:`LocalSink`, the file is written in place as the call goes.
- ``RECORDINGS_BUCKET=gs://bucket/prefix``: :class:`GcsSink` (``google-cloud-storage``; it honours
  ``STORAGE_EMULATOR_HOST``, which is how the tests point it at ``gcp-storage-emulator``).
- ``RECORDINGS_BUCKET=s3://bucket/prefix``: :class:`S3Sink` (``boto3``; ``AWS_ENDPOINT_URL`` for an
  S3-compatible store).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError


class LocalSink:
    """Recordings in a folder (written there directly: nothing to upload)."""

    kind = "local"

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def put(self, call_sid: str, wav_path: str, meta: dict[str, Any]) -> None:
        target = self.folder / f"{call_sid}.wav"
        if Path(wav_path).resolve() != target.resolve():
            shutil.move(wav_path, target)
        (self.folder / f"{call_sid}.json").write_text(json.dumps(meta))

    def fetch(self, call_sid: str, dest: str) -> bool:
        src = self.folder / f"{call_sid}.wav"
        if not src.is_file():
            return False
        shutil.copyfile(src, dest)
        return True

    def local_path(self, call_sid: str) -> Path | None:
        path = self.folder / f"{call_sid}.wav"
        return path if path.is_file() else None

    def meta(self, call_sid: str) -> dict[str, Any] | None:
        path = self.folder / f"{call_sid}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def delete(self, call_sid: str) -> None:
        for ext in ("wav", "json"):
            (self.folder / f"{call_sid}.{ext}").unlink(missing_ok=True)

    def sweep(self, older_than: float) -> int:
        gone = 0
        for path in self.folder.glob("*.wav"):
            try:
                if path.stat().st_mtime < older_than:
                    path.unlink()
                    path.with_suffix(".json").unlink(missing_ok=True)
                    gone += 1
            except OSError:
                continue
        return gone


class GcsSink:
    """Google Cloud Storage: one object per file under ``prefix``."""

    kind = "gcs"

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        try:
            from google.cloud import storage
        except ImportError:  # pragma: no cover - depends on the environment
            raise ConfigError("RECORDINGS_BUCKET is gs://... but google-cloud-storage is not installed "
                              "(pip install google-cloud-storage)") from None
        self._client = client or storage.Client()
        self._bucket = self._client.bucket(bucket)
        self.prefix = prefix

    def _name(self, call_sid: str, ext: str) -> str:
        return f"{self.prefix}{call_sid}.{ext}"

    def put(self, call_sid: str, wav_path: str, meta: dict[str, Any]) -> None:
        self._bucket.blob(self._name(call_sid, "wav")).upload_from_filename(wav_path, content_type="audio/wav")
        self._bucket.blob(self._name(call_sid, "json")).upload_from_string(
            json.dumps(meta), content_type="application/json")

    def fetch(self, call_sid: str, dest: str) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self._bucket.blob(self._name(call_sid, "wav")).download_to_filename(dest)
        except NotFound:
            Path(dest).unlink(missing_ok=True)
            return False
        return True

    def local_path(self, call_sid: str) -> Path | None:
        return None

    def meta(self, call_sid: str) -> dict[str, Any] | None:
        from google.api_core.exceptions import NotFound

        try:
            return json.loads(self._bucket.blob(self._name(call_sid, "json")).download_as_bytes())
        except (NotFound, ValueError):
            return None

    def delete(self, call_sid: str) -> None:
        from google.api_core.exceptions import NotFound

        for ext in ("wav", "json"):
            try:
                self._bucket.blob(self._name(call_sid, ext)).delete()
            except NotFound:
                pass

    def sweep(self, older_than: float) -> int:
        gone = 0
        for blob in self._client.list_blobs(self._bucket, prefix=self.prefix):
            created = blob.time_created.timestamp() if blob.time_created is not None else time.time()
            if created < older_than:
                blob.delete()
                gone += 1
        return gone


class S3Sink:
    """Amazon S3 or an S3-compatible store (``boto3``)."""

    kind = "s3"

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        try:
            import boto3
        except ImportError:  # pragma: no cover - depends on the environment
            raise ConfigError("RECORDINGS_BUCKET is s3://... but boto3 is not installed (pip install boto3)") from None
        self._s3 = client or boto3.client("s3")
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, call_sid: str, ext: str) -> str:
        return f"{self.prefix}{call_sid}.{ext}"

    def put(self, call_sid: str, wav_path: str, meta: dict[str, Any]) -> None:
        self._s3.upload_file(wav_path, self.bucket, self._key(call_sid, "wav"),
                             ExtraArgs={"ContentType": "audio/wav"})
        self._s3.put_object(Bucket=self.bucket, Key=self._key(call_sid, "json"),
                            Body=json.dumps(meta).encode(), ContentType="application/json")

    def fetch(self, call_sid: str, dest: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._s3.download_file(self.bucket, self._key(call_sid, "wav"), dest)
        except ClientError:
            Path(dest).unlink(missing_ok=True)
            return False
        return True

    def local_path(self, call_sid: str) -> Path | None:
        return None

    def meta(self, call_sid: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=self._key(call_sid, "json"))["Body"].read()
            return json.loads(body)
        except (ClientError, ValueError):
            return None

    def delete(self, call_sid: str) -> None:
        for ext in ("wav", "json"):
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(call_sid, ext))  # (absent: no error)

    def sweep(self, older_than: float) -> int:
        gone = 0
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                if obj["LastModified"].timestamp() < older_than:
                    self._s3.delete_object(Bucket=self.bucket, Key=obj["Key"])
                    gone += 1
        return gone


def open_sink(folder: str, bucket_url: str | None) -> LocalSink | GcsSink | S3Sink:
    """The sink the settings name (``bucket_url`` wins over the folder, which is then the spool)."""
    if not bucket_url:
        return LocalSink(folder)
    parts = urlsplit(bucket_url)
    prefix = parts.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if parts.scheme == "gs" and parts.netloc:
        return GcsSink(parts.netloc, prefix)
    if parts.scheme == "s3" and parts.netloc:
        return S3Sink(parts.netloc, prefix)
    raise ConfigError(f"RECORDINGS_BUCKET must be gs://bucket[/prefix] or s3://bucket[/prefix] (got {bucket_url[:60]!r})")


def spool_dir(folder: str) -> Path:
    path = Path(folder) / ".spool"
    os.makedirs(path, exist_ok=True)
    return path
