"""pipeline.standins.firms: a loopback stand-in for NASA FIRMS (global CSV files, area API, MAP_KEY status).

Follows external-apis.md §1: global files at `/data/active_fire/{dir}/csv/{NAME}_{24h|48h|7d}.csv` with
Last-Modified (and an ETag) that change when data changes; the area API at
`/api/area/csv/{KEY}/{SOURCE}/{AREA}/{DAY_RANGE}[/{DATE}]` answering a wrong key with HTTP 400 text/plain
`Invalid MAP_KEY.`; `/mapserver/mapkey_status/?MAP_KEY=`. Data come from `generate_fires`, so the same
(today, seed) always serves the same rows, and `rows_for` gives tests the ground truth.
"""

from __future__ import annotations

import email.utils
import hashlib
import re
import sys
import threading
from datetime import UTC, date, datetime, timedelta

import pandas as pd

from pipeline.lib.firms import (
    AREA_SOURCE_INSTRUMENT,
    AREA_SOURCE_SATELLITES,
    GLOBAL_PRODUCTS,
    INSTRUMENT_PRODUCTS,
    MAX_DAY_RANGE,
    WINDOW_DAYS,
)
from pipeline.standins.base import Request, Response, StandinServer
from pipeline.standins.fire_samples import CSV_COLUMNS, empty_fires, generate_fires, to_csv_text

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
INVALID_KEY_BODY = "Invalid MAP_KEY."
OVER_QUOTA_BODY = "MAP_KEY is invalid or your have exceeded your transaction/time limit. Please try again later."

#: Malformed lines added to every served CSV that has rows (when `malformed_rows`).
MALFORMED_PER_FILE = 2

_GLOBAL_RX = re.compile(r"^/data/active_fire/(?P<dir>[^/]+)/csv/(?P<name>[^/]+)_(?P<window>24h|48h|7d)\.csv$")
_AREA_RX = re.compile(
    r"^/api/area/csv/(?P<key>[^/]*)/(?P<source>[^/]+)/(?P<area>[^/]+)/(?P<range>[^/]+)(?:/(?P<date>[^/]+))?/?$"
)
_STATUS_RX = re.compile(r"^/mapserver/mapkey_status/?$")

# Satellite -> global product key, for splitting VIIRS rows across the three VIIRS files.
_PRODUCT_OF_SATELLITE = {sat: key for key, p in GLOBAL_PRODUCTS.items() for sat in p.satellites}


def _text(status: int, body: str) -> Response:
    return Response(status, body, content_type="text/plain;charset=UTF-8")


