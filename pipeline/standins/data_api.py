"""pipeline.standins.data_api: loopback stand-in for the GFW Data API (datasets, versions, append, assets).

Reproduces external-apis.md §5: JSend envelopes (`{"data", "status": "success"}` /
`{"status": "failed", "message"}`), `PUT /dataset/{ds}` (201), `PUT /dataset/{ds}/{v}` (202 +
Location, status pending -> saved after `polls_until_saved` GETs), `GET .../latest` answering
307 to the concrete version, PATCH is_latest/metadata, DELETE (409 for the latest while others
exist), `POST .../append` (back to pending, then saved/failed), `GET .../assets`, 422 with a
pydantic-style message list for invalid bodies, 401 for writes without the Bearer token.

Local source files (plain paths or file:// URIs), and other URIs when a `source_reader` is given,
are read as delimited text with a header so tests can assert table content with `rows(ds, v)`.

Stand-in rules that are not documented upstream (UNVERIFIED): appending to a version that is
not `saved` answers 409, and a file whose header has columns outside the version's
`table_schema` makes the job end `failed`.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlencode, urlsplit

from pipeline.standins.base import Request, Response, StandinServer, json_response

PG_TYPES = frozenset(
    {
        "bigint",
        "boolean",
        "character varying",
        "date",
        "double precision",
        "geometry",
        "integer",
        "jsonb",
        "numeric",
        "smallint",
        "text",
        "time",
        "timestamp",
        "timestamp without time zone",
        "uuid",
        "xid",
    }
)
INDEX_TYPES = ("gist", "btree", "hash")
PARTITION_TYPES = ("hash", "list", "range")
DELIMITERS = (",", "\t", "|", ";")
SOURCE_TYPES = ("table", "vector", "raster")


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def ok(payload, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"data": payload, "status": "success"}, headers=headers)


def failed(status: int, message) -> Response:
    return json_response(status, {"status": "failed" if status < 500 else "error", "message": message})


def _err(loc: list[str], msg: str, kind: str = "value_error") -> dict:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def _local_path(uri: str) -> Path | None:
    """The local path a source URI names (absolute path or file:// URI), else None (s3://, gs://, ...)."""
    if uri.startswith("file://"):
        return Path(unquote(urlsplit(uri).path))
    if uri.startswith("/"):
        return Path(uri)
    return None


class DataApiStandin(StandinServer):
    """GFW Data API stand-in.

    Args:
        token: the Bearer token writes must carry.
        polls_until_saved: how many `GET /dataset/{ds}/{v}` answer `pending` after a PUT or append
            before the job finishes (`saved`, or `failed` if `fail_version` was called).
        source_reader: optional `reader(uri) -> bytes | str | None` for non-local URIs (e.g. s3://
            read through a storage stand-in). None keeps no rows; raising FileNotFoundError makes
            the PUT/append answer 400 like an inaccessible source.

    State for tests: `datasets` {ds: dataset record with "versions" {v: version record}},
    `appended(ds, v)`, `rows(ds, v)`, `version(ds, v)`.
    """

    name = "data-api"

    def __init__(self, token: str = "demo-data-api-token", polls_until_saved: int = 1, source_reader=None, **kw):
        super().__init__(**kw)
        self.source_reader = source_reader
        if polls_until_saved < 0:
            raise ValueError(f"polls_until_saved must be >= 0, got {polls_until_saved!r}")
        self.token = token
        self.polls_until_saved = polls_until_saved
        self.datasets: dict[str, dict] = {}
        self._fail_next: dict[tuple[str, str], str] = {}
        self._state = threading.RLock()
        self._asset_ids = itertools.count(1)

    # -- helpers for tests ---------------------------------------------------------------------
    def fail_version(self, ds: str, v: str, message: str) -> None:
        """Make the next job on ds/v (an append, or the PUT creating it) end with status `failed`."""
        with self._state:
            self._fail_next[(ds, v)] = message

    def version(self, ds: str, v: str) -> dict:
        with self._state:
            return self.datasets[ds]["versions"][v]

    def appended(self, ds: str, v: str) -> list[str]:
        """Every source URI sent for ds/v, in order: the creation `source_uri` then each append's."""
        with self._state:
            return list(self.datasets[ds]["versions"][v]["_sources"])

    def rows(self, ds: str, v: str) -> list[dict]:
        """Rows (str values keyed by header) read from local source files of jobs that ended saved."""
        with self._state:
            return [dict(r) for r in self.datasets[ds]["versions"][v]["_rows"]]

    def add_dataset(self, ds: str, metadata: dict | None = None) -> dict:
        with self._state:
            now = _now()
            record = {
                "dataset": ds,
                "is_downloadable": True,
                "metadata": metadata or {},
                "created_on": now,
                "updated_on": now,
                "versions": {},
            }
            self.datasets[ds] = record
            return record

    def add_version(
        self,
        ds: str,
        v: str,
        columns: list[str] | None = None,
        *,
        status: str = "saved",
        is_latest: bool = False,
        metadata: dict | None = None,
    ) -> dict:
        """Seed an existing table version (dataset created when missing); columns -> text table_schema."""
        with self._state:
            if ds not in self.datasets:
                self.add_dataset(ds)
            options = {
                "source_type": "table",
                "source_driver": "text",
                "source_uri": [],
                "delimiter": "\t",
                "has_header": True,
                "table_schema": [{"name": c, "data_type": "text"} for c in (columns or [])],
            }
            record = self._new_version(ds, v, options, metadata or {})
            record["status"] = status
            record["_polls_left"] = 0
            if is_latest:
                self._set_latest(ds, v)
            return record

    # -- internals -----------------------------------------------------------------------------
    def _new_version(self, ds: str, v: str, options: dict, metadata: dict) -> dict:
        now = _now()
        record = {
            "created_on": now,
            "updated_on": now,
            "dataset": ds,
            "version": v,
            "is_latest": False,
            "is_mutable": False,
            "metadata": metadata,
            "status": "pending",
            "creation_options": options,
            "change_log": [
                {"date_time": now, "status": "pending", "message": "Version creation started", "detail": None}
            ],
            "_asset_id": str(uuid.UUID(int=next(self._asset_ids))),
            "_sources": [],
            "_rows": [],
            "_job_rows": [],
            "_job_error": None,
            "_polls_left": self.polls_until_saved,
        }
        self.datasets[ds]["versions"][v] = record
        self.datasets[ds]["updated_on"] = now
        return record

    def _set_latest(self, ds: str, v: str) -> None:
        for name, rec in self.datasets[ds]["versions"].items():
            rec["is_latest"] = name == v

    def _public(self, record: dict) -> dict:
        out = {k: copy.deepcopy(val) for k, val in record.items() if not k.startswith("_") and k != "creation_options"}
        out["assets"] = (
            [
                [
                    "Database table",
                    f"{self.url}/dataset/{record['dataset']}/{record['version']}/query",
                    record["_asset_id"],
                ]
            ]
            if record["status"] == "saved"
            else []
        )
        return out

    def _asset(self, record: dict) -> dict:
        return {
            "asset_id": record["_asset_id"],
            "dataset": record["dataset"],
            "version": record["version"],
            "asset_type": "Database table",
            "asset_uri": f"{self.url}/dataset/{record['dataset']}/{record['version']}/query",
            "status": record["status"],
            "is_managed": True,
            "is_downloadable": True,
            "metadata": {},
            "created_on": record["created_on"],
            "updated_on": record["updated_on"],
        }

    def _dataset_public(self, record: dict) -> dict:
        out = {k: copy.deepcopy(v) for k, v in record.items() if k != "versions"}
        out["versions"] = list(record["versions"])
        return out

    def _fetch(self, uri: str) -> str | None:
        """Text of a source: local files directly, other URIs through `source_reader` (None: unreadable).

        Raises FileNotFoundError when the source cannot be accessed.
        """
        path = _local_path(uri)
        if path is not None:
            if not path.is_file():
                raise FileNotFoundError(uri)
            return path.read_text(encoding="utf-8")
        if self.source_reader is None:
            return None
        content = self.source_reader(uri)
        return content.decode("utf-8") if isinstance(content, bytes) else content

    def _fetch_all(self, uris: list[str]) -> tuple[list[str | None], list[str]]:
        """(text of each source or None, URIs that cannot be accessed)."""
        texts: list[str | None] = []
        missing: list[str] = []
        for uri in uris:
            try:
                texts.append(self._fetch(uri))
            except FileNotFoundError:
                texts.append(None)
                missing.append(uri)
        return texts, missing

    def _read_sources(self, record: dict, uris: list[str], texts: list[str | None]) -> tuple[list[dict], str | None]:
        """Rows of the readable sources, or an error message when a header does not fit the schema."""
        options = record["creation_options"]
        delimiter = options.get("delimiter", "\t")
        schema_names = [c["name"] for c in options.get("table_schema") or []]
        rows: list[dict] = []
        for uri, text in zip(uris, texts, strict=True):
            if text is None:
                continue
            with io.StringIO(text, newline="") as fh:
                reader = csv.reader(fh, delimiter=delimiter)
                if options.get("has_header", True):
                    header = next(reader, [])
                else:
                    header = schema_names
                extra = [c for c in header if c not in schema_names] if schema_names else []
                if extra:
                    return [], f"Columns {extra} of {uri} are not in the table schema {schema_names}"
                for line_no, values in enumerate(reader, start=2):
                    if not values:
                        continue
                    if len(values) != len(header):
                        return [], f"{uri} line {line_no}: {len(values)} fields, header has {len(header)}"
                    rows.append(dict(zip(header, values, strict=False)))
        return rows, None

    def _start_job(self, ds: str, v: str, record: dict, uris: list[str], texts: list, what: str) -> None:
        rows, error = self._read_sources(record, uris, texts)
        forced = self._fail_next.pop((ds, v), None)
        record["_sources"].extend(uris)
        record["_job_rows"] = rows
        record["_job_error"] = forced or error
        record["status"] = "pending"
        record["_polls_left"] = self.polls_until_saved
        record["updated_on"] = _now()
        record["change_log"].append(
            {"date_time": record["updated_on"], "status": "pending", "message": what, "detail": None}
        )

    def _advance(self, record: dict) -> None:
        """One poll: count down, then finish the running job."""
        if record["status"] != "pending":
            return
        if record["_polls_left"] > 0:
            record["_polls_left"] -= 1
            return
        now = _now()
        if record["_job_error"]:
            record["status"] = "failed"
            record["change_log"].append(
                {
                    "date_time": now,
                    "status": "failed",
                    "message": "Job failed",
                    "detail": record["_job_error"],
                }
            )
        else:
            record["status"] = "saved"
            record["_rows"].extend(record["_job_rows"])
            record["change_log"].append(
                {"date_time": now, "status": "saved", "message": "Job completed", "detail": None}
            )
        record["_job_rows"], record["_job_error"] = [], None
        record["updated_on"] = now

    # -- validation ----------------------------------------------------------------------------
    @staticmethod
    def _validate_uris(value, loc: list[str]) -> list[dict]:
        if not isinstance(value, list) or not value:
            return [_err(loc, "ensure this value is a non-empty list of URIs")]
        if not all(isinstance(u, str) and u for u in value):
            return [_err(loc, "every source URI must be a non-empty string", "type_error.str")]
        return []

    def _validate_creation_options(self, co) -> list[dict]:
        base = ["creation_options"]
        if not isinstance(co, dict):
            return [
                _err(
                    base,
                    "field required" if co is None else "value is not a valid dict",
                    "value_error.missing",
                )
            ]
        errors = []
        st = co.get("source_type")
        if st not in SOURCE_TYPES:
            errors.append(
                _err(
                    base + ["source_type"],
                    f"value is not a valid enumeration member; permitted: {', '.join(SOURCE_TYPES)}",
                )
            )
            return errors
        if st != "table":
            return errors
        if co.get("source_driver") != "text":
            errors.append(_err(base + ["source_driver"], "value is not a valid enumeration member; permitted: 'text'"))
        errors += self._validate_uris(co.get("source_uri"), base + ["source_uri"])
        if co.get("delimiter", ",") not in DELIMITERS:
            errors.append(
                _err(
                    base + ["delimiter"],
                    f"value is not a valid enumeration member; permitted: {DELIMITERS!r}",
                )
            )
        if "has_header" in co and not isinstance(co["has_header"], bool):
            errors.append(_err(base + ["has_header"], "value could not be parsed to a boolean", "type_error.bool"))
        schema = co.get("table_schema")
        names: list[str] = []
        if schema is not None:
            if not isinstance(schema, list):
                errors.append(_err(base + ["table_schema"], "value is not a valid list", "type_error.list"))
            else:
                for i, col in enumerate(schema):
                    if not isinstance(col, dict) or not isinstance(col.get("name"), str) or not col.get("name"):
                        errors.append(
                            _err(
                                base + ["table_schema", str(i), "name"],
                                "field required",
                                "value_error.missing",
                            )
                        )
                        continue
                    names.append(col["name"])
                    if col.get("data_type") not in PG_TYPES:
                        errors.append(
                            _err(
                                base + ["table_schema", str(i), "data_type"],
                                f"unsupported data_type {col.get('data_type')!r}",
                            )
                        )
        for key in ("indices", "cluster"):
            items = co.get(key)
            if items is None:
                continue
            items = items if key == "indices" else [items]
            if not isinstance(items, list):
                errors.append(_err(base + [key], "value is not a valid list", "type_error.list"))
                continue
            for i, idx in enumerate(items):
                loc = base + [key] + ([str(i)] if key == "indices" else [])
                if not isinstance(idx, dict) or idx.get("index_type") not in INDEX_TYPES:
                    errors.append(
                        _err(
                            loc + ["index_type"],
                            f"value is not a valid enumeration member; permitted: {', '.join(INDEX_TYPES)}",
                        )
                    )
                    continue
                cols = idx.get("column_names")
                if not isinstance(cols, list) or not cols:
                    errors.append(_err(loc + ["column_names"], "ensure this value has at least 1 items"))
                elif names and any(c not in names for c in cols):
                    errors.append(
                        _err(
                            loc + ["column_names"],
                            f"columns {[c for c in cols if c not in names]} are not in table_schema",
                        )
                    )
        parts = co.get("partitions")
        if parts is not None and (not isinstance(parts, dict) or parts.get("partition_type") not in PARTITION_TYPES):
            errors.append(
                _err(
                    base + ["partitions", "partition_type"],
                    f"value is not a valid enumeration member; permitted: {', '.join(PARTITION_TYPES)}",
                )
            )
        return errors

    @staticmethod
    def _extra_fields(body: dict, allowed: set[str]) -> list[dict]:
        return [_err([k], "extra fields not permitted", "value_error.extra") for k in body if k not in allowed]

    # -- routing -------------------------------------------------------------------------------
    def _authorized(self, req: Request) -> bool:
        return (req.headers.get("Authorization") or req.headers.get("authorization") or "") == f"Bearer {self.token}"

    def handle(self, req: Request) -> Response:
        parts = [p for p in req.path.split("/") if p]
        if not parts or parts[0] != "dataset" or len(parts) < 2 or len(parts) > 4:
            return failed(404, "Not Found")
        if req.method not in ("GET", "HEAD") and not self._authorized(req):
            has_auth = bool(req.headers.get("Authorization") or req.headers.get("authorization"))
            return failed(401, "Unauthorized" if has_auth else "Not authenticated")
        ds = parts[1]
        if len(parts) >= 3 and parts[2] == "latest":
            return self._latest(req, ds, parts[3:])
        body = None
        if req.method in ("PUT", "POST", "PATCH"):
            try:
                body = req.json()
            except ValueError:
                return failed(422, [_err([], "body is not valid JSON", "value_error.jsondecode")])
            if body is None:
                body = {}
            if not isinstance(body, dict):
                return failed(422, [_err([], "value is not a valid dict", "type_error.dict")])
        with self._state:
            if len(parts) == 2:
                return self._dataset_route(req, ds, body)
            v = parts[2]
            if len(parts) == 3:
                return self._version_route(req, ds, v, body)
            if parts[3] == "append" and req.method == "POST":
                return self._append(ds, v, body)
            if parts[3] == "assets" and req.method == "GET":
                rec = self.datasets.get(ds, {}).get("versions", {}).get(v)
                if rec is None:
                    return failed(404, f"Version with name {ds}.{v} does not exist")
                return ok([self._asset(rec)])
        return failed(405, "Method Not Allowed")

    def _latest(self, req: Request, ds: str, rest: list[str]) -> Response:
        if req.method != "GET":
            return failed(400, "You must list version name explicitly for this operation.")
        with self._state:
            ds_rec = self.datasets.get(ds)
            if ds_rec is None:
                return failed(404, f"Dataset with name {ds} does not exist")
            latest = [v for v, rec in ds_rec["versions"].items() if rec["is_latest"]]
        if not latest:
            return failed(404, f"Dataset {ds} has no latest version")
        target = "/".join(["", "dataset", ds, latest[0], *rest])
        query = urlencode(req.query, doseq=True)
        return Response(307, b"", headers={"Location": target + (f"?{query}" if query else "")})

    def _dataset_route(self, req: Request, ds: str, body) -> Response:
        rec = self.datasets.get(ds)
        if req.method == "GET":
            if rec is None:
                return failed(404, f"Dataset with name {ds} does not exist")
            return ok(self._dataset_public(rec))
        if req.method == "PUT":
            if rec is not None:
                return failed(400, f"Dataset with name {ds} already exists")
            errors = self._extra_fields(body, {"metadata", "is_downloadable"})
            if "metadata" in body and not isinstance(body["metadata"], dict):
                errors.append(_err(["metadata"], "value is not a valid dict", "type_error.dict"))
            if errors:
                return failed(422, errors)
            rec = self.add_dataset(ds, body.get("metadata") or {})
            if "is_downloadable" in body:
                rec["is_downloadable"] = bool(body["is_downloadable"])
            return ok(self._dataset_public(rec), 201)
        if req.method == "DELETE":
            if rec is None:
                return failed(404, f"Dataset with name {ds} does not exist")
            if rec["versions"]:
                return failed(
                    409,
                    "There are versions registered with the dataset. "
                    "Delete all related versions prior to deleting a dataset",
                )
            del self.datasets[ds]
            return ok(self._dataset_public(rec))
        return failed(405, "Method Not Allowed")

    def _version_route(self, req: Request, ds: str, v: str, body) -> Response:
        ds_rec = self.datasets.get(ds)
        if ds_rec is None:
            return failed(404, f"Dataset with name {ds} does not exist")
        rec = ds_rec["versions"].get(v)
        if req.method == "GET":
            if rec is None:
                return failed(404, f"Version with name {ds}.{v} does not exist")
            self._advance(rec)
            return ok(self._public(rec))
        if req.method == "PUT":
            if rec is not None:
                return failed(400, f"Version with name {ds}.{v} already exists")
            errors = self._extra_fields(body, {"creation_options", "metadata", "is_downloadable"})
            errors += self._validate_creation_options(body.get("creation_options"))
            if "metadata" in body and not isinstance(body["metadata"], dict):
                errors.append(_err(["metadata"], "value is not a valid dict", "type_error.dict"))
            if errors:
                return failed(422, errors)
            uris = list(body["creation_options"].get("source_uri") or [])
            texts, missing = self._fetch_all(uris)
            if missing:
                return failed(400, f"Cannot access all of the source files. Non-existing files: {missing}")
            rec = self._new_version(ds, v, copy.deepcopy(body["creation_options"]), body.get("metadata") or {})
            self._start_job(ds, v, rec, uris, texts, "Version creation: loading source files")
            return ok(self._public(rec), 202, headers={"Location": f"/{ds}/{v}"})
        if rec is None:
            return failed(404, f"Version with name {ds}.{v} does not exist")
        if req.method == "PATCH":
            errors = self._extra_fields(body, {"is_latest", "metadata", "is_downloadable"})
            if "is_latest" in body and not isinstance(body["is_latest"], bool):
                errors.append(_err(["is_latest"], "value could not be parsed to a boolean", "type_error.bool"))
            if "metadata" in body and not isinstance(body["metadata"], dict):
                errors.append(_err(["metadata"], "value is not a valid dict", "type_error.dict"))
            if errors:
                return failed(422, errors)
            if body.get("is_latest") is True:
                self._set_latest(ds, v)
            elif body.get("is_latest") is False:
                rec["is_latest"] = False
            if "metadata" in body:
                rec["metadata"] = {**rec["metadata"], **body["metadata"]}
            rec["updated_on"] = _now()
            return ok(self._public(rec))
        if req.method == "DELETE":
            if rec["is_latest"] and len(ds_rec["versions"]) > 1:
                return failed(
                    409,
                    "Deletion failed. You cannot delete a version tagged as latest while other versions exist.",
                )
            del ds_rec["versions"][v]
            return ok(self._public(rec))
        return failed(405, "Method Not Allowed")

    def _append(self, ds: str, v: str, body: dict) -> Response:
        ds_rec = self.datasets.get(ds)
        rec = ds_rec["versions"].get(v) if ds_rec else None
        if rec is None:
            return failed(404, f"Version with name {ds}.{v} does not exist")
        errors = self._extra_fields(body, {"source_uri", "source_driver", "layers"})
        errors += self._validate_uris(body.get("source_uri"), ["source_uri"])
        if errors:
            return failed(422, errors)
        if rec["status"] != "saved":
            return failed(409, f"Version {ds}.{v} has status {rec['status']!r}; only saved versions can be appended to")
        uris = list(body["source_uri"])
        texts, missing = self._fetch_all(uris)
        if missing:
            return failed(400, f"Cannot access all of the source files. Non-existing files: {missing}")
        self._start_job(ds, v, rec, uris, texts, f"Appending {len(uris)} source file(s)")
        return ok(self._public(rec))
