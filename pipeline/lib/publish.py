"""pipeline.lib.publish: append only what changed to GFW Data API tables, never the same row twice.

The Data API can only *append* to a table version. geopump keeps a ledger in storage: for every
published source file, the hash of its content and a copy of the rows as published. A run
publishes the difference between each changed file and its published copy (new rows, plus
correction rows carrying the change in `alert__count` when a day received late detections), so
`SUM(alert__count)` over the Data API table always equals geopump's table, re-running publishes
nothing, and a failed append leaves the ledger untouched to be retried next time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass, field

import pandas as pd

from pipeline.lib.storage import Storage


@dataclass
class PublishReport:
    dataset: str
    files_changed: int = 0
    rows_appended: int = 0
    version: str | None = None
    batch_uri: str | None = None
    changed_files: list[str] = field(default_factory=list)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def table_delta(
    current: pd.DataFrame, published: pd.DataFrame, keys: list[str], value: str | list[str]
) -> pd.DataFrame:
    """Rows to append so that published + delta sums to current, per key (all-zero deltas dropped).

    `value` is one value column or several (e.g. the hectare columns of a tree-cover-loss table); integer
    columns stay integers, float columns get float differences (|d| < 1e-9 counts as zero).
    """
    values = [value] if isinstance(value, str) else list(value)
    cur = current.groupby(keys, as_index=False, dropna=False)[values].sum()
    if published is None or published.empty:
        delta = cur
    else:
        pub = published.groupby(keys, as_index=False, dropna=False)[values].sum()
        merged = cur.merge(pub, on=keys, how="outer", suffixes=("", "__pub"))
        for v in values:
            a, b = merged[v].fillna(0), merged[f"{v}__pub"].fillna(0)
            integer = pd.api.types.is_integer_dtype(current[v].dtype)
            merged[v] = a.astype("int64") - b.astype("int64") if integer else a.astype("float64") - b.astype("float64")
        delta = merged[keys + values]
    nonzero = pd.Series(False, index=delta.index)
    for v in values:
        nonzero |= delta[v].abs() > (0 if pd.api.types.is_integer_dtype(delta[v].dtype) else 1e-9)
    delta = delta[nonzero]
    return delta.sort_values(keys, kind="stable").reset_index(drop=True)


def publish_incremental(
    storage: Storage,
    client,
    dataset: str,
    table_prefix: str,
    keys: list[str],
    value: str | list[str] = "alert__count",
    index_columns: list[str] | None = None,
    now: dt.datetime | None = None,
    version: str | None = None,
) -> PublishReport:
    """Publish the changes of every Parquet file under `table_prefix` to `dataset` (append).

    Without `version` the dataset's latest version is appended to (fire tables). With `version` (an
    analysis version, e.g. a tree-cover-loss release) that version is created when missing, tagged
    latest, and has its own ledger, so a new analysis version starts a complete new table.
    """
    values = [value] if isinstance(value, str) else list(value)
    report = PublishReport(dataset=dataset)
    tag = dataset if version is None else f"{dataset}/{version}"
    ledger_rel = f"publish/ledger/{tag}.json"
    ledger: dict[str, str] = storage.read_json(ledger_rel, default={}) or {}
    changed: list[tuple[str, str, pd.DataFrame]] = []
    deltas = []
    for rel in storage.list(table_prefix):
        if not rel.endswith(".parquet"):
            continue
        data = storage.read_bytes(rel)
        digest = _sha(data)
        if ledger.get(rel) == digest:
            continue
        current = pd.read_parquet(io.BytesIO(data))
        copy_rel = f"publish/published/{tag}/{rel.rsplit('/', 1)[-1]}"
        published = storage.read_parquet(copy_rel) if storage.exists(copy_rel) else None
        delta = table_delta(current, published, keys, values)
        changed.append((rel, digest, current))
        if not delta.empty:
            deltas.append(delta)
    report.files_changed = len(changed)
    report.changed_files = [c[0] for c in changed]
    if deltas:
        batch = pd.concat(deltas, ignore_index=True)[keys + values]
        stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S%fZ")
        digest = _sha(batch.to_csv(index=False).encode())[:12]
        batch_rel = f"publish/batches/{tag}/{stamp}-{digest}.tsv"
        report.batch_uri = storage.write_bytes(batch_rel, batch.to_csv(sep="\t", index=False).encode())
        report.batch_uri = storage.uri(batch_rel)
        report.version = client.publish_table(
            dataset,
            keys + values,
            [report.batch_uri],
            index_columns=index_columns or keys,
            version=version,
            latest=version is not None,
        )
        report.rows_appended = len(batch)
    # Only after the Data API reported `saved` do we record what is published.
    for rel, digest, current in changed:
        storage.write_parquet(f"publish/published/{tag}/{rel.rsplit('/', 1)[-1]}", current)
        ledger[rel] = digest
    if changed:
        storage.write_json(ledger_rel, ledger)
    return report
