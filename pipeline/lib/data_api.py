"""pipeline.lib.data_api: GFW Data API client (datasets, versions, append, polling) and table rules.

Publishing a result table follows datapump (domain.md B1 "Upload"): create the dataset if it is
missing, then either PUT a new table version (creation options built from the column names) or
POST `/append` to an existing one, and poll the version until it is `saved` or `failed`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pipeline.lib.http import HttpClient, SourceError

SOURCE = "GFW Data API"

#: 2xx and 4xx (except 429) come back to this module so JSend error bodies are read in full;
#: 429 and 5xx stay with HttpClient, which retries them.
_PASS_THROUGH = tuple(s for s in range(200, 500) if s != 429 and not 300 <= s < 400)

#: PostgreSQL types datapump's column rules produce.
NUMERIC_SUFFIXES = ("__ha", "__K", "__MW")
INTEGER_SUFFIXES = ("__threshold", "__count", "__perc", "__year", "__week", "__decile")


class DataApiError(SourceError):
    """A GFW Data API call failed or a version ended `failed`; names dataset/version, never the token."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        body: str = "",
        dataset: str | None = None,
        version: str | None = None,
    ):
        super().__init__(SOURCE, message, status=status, body=body)
        self.dataset = dataset
        self.version = version


def column_type(name: str, *, whitelist: bool = False, id_columns: tuple[str, ...] = ()) -> str:
    """PostgreSQL type of one result column by datapump's rules (`GeotrellisJob._get_field_type`).

    - `__Mg` anywhere (e.g. `..._emissions__Mg`, `..._net_flux__Mg_CO2e`), or ending `__ha`/`__K`/`__MW`,
      or `latitude`/`longitude` -> numeric
    - ending `__threshold`/`__count`/`__perc`/`__year`/`__week`/`__decile`, or `adm1`/`adm2` -> integer
    - starting `is__` -> boolean
    - ending `__date` -> date
    - anything else -> text
    Whitelist tables: id columns are integer (adm1/adm2) or text; every other column is boolean.
    """
    if whitelist:
        if name in id_columns:
            return "integer" if name in ("adm1", "adm2") else "text"
        return "boolean"
    if "__Mg" in name or name.endswith(NUMERIC_SUFFIXES) or name in ("latitude", "longitude"):
        return "numeric"
    if name.endswith(INTEGER_SUFFIXES) or name in ("adm1", "adm2"):
        return "integer"
    if name.startswith("is__"):
        return "boolean"
    if name.endswith("__date"):
        return "date"
    return "text"


def table_schema(
    columns: list[str], *, whitelist: bool = False, id_columns: list[str] | tuple[str, ...] = ()
) -> list[dict]:
    """`[{"name": column, "data_type": <postgres type>}, ...]` for the Data API `table_schema` option."""
    if isinstance(columns, str) or not isinstance(columns, (list, tuple)) or not columns:
        raise ValueError(f"columns must be a non-empty list of column names, got {columns!r}")
    seen: set[str] = set()
    for c in columns:
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"columns must be non-empty strings, got {c!r}")
        if c in seen:
            raise ValueError(f"columns must be unique; {c!r} appears more than once")
        seen.add(c)
    ids = tuple(id_columns)
    return [{"name": c, "data_type": column_type(c, whitelist=whitelist, id_columns=ids)} for c in columns]


