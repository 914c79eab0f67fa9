"""pipeline.assets: the software-defined assets, one module per domain."""
