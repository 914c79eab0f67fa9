"""pipeline.collections: one YAML file per gridded collection (package data read by `pipeline.lib.collections`)."""