def _jsend_message(text: str) -> str | None:
    """The `message` of a JSend error body, formatted; a pydantic error list becomes 'loc: msg; ...'."""
    try:
        payload = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(payload, dict):
        return None
    message = payload.get("message", payload.get("detail"))
    if message is None:
        return None
    if isinstance(message, list):
        parts = []
        for item in message:
            if isinstance(item, dict):
                loc = ".".join(str(x) for x in item.get("loc", []) if x != "body")
                parts.append(f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg", item)))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(message)


def _version_message(data: dict) -> str:
    """The most useful status text a version carries (change_log's last message/detail, or `message`)."""
    log = data.get("change_log") or []
    if isinstance(log, list) and log and isinstance(log[-1], dict):
        last = log[-1]
        text = " - ".join(str(last[k]) for k in ("message", "detail") if last.get(k))
        if text:
            return text
    return str(data.get("message") or "")


class DataApiClient:
    """Client for the GFW Data API (external-apis.md §5).

    Writes send `Authorization: Bearer <token>`. Non-2xx answers raise `DataApiError` (a
    `SourceError` naming "GFW Data API") carrying the JSend `message`; 429/5xx are retried by
    `HttpClient`. Polling sleeps `poll_interval` between GETs and gives up after `poll_timeout`
    seconds, counted both as total sleep requested and as wall time (so a no-op `sleep` in tests
    still times out deterministically).
    """

    def __init__(
        self,
        base_url: str = "https://data-api.globalforestwatch.org",
        token: str | None = None,
        timeout: float = 60,
        max_retries: int = 4,
        backoff: float = 1.0,
        sleep=time.sleep,
        poll_interval: float = 5.0,
        poll_timeout: float = 3600,
    ):
        if poll_interval < 0 or poll_timeout <= 0:
            raise ValueError(
                f"poll_interval must be >= 0 and poll_timeout > 0, got {poll_interval!r}, {poll_timeout!r}"
            )
        self.http = HttpClient(
            SOURCE,
            base_url,
            headers={"Authorization": f"Bearer {token}"} if token else None,
            secrets=[token] if token else [],
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
        )
        self.sleep = sleep
        self.poll_interval = poll_interval
        self.poll_timeout = poll_timeout

    # -- plumbing --------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, ok=(200,), missing_ok: bool = False, ds=None, v=None, **kwargs):
        """Send; return the response for `ok` statuses (None for 404 if `missing_ok`); raise otherwise."""
        try:
            resp = self.http.request(method, path, expected=_PASS_THROUGH, sleep=self.sleep, **kwargs)
        except SourceError as exc:  # retries exhausted or network failure
            detail = _jsend_message(exc.body) if exc.body else None
            msg = str(exc).removeprefix(f"{SOURCE}: ")
            if detail:
                msg = f"{method} {path} failed with HTTP {exc.status}: {detail}"
            raise DataApiError(msg, status=exc.status, body=exc.body, dataset=ds, version=v) from exc
        if resp.status_code in ok:
            return resp
        if missing_ok and resp.status_code == 404:
            return None
        body = self.http._safe(resp.text[:2000])
        detail = _jsend_message(resp.text)
        detail = self.http._safe(detail) if detail else body.strip()[:300]
        raise DataApiError(
            f"{method} {path} returned HTTP {resp.status_code}: {detail}",
            status=resp.status_code,
            body=body,
            dataset=ds,
            version=v,
        )

    def _data(self, resp, what: str) -> Any:
        try:
            payload = resp.json()
        except ValueError as exc:
            raise DataApiError(
                f"{what} returned a body that is not JSON: {self.http._safe(resp.text[:200])!r}",
                status=resp.status_code,
            ) from exc
        if not isinstance(payload, dict) or "data" not in payload:
            raise DataApiError(f"{what} returned no 'data': {str(payload)[:200]}", status=resp.status_code)
        return payload["data"]

    @staticmethod
    def _check_name(value: str, what: str) -> str:
        if not isinstance(value, str) or not value or "/" in value or value.strip() != value:
            raise ValueError(f"{what} must be a non-empty name without '/' or surrounding spaces, got {value!r}")
        return value

    def _check_ds_v(self, ds: str, v: str) -> None:
        self._check_name(ds, "dataset")
        self._check_name(v, "version")

    # -- datasets --------------------------------------------------------------------------------
    def get_dataset(self, ds: str) -> dict | None:
        """`GET /dataset/{ds}` -> data, or None when the dataset does not exist."""
        self._check_name(ds, "dataset")
        resp = self._request("GET", f"/dataset/{ds}", missing_ok=True, ds=ds)
        return None if resp is None else self._data(resp, f"GET /dataset/{ds}")

    def create_dataset(self, ds: str, metadata: dict) -> dict:
        """`PUT /dataset/{ds}` with {"metadata": ...} (201)."""
        self._check_name(ds, "dataset")
        if not isinstance(metadata, dict):
            raise ValueError(f"metadata for dataset {ds!r} must be a dict, got {type(metadata).__name__}")
        resp = self._request("PUT", f"/dataset/{ds}", ok=(200, 201), ds=ds, json={"metadata": metadata})
        return self._data(resp, f"PUT /dataset/{ds}")

    # -- versions --------------------------------------------------------------------------------
    def get_version(self, ds: str, v: str) -> dict | None:
        """`GET /dataset/{ds}/{v}` -> data, or None when the dataset or version does not exist."""
        self._check_ds_v(ds, v)
        resp = self._request("GET", f"/dataset/{ds}/{v}", missing_ok=True, ds=ds, v=v)
        return None if resp is None else self._data(resp, f"GET /dataset/{ds}/{v}")

    def create_version(self, ds: str, v: str, creation_options: dict, metadata: dict | None = None) -> dict:
        """`PUT /dataset/{ds}/{v}` with creation options (202; the version starts `pending`).

        If the PUT fails with a 5xx/network error, or answers "already exists" after such a retry,
        but the version now exists, that version is returned (datapump's GTC-2986 workaround).
        """
        self._check_ds_v(ds, v)
        if not isinstance(creation_options, dict) or not creation_options:
            raise ValueError(f"creation_options for {ds}/{v} must be a non-empty dict")
        body: dict[str, Any] = {"creation_options": creation_options}
        if metadata is not None:
            body["metadata"] = metadata
        try:
            resp = self._request("PUT", f"/dataset/{ds}/{v}", ok=(200, 201, 202), ds=ds, v=v, json=body)
        except DataApiError as exc:
            transient = exc.status is None or exc.status >= 500
            if transient or (exc.status in (400, 409) and "exist" in str(exc).lower()):
                existing = self.get_version(ds, v)
                if existing is not None and (
                    transient or existing.get("creation_options", creation_options) == creation_options
                ):
                    return existing
            raise
        return self._data(resp, f"PUT /dataset/{ds}/{v}")

    def latest_version(self, ds: str) -> str | None:
        """Name of the version tagged latest (`GET /dataset/{ds}/latest`, following the 307), or None."""
        self._check_name(ds, "dataset")
        resp = self._request("GET", f"/dataset/{ds}/latest", missing_ok=True, ds=ds, allow_redirects=True)
        if resp is None:
            return None
        data = self._data(resp, f"GET /dataset/{ds}/latest")
        version = data.get("version") if isinstance(data, dict) else None
        if not version:
            raise DataApiError(f"GET /dataset/{ds}/latest returned a version object without 'version'", dataset=ds)
        return version

    def append(self, ds: str, v: str, source_uris: list[str]) -> dict:
        """`POST /dataset/{ds}/{v}/append` {"source_uri": [...]}; the version goes back to `pending`."""
        self._check_ds_v(ds, v)
        uris = self._check_uris(source_uris)
        resp = self._request(
            "POST", f"/dataset/{ds}/{v}/append", ok=(200, 201, 202), ds=ds, v=v, json={"source_uri": uris}
        )
        return self._data(resp, f"POST /dataset/{ds}/{v}/append")

    def wait_until_saved(self, ds: str, v: str) -> dict:
        """Poll `GET /dataset/{ds}/{v}` until status `saved` (returns the version data).

        Raises `DataApiError` when the version is `failed` (with its status message), disappears,
        or is not saved within `poll_timeout` seconds.
        """
        started = time.monotonic()
        slept = 0.0
        polls = 0
        while True:
            data = self.get_version(ds, v)
            polls += 1
            if data is None:
                raise DataApiError(
                    f"version {ds}/{v} does not exist (while waiting for it to be saved)",
                    status=404,
                    dataset=ds,
                    version=v,
                )
            status = data.get("status")
            if status == "saved":
                return data
            if status == "failed":
                detail = _version_message(data)
                raise DataApiError(
                    f"version {ds}/{v} ended with status 'failed'" + (f": {detail}" if detail else ""),
                    dataset=ds,
                    version=v,
                )
            waited = max(slept, time.monotonic() - started)
            # Short jobs finish in seconds: start polling fast and back off to poll_interval.
            delay = min(self.poll_interval, 0.25 * 2 ** (polls - 1))
            if waited + delay > self.poll_timeout:
                raise DataApiError(
                    f"version {ds}/{v} still {status!r} after {waited:.0f}s and {polls} polls "
                    f"(poll_timeout {self.poll_timeout:g}s)",
                    dataset=ds,
                    version=v,
                )
            self.sleep(delay)
            slept += delay

    def set_latest(self, ds: str, v: str) -> dict:
        """`PATCH /dataset/{ds}/{v}` {"is_latest": true}."""
        self._check_ds_v(ds, v)
        resp = self._request("PATCH", f"/dataset/{ds}/{v}", ds=ds, v=v, json={"is_latest": True})
        return self._data(resp, f"PATCH /dataset/{ds}/{v}")

    def patch_metadata(self, ds: str, v: str, metadata: dict) -> dict:
        """`PATCH /dataset/{ds}/{v}` {"metadata": ...} (e.g. content_date_range.end_date after a sync)."""
        self._check_ds_v(ds, v)
        if not isinstance(metadata, dict) or not metadata:
            raise ValueError(f"metadata for {ds}/{v} must be a non-empty dict")
        resp = self._request("PATCH", f"/dataset/{ds}/{v}", ds=ds, v=v, json={"metadata": metadata})
        return self._data(resp, f"PATCH /dataset/{ds}/{v}")

    # -- high level ------------------------------------------------------------------------------
    @staticmethod
    def _check_uris(source_uris: list[str]) -> list[str]:
        if isinstance(source_uris, str) or not isinstance(source_uris, (list, tuple)) or not source_uris:
            raise ValueError(f"source_uris must be a non-empty list of URIs, got {source_uris!r}")
        for u in source_uris:
            if not isinstance(u, str) or not u.strip():
                raise ValueError(f"source_uris must hold non-empty strings, got {u!r}")
        return list(source_uris)

    @staticmethod
    def table_creation_options(
        columns: list[str], source_uris: list[str], index_columns: list[str], *, cluster: bool = True
    ) -> dict:
        """Datapump's `source_type: table` creation options for a tab-separated, headed result file."""
        options: dict[str, Any] = {
            "source_type": "table",
            "source_driver": "text",
            "source_uri": list(source_uris),
            "delimiter": "\t",
            "has_header": True,
            "table_schema": table_schema(columns),
        }
        if index_columns:
            options["indices"] = [{"index_type": "btree", "column_names": list(index_columns)}]
            if cluster:
                options["cluster"] = {"index_type": "btree", "column_names": list(index_columns)}
        return options

    def publish_table(
        self,
        ds: str,
        columns: list[str],
        source_uris: list[str],
        index_columns: list[str],
        version: str | None = None,
        metadata: dict | None = None,
        *,
        default_version: str = "v1",
        cluster: bool = True,
        latest: bool = False,
    ) -> str:
        """Publish TSV result files into table dataset `ds` the way datapump does; returns the version.

        1. `PUT /dataset/{ds}` when the dataset is missing (`metadata` or {}).
        2. Target version: `version` if given, else the dataset's latest, else `default_version`.
        3. If the target version does not exist: PUT it with table creation options built from
           `columns` (`table_schema` rules) and `index_columns` (btree index, plus cluster unless
           `cluster=False`, as for geostore tables) using `source_uris[0]`, wait until saved, and
           append `source_uris[1:]`. A version created because the dataset had no version at all
           (or any newly created version when `latest=True`: a new analysis version) is tagged
           latest, so the next nightly append and Data API readers find it.
           Otherwise append all `source_uris` to it.
        4. Wait until the version is `saved` (`DataApiError` if it fails or times out).
        """
        self._check_name(ds, "dataset")
        uris = self._check_uris(source_uris)
        schema = table_schema(columns)
        names = {c["name"] for c in schema}
        unknown = [c for c in index_columns if c not in names]
        if unknown:
            raise ValueError(f"index_columns {unknown} are not among the table columns {list(columns)}")
        if version is not None:
            self._check_name(version, "version")

        if self.get_dataset(ds) is None:
            self.create_dataset(ds, metadata or {})
        target = version
        make_latest = False
        if target is None:
            target = self.latest_version(ds)
            if target is None:
                target = self._check_name(default_version, "default_version")
                make_latest = True
        existing = self.get_version(ds, target)
        if existing is None:
            options = self.table_creation_options(columns, uris[:1], index_columns, cluster=cluster)
            self.create_version(ds, target, options, metadata)
            self.wait_until_saved(ds, target)
            if len(uris) > 1:
                self.append(ds, target, uris[1:])
                self.wait_until_saved(ds, target)
            if make_latest or latest:
                self.set_latest(ds, target)
        else:
            if existing.get("status") == "pending":  # a previous run's job still running
                self.wait_until_saved(ds, target)
            self.append(ds, target, uris)
            self.wait_until_saved(ds, target)
        return target


__all__ = [
    "DataApiClient",
    "DataApiError",
    "SOURCE",
    "column_type",
    "table_schema",
]
