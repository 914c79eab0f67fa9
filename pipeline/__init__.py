"""geopump: a Dagster asset-based geospatial data platform."""

import warnings

# `backfill_policy` on @asset is beta in Dagster 1.13 and we rely on it deliberately
# (assets/fires.py); silence that one family of warnings for the whole code location.
warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview).*")
