"""pipeline.assets.common: the metadata every materialisation records."""

from collections.abc import Sequence

import dagster as dg


def column_schema(schema: Sequence[tuple[str, str, str]]) -> dg.TableSchema:
    """A Dagster TableSchema from (name, dtype, description) triples."""
    return dg.TableSchema(columns=[dg.TableColumn(name=n, type=t, description=d) for n, t, d in schema])


def table_metadata(uri: str, row_count: int, schema: Sequence[tuple[str, str, str]], **extra) -> dict:
    """`dagster/uri`, `dagster/row_count` and `dagster/column_schema` plus any extra entries."""
    meta = {
        "dagster/uri": dg.MetadataValue.path(uri),
        "dagster/row_count": dg.MetadataValue.int(int(row_count)),
        "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(schema)),
    }
    meta.update(extra)
    return meta


def partition_range_uri(storage_uri_of, paths: list[str]) -> str:
    """The output URI of a run: the file for one partition, the folder for a range."""
    if len(paths) == 1:
        return storage_uri_of(paths[0])
    return storage_uri_of(paths[0]).rsplit("/", 1)[0]
