"""pipeline.lib.storage: atomic reads and writes to a local folder or an S3 prefix.

Every output geopump writes goes through `Storage`. Local writes go to a temporary file in the
target folder and are moved into place with `os.replace`, and S3 `PutObject` is atomic, so a
failed or killed run never leaves a half-written file where the previous good output was.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,254}$")


class UnsafePathError(ValueError):
    """A key or id would escape the storage root or contains characters not allowed in paths."""


def safe_component(value: str, what: str = "path component") -> str:
    """Return `value` if it is safe as one path component, else raise `UnsafePathError`.

    Allowed: letters, digits, `.`, `_`, `=`, `-`; must start with a letter or digit; no `..`.
    """
    if not isinstance(value, str) or not _SAFE_COMPONENT.match(value) or ".." in value:
        raise UnsafePathError(f"{what} {value!r} is not allowed in a storage path (allowed: [A-Za-z0-9._=-], no '..')")
    return value


def safe_relpath(relpath: str) -> str:
    parts = [p for p in relpath.strip("/").split("/") if p]
    if not parts:
        raise UnsafePathError("empty storage path")
    return "/".join(safe_component(p) for p in parts)


class Storage:
    """A storage root: a local folder (`/data/geopump`, `file:///...`) or `s3://bucket/prefix`.

    S3 uses boto3, which honours the standard `AWS_*` variables including `AWS_ENDPOINT_URL`.
    """

    def __init__(self, url: str):
        if not url:
            raise ValueError("storage URL is empty")
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme == "s3":
            self.kind = "s3"
            self.bucket = parts.netloc
            self.prefix = parts.path.strip("/")
            if not self.bucket:
                raise ValueError(f"storage URL {url!r} has no bucket")
            self._s3 = None
        elif parts.scheme in ("", "file"):
            self.kind = "local"
            self.root = Path(parts.path if parts.scheme == "file" else self.url).expanduser().resolve()
        else:
            raise ValueError(f"storage URL {url!r}: scheme {parts.scheme!r} is not supported (use a path or s3://)")

    # -- helpers ------------------------------------------------------------------------------
    @property
    def s3(self):
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3

    def _key(self, relpath: str) -> str:
        rel = safe_relpath(relpath)
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _local(self, relpath: str) -> Path:
        return self.root / safe_relpath(relpath)

    def uri(self, relpath: str) -> str:
        """The full URI of `relpath` (a local absolute path or `s3://bucket/key`)."""
        if self.kind == "s3":
            return f"s3://{self.bucket}/{self._key(relpath)}"
        return str(self._local(relpath))

    # -- bytes --------------------------------------------------------------------------------
    def write_bytes(self, relpath: str, data: bytes) -> str:
        if self.kind == "s3":
            self.s3.put_object(Bucket=self.bucket, Key=self._key(relpath), Body=data)
            return self.uri(relpath)
        target = self._local(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return str(target)

    def read_bytes(self, relpath: str) -> bytes:
        if self.kind == "s3":
            return self.s3.get_object(Bucket=self.bucket, Key=self._key(relpath))["Body"].read()
        return self._local(relpath).read_bytes()

    def exists(self, relpath: str) -> bool:
        if self.kind == "s3":
            from botocore.exceptions import ClientError

            try:
                self.s3.head_object(Bucket=self.bucket, Key=self._key(relpath))
                return True
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
        return self._local(relpath).exists()

    def delete(self, relpath: str) -> None:
        if self.kind == "s3":
            self.s3.delete_object(Bucket=self.bucket, Key=self._key(relpath))
        else:
            self._local(relpath).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        """Relative paths of all files under `prefix` (recursive), sorted; temp files excluded."""
        rel_prefix = safe_relpath(prefix)
        out: list[str] = []
        if self.kind == "s3":
            key_prefix = self._key(rel_prefix) + "/"
            strip = len(self.prefix) + 1 if self.prefix else 0
            paginator = self.s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=key_prefix):
                for obj in page.get("Contents", []):
                    out.append(obj["Key"][strip:])
        else:
            base = self._local(rel_prefix)
            if base.exists():
                for p in base.rglob("*"):
                    if p.is_file() and not p.name.startswith("."):
                        out.append(p.relative_to(self.root).as_posix())
        return sorted(out)

    # -- tables -------------------------------------------------------------------------------
    def write_parquet(self, relpath: str, df) -> str:
        """Write a (Geo)DataFrame as (Geo)Parquet, atomically."""
        buf = io.BytesIO()
        if hasattr(df, "to_parquet") and "geometry" in getattr(df, "columns", []) and hasattr(df, "crs"):
            df.to_parquet(buf, index=False, compression="zstd")
        else:
            df.to_parquet(buf, index=False, compression="zstd")
        return self.write_bytes(relpath, buf.getvalue())

    def read_parquet(self, relpath: str, columns: list[str] | None = None):
        """Read a Parquet file; GeoParquet files come back as GeoDataFrames."""
        import pyarrow.parquet as pq

        data = self.read_bytes(relpath)
        meta = pq.read_metadata(io.BytesIO(data)).metadata or {}
        # Reading only plain columns of a GeoParquet file (e.g. lon/lat) is a pandas read.
        wants_geometry = columns is None or any(c in columns for c in ("geometry",))
        if b"geo" in meta and wants_geometry:
            import geopandas as gpd

            return gpd.read_parquet(io.BytesIO(data), columns=columns)
        import pandas as pd

        return pd.read_parquet(io.BytesIO(data), columns=columns)

    def write_json(self, relpath: str, obj) -> str:
        import json

        return self.write_bytes(relpath, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())

    def read_json(self, relpath: str, default=None):
        import json

        if not self.exists(relpath):
            return default
        return json.loads(self.read_bytes(relpath))
