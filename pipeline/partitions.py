"""pipeline.partitions: the partition definitions shared by every daily asset."""

import dagster as dg

from pipeline.constants import HISTORY_START
from pipeline.lib.tiles import HANSEN_TILE_IDS

#: UTC days. `end_offset=1` includes today: FIRMS publishes near-real-time detections for the
#: current UTC day, and the FIRMS sensor re-runs a day whenever its data changes.
daily_partitions = dg.DailyPartitionsDefinition(start_date=HISTORY_START, timezone="UTC", end_offset=1)

#: Every daily asset runs at most five partitions per run: the FIRMS area API serves DAY_RANGE <= 5,
#: so a backfill fetches each past day exactly once, and one policy for all assets lets the nightly
#: job carry them together.
daily_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=5)

#: The 504 GFW 10x10° tiles of the Hansen grid (top-left ids such as `10N_020E`). Static: the grid
#: never changes; which tiles a release holds is checked by each source's release asset.
tile_partitions = dg.StaticPartitionsDefinition(HANSEN_TILE_IDS)
