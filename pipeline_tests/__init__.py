"""pipeline_tests: tests mirroring the pipeline package."""