class FirmsStandin(StandinServer):
    """FIRMS stand-in holding generated fires for UTC days today-days_back .. today.

    Each (instrument, day) is generated lazily with `generate_fires(day, instrument, seed)`; VIIRS rows
    are split across the S-NPP / NOAA-20 / NOAA-21 products by their satellite code.
    """

    name = "firms"
    transaction_limit = 5000

    def __init__(
        self,
        today: date,
        map_key: str = "demo-map-key",
        seed: int = 0,
        days_back: int = 30,
        malformed_rows: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        super().__init__(host=host, port=port)
        if days_back < 0:
            raise ValueError(f"days_back must be >= 0, got {days_back}")
        self.today = today
        self.map_key = map_key
        self.seed = seed
        self.days_back = days_back
        self.malformed_rows = malformed_rows
        self.transactions = 0
        self._state = threading.RLock()
        self._rows: dict[tuple[str, date], pd.DataFrame] = {}
        self._added = 0
        start = datetime.now(UTC).replace(microsecond=0)
        self._clock = start
        self._modified: dict[str, datetime] = {key: start for key in GLOBAL_PRODUCTS}

    def start(self) -> FirmsStandin:
        super().start()
        default = self._httpd.handle_error

        def handle_error(request, client_address):
            # A client that timed out closes the socket before the (delayed) answer is written;
            # that is the scenario under test, not a stand-in failure worth a traceback.
            if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                return
            default(request, client_address)

        self._httpd.handle_error = handle_error
        return self

    def reset_log(self) -> None:
        """Forget recorded calls, pending faults and the MAP_KEY transaction count (data is kept).

        Lets a test module share one server between tests that do not change its data.
        """
        with self._lock:
            self.calls.clear()
            self._faults.clear()
        with self._state:
            self.transactions = 0

    # -- data --------------------------------------------------------------------------------------
    @staticmethod
    def _inst(instrument: str) -> str:
        inst = str(instrument).strip().upper()
        if inst not in CSV_COLUMNS:
            raise ValueError(f"instrument {instrument!r} is not supported (use VIIRS or MODIS)")
        return inst

    def has_day(self, day: date) -> bool:
        """Whether `day` lies in the served range today-days_back .. today."""
        return self.today - timedelta(days=self.days_back) <= day <= self.today

    def _day_rows(self, inst: str, day: date) -> pd.DataFrame:
        with self._state:
            if not self.has_day(day):
                return empty_fires(inst)
            key = (inst, day)
            if key not in self._rows:
                self._rows[key] = generate_fires(day, inst, seed=self.seed)
            return self._rows[key]

    def rows_for(self, instrument: str, day: date) -> pd.DataFrame:
        """Ground truth: the rows served for (instrument, day), malformed lines excluded."""
        return self._day_rows(self._inst(instrument), day).copy()

    def _bump(self, product_keys) -> None:
        # HTTP dates have 1 s resolution: move the clock at least one second per change so a
        # Last-Modified comparison always sees it.
        now = datetime.now(UTC).replace(microsecond=0)
        self._clock = max(now, self._clock + timedelta(seconds=1))
        for key in product_keys:
            self._modified[key] = self._clock

    def add_fires(self, day: date, instrument: str, n: int = 50, seed: int | None = None) -> pd.DataFrame:
        """Simulate new detections arriving for `day`: append `n` rows and bump Last-Modified/ETag.

        Returns the added rows.
        """
        inst = self._inst(instrument)
        with self._state:
            if not self.has_day(day):
                raise ValueError(
                    f"day {day} is outside the stand-in's range "
                    f"{self.today - timedelta(days=self.days_back)} .. {self.today}"
                )
            self._added += 1
            if seed is None:
                seed = self.seed + 1000 * self._added
            new = generate_fires(day, inst, seed=seed, n=n)
            self._rows[(inst, day)] = pd.concat([self._day_rows(inst, day), new], ignore_index=True)
            self._bump({_PRODUCT_OF_SATELLITE[s] for s in new["satellite"]} or INSTRUMENT_PRODUCTS[inst][:1])
            return new

    def set_today(self, day: date) -> None:
        """Move the stand-in's UTC 'today' (the global windows move with it)."""
        with self._state:
            self.today = day
            self._bump(GLOBAL_PRODUCTS)

    def last_modified(self, product_key: str) -> datetime:
        return self._modified[product_key]

    # -- CSV building ------------------------------------------------------------------------------
    def _rows_for_days(self, inst: str, days, satellites) -> pd.DataFrame:
        frames = [self._day_rows(inst, d) for d in days]
        frames = [f[f["satellite"].isin(list(satellites))] for f in frames if len(f)]
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else empty_fires(inst)

    def _csv(self, df: pd.DataFrame) -> str:
        text = to_csv_text(df)
        if not self.malformed_rows or df.empty:
            return text
        lines = text.rstrip("\n").split("\n")
        header, data = lines[0], lines[1:]
        columns = header.split(",")
        fields = data[len(data) // 2].split(",")
        truncated = ",".join(fields[:-4])  # wrong field count
        broken = list(fields)
        kind = len(data) % 3  # deterministic choice of the second defect
        if kind == 0:
            broken[columns.index("latitude")] = "95.00000"
        elif kind == 1:
            broken[columns.index("acq_time")] = "2575"
        else:
            broken[columns.index("confidence")] = "x" if "bright_ti4" in columns else "101"
        data.insert(len(data) // 3, truncated)
        data.insert(2 * len(data) // 3, ",".join(broken))
        return "\n".join([header, *data]) + "\n"

    # -- HTTP --------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return _text(405, "Method Not Allowed")
        if m := _GLOBAL_RX.match(req.path):
            return self._global(m)
        if m := _AREA_RX.match(req.path):
            return self._area(m)
        if _STATUS_RX.match(req.path):
            return self._status(req)
        return _text(404, "Not Found")

    def _global(self, m: re.Match) -> Response:
        product = next((p for p in GLOBAL_PRODUCTS.values() if p.directory == m["dir"] and p.name == m["name"]), None)
        if product is None:
            return _text(404, "Not Found")
        with self._state:
            days = [self.today - timedelta(days=i) for i in range(WINDOW_DAYS[m["window"]] - 1, -1, -1)]
            body = self._csv(self._rows_for_days(product.instrument, days, product.satellites))
            modified = self._modified[product.key]
        etag = '"' + hashlib.md5(body.encode()).hexdigest() + '"'
        return Response(
            200,
            body,
            headers={"Last-Modified": email.utils.format_datetime(modified, usegmt=True), "ETag": etag},
            content_type=CSV_CONTENT_TYPE,
        )

    def _area(self, m: re.Match) -> Response:
        if m["key"] != self.map_key:
            return _text(400, INVALID_KEY_BODY)
        source = m["source"]
        if source not in AREA_SOURCE_INSTRUMENT:
            return _text(400, f"Invalid SOURCE: {source}. Valid sources: {', '.join(AREA_SOURCE_INSTRUMENT)}.")
        try:
            day_range = int(m["range"])
        except ValueError:
            day_range = 0
        if not 1 <= day_range <= MAX_DAY_RANGE:
            return _text(400, f"Invalid day range: {m['range']}. Expects [1..{MAX_DAY_RANGE}].")
        bbox = None
        if m["area"] != "world":
            try:
                west, south, east, north = (float(v) for v in m["area"].split(","))
            except ValueError:
                return _text(400, f"Invalid area coordinates: {m['area']}. Expects world or west,south,east,north.")
            bbox = (west, south, east, north)
        with self._state:
            if m["date"]:
                try:
                    first = date.fromisoformat(m["date"])
                except ValueError:
                    return _text(400, f"Invalid date: {m['date']}. Expects YYYY-MM-DD.")
            else:
                first = self.today - timedelta(days=day_range - 1)
            if self.transactions + day_range > self.transaction_limit:
                return _text(400, OVER_QUOTA_BODY)
            self.transactions += day_range
            inst = AREA_SOURCE_INSTRUMENT[source]
            days = [first + timedelta(days=i) for i in range(day_range)]
            df = self._rows_for_days(inst, days, AREA_SOURCE_SATELLITES[source])
        if bbox is not None and len(df):
            west, south, east, north = bbox
            inside = df["longitude"].between(west, east) & df["latitude"].between(south, north)
            df = df[inside].reset_index(drop=True)
        if source.endswith("_SP"):
            # Standard-processing (archive) data: same detections, version without the NRT suffix,
            # plus the archive-only `type` column (0 = presumed vegetation fire).
            df = df.assign(version=df["version"].str.removesuffix("NRT"), type=0)
        return Response(200, self._csv(df), content_type=CSV_CONTENT_TYPE)

    def _status(self, req: Request) -> Response:
        if req.q("MAP_KEY") != self.map_key:
            return _text(400, INVALID_KEY_BODY)
        with self._state:
            used = self.transactions
        return Response(
            200,
            {
                "transaction_limit": self.transaction_limit,
                "current_transactions": used,
                "transaction_interval": "10 minutes",
            },
        )
