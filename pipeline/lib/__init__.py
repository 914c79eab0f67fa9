"""pipeline.lib: Dagster-free clients, parsers and geo logic, unit-tested directly."""
