"""pipeline.standins.gcs: a loopback Google Cloud Storage stand-in (JSON API listing/metadata/media, plain object GETs).

Follows external-apis.md §2 (stand-in notes) and §11:

- `GET /storage/v1/b/{bucket}/o?prefix=&delimiter=&pageToken=&maxResults=` answers `{"kind": "storage#objects",
  "items": [...], "prefixes": [...], "nextPageToken": ...}` in name order; `items` / `prefixes` are left out when
  empty, as GCS does, and a "folder" prefix counts once against maxResults;
- `GET /storage/v1/b/{bucket}/o/{url-quoted name}` gives the object resource (size and generation as strings,
  md5Hash / crc32c base64), `?alt=media` the bytes with `x-goog-hash`, `x-goog-generation` and
  `x-goog-stored-content-length`; `?generation=` pins a version;
- `GET/HEAD /{bucket}/{name}` (the `https://storage.googleapis.com/...` form) with a strong quoted ETag (MD5 hex),
  Last-Modified and x-goog-* headers, honouring `If-None-Match` (weak comparison, `*`, lists) before
  `If-Modified-Since`, and answering 304 with no body;
- a missing object is `404 {"error": {"code": 404, "message": "No such object: bucket/name"}}`.

`seed_sources` fills the Hansen, GLAD-L, GLAD-S2 and RADD buckets with small synthetic tile sets laid out as upstream
(see pipeline.lib.releases); `publish_glad_day`, `set_s2_upload_date`, `publish_radd` and `publish_hansen` add
releases (complete, or with `tiles=` a subset to mimic an upload in progress). `corrupt_next` serves short or
altered bodies to exercise download verification.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import itertools
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote, unquote

from pipeline.lib.releases import hansen_version_key
from pipeline.lib.tiles import to_glad_id
from pipeline.standins import tile_samples as S
from pipeline.standins.base import Request, Response, StandinServer

HANSEN_BUCKET = "earthenginepartners-hansen"
RADD_BUCKET = "gfw_gee_export"
PUBLIC_URL = "https://storage.googleapis.com"
#: A small default grid: Congo basin, Amazon, Borneo, Mato Grosso.
DEFAULT_TILES = ("00N_020E", "00N_070W", "10N_110E", "10S_060W")
DEFAULT_HANSEN_VERSIONS = ("GFC-2023-v1.11", "GFC-2024-v1.12")

_LIST_RX = re.compile(r"^/storage/v1/b/(?P<bucket>[^/]+)/o/?$")
_OBJECT_RX = re.compile(r"^/storage/v1/b/(?P<bucket>[^/]+)/o/(?P<name>.+)$")
_PLAIN_RX = re.compile(r"^/(?P<bucket>[^/]+)/(?P<name>.+)$")


# -- CRC32C (Castagnoli), as GCS reports it: big-endian, base64 ------------------------------------------------
def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


@dataclass
class StoredObject:
    bucket: str
    name: str
    data: bytes
    generation: int
    updated: datetime
    content_type: str
    metageneration: int = 1
    md5_hex: str = field(init=False)
    md5_b64: str = field(init=False)
    crc32c_b64: str = field(init=False)

    def __post_init__(self):
        digest = hashlib.md5(self.data).digest()
        self.md5_hex = digest.hex()
        self.md5_b64 = base64.b64encode(digest).decode()
        self.crc32c_b64 = base64.b64encode(crc32c(self.data).to_bytes(4, "big")).decode()

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def etag(self) -> str:
        """The quoted, strong ETag of the plain (XML API) form: the MD5 hex of a non-composite object."""
        return f'"{self.md5_hex}"'

    def resource(self, base_url: str) -> dict:
        """The JSON API object resource; numbers that GCS sends as strings stay strings."""
        updated = self.updated.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "kind": "storage#object",
            "id": f"{self.bucket}/{self.name}/{self.generation}",
            "selfLink": f"{base_url}/storage/v1/b/{self.bucket}/o/{quote(self.name, safe='')}",
            "mediaLink": (
                f"{base_url}/download/storage/v1/b/{self.bucket}/o/{quote(self.name, safe='')}"
                f"?generation={self.generation}&alt=media"
            ),
            "name": self.name,
            "bucket": self.bucket,
            "generation": str(self.generation),
            "metageneration": str(self.metageneration),
            "contentType": self.content_type,
            "storageClass": "STANDARD",
            "size": str(self.size),
            "md5Hash": self.md5_b64,
            "crc32c": self.crc32c_b64,
            # JSON API etags are opaque base64 strings (generation + metageneration), not the MD5.
            "etag": base64.b64encode(f"{self.generation}/{self.metageneration}".encode()).decode(),
            "timeCreated": updated,
            "updated": updated,
        }

    def headers(self) -> dict[str, str]:
        return {
            "ETag": self.etag,
            "Last-Modified": email.utils.format_datetime(self.updated.astimezone(UTC), usegmt=True),
            "Cache-Control": "public, max-age=3600",
            "x-goog-generation": str(self.generation),
            "x-goog-metageneration": str(self.metageneration),
            "x-goog-hash": f"crc32c={self.crc32c_b64},md5={self.md5_b64}",
            "x-goog-stored-content-length": str(self.size),
            "x-goog-stored-content-encoding": "identity",
            "x-goog-storage-class": "STANDARD",
            "Accept-Ranges": "bytes",
        }


def _not_found(bucket: str, name: str | None = None) -> Response:
    message = f"No such object: {bucket}/{name}" if name is not None else "The specified bucket does not exist."
    reason = "notFound"
    return Response(
        404,
        {
            "error": {
                "code": 404,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
            }
        },
    )


def _bad_request(message: str) -> Response:
    return Response(
        400, {"error": {"code": 400, "message": message, "errors": [{"message": message, "reason": "invalid"}]}}
    )


def _etag_matches(header: str, etag: str) -> bool:
    """Weak comparison (RFC 9110 §8.8.3.2): `W/` prefixes are ignored; `*` matches any existing object."""
    if header.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in header.split(","))


class GcsStandin(StandinServer):
    """GCS stand-in holding `{bucket: {name: StoredObject}}`; all buckets are public.

    Args:
        now: clock for `updated` / Last-Modified (a callable returning an aware datetime; tests pin it).
    """

    name = "gcs"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, now=None):
        super().__init__(host, port)
        self.buckets: dict[str, dict[str, StoredObject]] = {}
        self.history: dict[tuple[str, str], dict[int, StoredObject]] = {}
        self._now = now or (lambda: datetime.now(UTC))
        self._generation = itertools.count(int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1_000_000))
        self._objects_lock = threading.Lock()
        self._corrupt: dict[tuple[str, str], list[str]] = {}

    # -- object store -----------------------------------------------------------------------------
    def put(
        self,
        bucket: str,
        name: str,
        data: bytes | str,
        content_type: str | None = None,
        updated: datetime | None = None,
    ) -> StoredObject:
        """Store (or overwrite, with a new generation) one object."""
        if isinstance(data, str):
            data = data.encode()
            content_type = content_type or "text/plain"
        if content_type is None:
            content_type = "image/tiff" if name.lower().endswith((".tif", ".tiff")) else "application/octet-stream"
        with self._objects_lock:
            obj = StoredObject(bucket, name, bytes(data), next(self._generation), updated or self._now(), content_type)
            self.buckets.setdefault(bucket, {})[name] = obj
            self.history.setdefault((bucket, name), {})[obj.generation] = obj
        return obj

    def delete(self, bucket: str, name: str) -> None:
        with self._objects_lock:
            self.buckets.get(bucket, {}).pop(name, None)

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        with self._objects_lock:
            names = [n for n in self.buckets.get(bucket, {}) if n.startswith(prefix)]
            for n in names:
                del self.buckets[bucket][n]
        return len(names)

    def get(self, bucket: str, name: str) -> StoredObject | None:
        return self.buckets.get(bucket, {}).get(name)

    def names(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(n for n in self.buckets.get(bucket, {}) if n.startswith(prefix))

    def corrupt_next(self, bucket: str, name: str, times: int = 1, mode: str = "truncate") -> None:
        """Serve the next `times` media downloads of an object damaged: `truncate` (first half) or `flip` (same size,
        one byte changed). Headers still describe the stored object, as when a connection breaks or bits rot."""
        if mode not in ("truncate", "flip"):
            raise ValueError(f"mode must be 'truncate' or 'flip', not {mode!r}")
        with self._lock:
            self._corrupt.setdefault((bucket, name), []).extend([mode] * times)

    def _damage(self, obj: StoredObject) -> bytes:
        with self._lock:
            pending = self._corrupt.get((obj.bucket, obj.name))
            mode = pending.pop(0) if pending else None
        if mode == "truncate":
            return S.truncated(obj.data)
        if mode == "flip":
            data = bytearray(obj.data)
            data[len(data) // 2] ^= 0xFF
            return bytes(data)
        return obj.data

    # -- HTTP ---------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return Response(405, {"error": {"code": 405, "message": f"{req.method} is not supported by the stand-in"}})
        path = req.path.removeprefix("/download")  # mediaLink form: /download/storage/v1/b/{bucket}/o/{name}
        m = _LIST_RX.match(path)
        if m:
            return self._list(unquote(m["bucket"]), req)
        m = _OBJECT_RX.match(path)
        if m:
            return self._object(unquote(m["bucket"]), unquote(m["name"]), req)
        m = _PLAIN_RX.match(req.path)
        if m:
            return self._plain(unquote(m["bucket"]), unquote(m["name"]), req)
        return _bad_request(f"unsupported path {req.path}")

    def _list(self, bucket: str, req: Request) -> Response:
        if bucket not in self.buckets:
            return _not_found(bucket)
        prefix = req.q("prefix", "") or ""
        delimiter = req.q("delimiter") or None
        try:
            max_results = int(req.q("maxResults", "1000") or 1000)
        except ValueError:
            return _bad_request(f"Invalid maxResults {req.q('maxResults')!r}")
        max_results = max(1, min(max_results, 1000))
        token = req.q("pageToken")
        after = ""
        if token:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except ValueError:
                return _bad_request(f"Invalid pageToken {token!r}")
        # One sorted stream of entries: objects, and each delimiter "folder" once, at its first object.
        entries: list[tuple[str, StoredObject | None]] = []
        seen_prefixes: set[str] = set()
        with self._objects_lock:
            objects = sorted((n, o) for n, o in self.buckets[bucket].items() if n.startswith(prefix))
        for name, obj in objects:
            if delimiter:
                rest = name[len(prefix) :]
                cut = rest.find(delimiter)
                if cut >= 0:
                    folder = prefix + rest[: cut + len(delimiter)]
                    if folder not in seen_prefixes:
                        seen_prefixes.add(folder)
                        entries.append((folder, None))
                    continue
            entries.append((name, obj))
        entries = [e for e in entries if e[0] > after] if after else entries
        page, more = entries[:max_results], len(entries) > max_results
        body: dict = {"kind": "storage#objects"}
        items = [o.resource(self.url) for _, o in page if o is not None]
        prefixes = [key for key, o in page if o is None]
        if prefixes:
            body["prefixes"] = prefixes
        if items:
            body["items"] = items
        if more:
            body["nextPageToken"] = base64.urlsafe_b64encode(page[-1][0].encode()).decode()
        return Response(200, body)

    def _lookup(self, bucket: str, name: str, generation: str | None) -> StoredObject | None:
        if generation:
            try:
                return self.history.get((bucket, name), {}).get(int(generation))
            except ValueError:
                return None
        return self.get(bucket, name)

    def _object(self, bucket: str, name: str, req: Request) -> Response:
        if bucket not in self.buckets:
            return _not_found(bucket)
        obj = self._lookup(bucket, name, req.q("generation"))
        if obj is None:
            return _not_found(bucket, name)
        if req.q("alt") == "media":
            headers = obj.headers()
            headers["Content-Disposition"] = "attachment"
            return Response(200, self._damage(obj), headers, obj.content_type)
        return Response(200, obj.resource(self.url))

    def _plain(self, bucket: str, name: str, req: Request) -> Response:
        obj = self._lookup(bucket, name, req.q("generation"))
        if obj is None:
            # The XML API answers with an XML error document.
            xml = (
                "<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code>"
                f"<Message>The specified key does not exist.</Message><Details>No such object: {bucket}/{name}"
                "</Details></Error>"
            )
            return Response(404, xml, content_type="application/xml; charset=UTF-8")
        headers = obj.headers()
        inm = req.headers.get("If-None-Match")
        ims = req.headers.get("If-Modified-Since")
        if inm is not None:  # If-Modified-Since is ignored when If-None-Match is present (RFC 9110 §13.1.3)
            not_modified = _etag_matches(inm, obj.etag)
        elif ims:
            try:
                since = email.utils.parsedate_to_datetime(ims)
            except (TypeError, ValueError):
                since = None  # an invalid date is ignored
            if since is not None and since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
            not_modified = since is not None and obj.updated.replace(microsecond=0) <= since
        else:
            not_modified = False
        if not_modified:
            return Response(
                304, b"", {k: v for k, v in headers.items() if k in ("ETag", "Last-Modified", "Cache-Control")}
            )
        return Response(200, self._damage(obj) if req.method == "GET" else obj.data, headers, obj.content_type)

    # -- source layouts -------------------------------------------------------------------------------
    def publish_hansen(
        self,
        version: str,
        tiles=DEFAULT_TILES,
        size: int = 64,
        bucket: str = HANSEN_BUCKET,
        listed_tiles=None,
        layers=("lossyear", "treecover2000"),
    ) -> None:
        """`{version}/Hansen_{version}_{layer}_{tile}.tif` plus `{version}/{layer}.txt` (one public URL per line).

        `listed_tiles` (default: `tiles`) go into the .txt lists; listing more than were uploaded mimics a release
        whose lists are out before the files.
        """
        for layer in layers:
            make = S.hansen_lossyear if layer == "lossyear" else S.hansen_treecover2000
            for tile in tiles:
                self.put(bucket, f"{version}/Hansen_{version}_{layer}_{tile}.tif", make(tile, size, version))
            urls = [
                f"{PUBLIC_URL}/{bucket}/{version}/Hansen_{version}_{layer}_{t}.tif" for t in (listed_tiles or tiles)
            ]
            self.put(bucket, f"{version}/{layer}.txt", "\n".join(urls) + "\n")

    def publish_glad_final(self, year: int, tiles=DEFAULT_TILES, size: int = 64, bucket: str = HANSEN_BUCKET) -> None:
        """`GLADalert/C2/{year}/final/alert{YY}_{glad}.tif` and `alertDate{YY}_...` for a finalised data year."""
        self._glad_pair(f"GLADalert/C2/{year}/final", year, tiles, size, bucket, date(year, 12, 31))

    def publish_glad_day(
        self, day: date, tiles=DEFAULT_TILES, years=None, size: int = 64, bucket: str = HANSEN_BUCKET
    ) -> None:
        """A daily GLAD-L release `GLADalert/C2/{day.year}/{MM_DD}/` holding data years `years` (default: day.year)
        as of `day`; pass a subset of tiles to mimic an upload in progress."""
        for year in years or (day.year,):
            self._glad_pair(f"GLADalert/C2/{day.year}/{day:%m_%d}", year, tiles, size, bucket, day)

    def _glad_pair(self, folder, year, tiles, size, bucket, as_of) -> None:
        yy = f"{year % 100:02d}"
        for tile in tiles:
            glad = to_glad_id(tile)
            self.put(bucket, f"{folder}/alert{yy}_{glad}.tif", S.glad_l_alert(tile, year, size, as_of))
            self.put(bucket, f"{folder}/alertDate{yy}_{glad}.tif", S.glad_l_alert_date(tile, year, size, as_of))

    def set_s2_upload_date(
        self, when: datetime, tiles=DEFAULT_TILES, size: int = 64, bucket: str = HANSEN_BUCKET, write_tiles: bool = True
    ) -> str:
        """Update the S2 tiles in place (as of `when`) and write `S2alert/uploadDate.txt`; returns its text."""
        if write_tiles:
            for tile in tiles:
                glad = to_glad_id(tile)
                self.put(bucket, f"S2alert/alert/{glad}.tif", S.glad_s2_alert(tile, size, when.date()))
                self.put(bucket, f"S2alert/alertDate/{glad}.tif", S.glad_s2_alert_date(tile, size, when.date()))
        # Like `date -u`: the day of month is space-padded.
        text = f"Updated {when:%a %b} {when.day:2d} {when:%H:%M:%S %Y} UTC\n"
        self.put(bucket, "S2alert/uploadDate.txt", text)
        return text

    def publish_radd(self, version_day: date, tiles=DEFAULT_TILES, size: int = 64, bucket: str = RADD_BUCKET) -> str:
        """`wur_radd_alerts/v{YYYYMMDD}/{gfw_tile_id}.tif` (the in-folder names are UNVERIFIED upstream)."""
        version = f"v{version_day:%Y%m%d}"
        for tile in tiles:
            self.put(bucket, f"wur_radd_alerts/{version}/{tile}.tif", S.radd_alerts(tile, size, version_day))
        return version

    def seed_sources(
        self,
        today: date,
        size: int = 64,
        tiles=DEFAULT_TILES,
        glad_tiles=None,
        s2_tiles=None,
        radd_tiles=None,
        hansen_versions=DEFAULT_HANSEN_VERSIONS,
        glad_first_year: int = 2021,
        glad_days: int = 2,
        radd_versions: int = 2,
        hansen_bucket: str = HANSEN_BUCKET,
        radd_bucket: str = RADD_BUCKET,
    ) -> dict:
        """Complete releases of all four sources on a small grid; returns what discovery should find.

        Hansen: every version in `hansen_versions`. GLAD-L: final folders for `glad_first_year..today.year-1`, daily
        folders for the last `glad_days` days up to today. GLAD-S2: uploaded today at 06:00 UTC. RADD: weekly
        folders, the newest `today`. Per-source tile lists default to `tiles`. The result gives each source's
        expected version and tiles (and `expected` count to pass to the release functions).
        """
        glad_tiles = tuple(glad_tiles or tiles)
        s2_tiles = tuple(s2_tiles or tiles)
        radd_tiles = tuple(radd_tiles or tiles)
        self.buckets.setdefault(hansen_bucket, {})
        self.buckets.setdefault(radd_bucket, {})
        for version in hansen_versions:
            self.publish_hansen(version, tiles, size, hansen_bucket)
        for year in range(glad_first_year, today.year):
            self.publish_glad_final(year, glad_tiles, size, hansen_bucket)
        for back in range(glad_days - 1, -1, -1):
            self.publish_glad_day(today - timedelta(days=back), glad_tiles, size=size, bucket=hansen_bucket)
        upload = datetime(today.year, today.month, today.day, 6, 0, 0, tzinfo=UTC)
        self.set_s2_upload_date(upload, s2_tiles, size, hansen_bucket)
        radd = [
            self.publish_radd(today - timedelta(days=7 * k), radd_tiles, size, radd_bucket)
            for k in range(radd_versions)
        ]
        return {
            "hansen": {
                "version": max(hansen_versions, key=hansen_version_key) if hansen_versions else None,
                "tiles": sorted(tiles),
                "expected": len(tiles),
            },
            "glad_l": {"version": f"v{today:%Y%m%d}", "tiles": sorted(glad_tiles), "expected": len(glad_tiles)},
            "glad_s2": {"version": f"v{today:%Y%m%d}", "tiles": sorted(s2_tiles), "expected": len(s2_tiles)},
            "radd": {"version": radd[0] if radd else None, "tiles": sorted(radd_tiles), "expected": len(radd_tiles)},
        }


def seed_sources(server: GcsStandin, today: date, **kwargs) -> dict:
    """Module-level alias of `GcsStandin.seed_sources`."""
    return server.seed_sources(today, **kwargs)
