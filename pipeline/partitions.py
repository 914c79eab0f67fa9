"""pipeline.partitions: the partition definitions shared by every daily asset."""

import dagster as dg

from pipeline.constants import HISTORY_START

#: UTC days. `end_offset=1` includes today: FIRMS publishes near-real-time detections for the
#: current UTC day, and the FIRMS sensor re-runs a day whenever its data changes.
daily_partitions = dg.DailyPartitionsDefinition(start_date=HISTORY_START, timezone="UTC", end_offset=1)

#: Every daily asset runs at most five partitions per run: the FIRMS area API serves DAY_RANGE <= 5,
#: so a backfill fetches each past day exactly once, and one policy for all assets lets the nightly
#: job carry them together.
daily_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=5)
