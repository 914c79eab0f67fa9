"""Packaging for geopump: the Dagster code location in ``pipeline/``.

Dagster and its libraries are pinned as one family (dagster 1.13.27 + libraries 0.29.27): the
0.29.27 libraries pin ``dagster==1.13.27`` exactly, and mixing versions makes pip backtrack for
minutes. Everything else has loose lower bounds.
"""

from setuptools import find_packages, setup

DAGSTER_VERSION = "1.13.27"
DAGSTER_LIBS_VERSION = "0.29.27"

setup(
    name="geopump",
    version="0.1.0",
    description="Dagster asset-based geospatial data platform (fire alerts, deforestation, COGs, STAC).",
    packages=find_packages(include=["pipeline", "pipeline.*"]),
    include_package_data=True,
    package_data={"pipeline": ["lib/stac_schemas/**/*.json", "collections/*.yaml"]},
    python_requires=">=3.11",
    install_requires=[
        f"dagster=={DAGSTER_VERSION}",
        f"dagster-webserver=={DAGSTER_VERSION}",
        f"dagster-graphql=={DAGSTER_VERSION}",
        # The `dg` CLI (dg check defs, dg dev, dg launch) for this setup.py project (pyproject [tool.dg]).
        f"dagster-dg-cli=={DAGSTER_VERSION}",
        f"dagster-aws=={DAGSTER_LIBS_VERSION}",
        f"dagster-postgres=={DAGSTER_LIBS_VERSION}",
        f"dagster-k8s=={DAGSTER_LIBS_VERSION}",
        "geopandas>=1.0",
        "shapely>=2.0",
        "pandas>=2.0",
        "numpy>=1.26",
        "pyarrow>=14.0",
        "rasterio>=1.3.9",
        "rio-cogeo>=5.0",
        "pystac>=1.10",
        "dask[distributed]>=2024.1",
        "requests>=2.31",
        "boto3>=1.34",
        "defusedxml>=0.7",
        "pyyaml>=6.0",
        "click>=8.1",
        "psutil>=5.9",
        # dagster-postgres needs psycopg2; with SQLAlchemy 2.1 a bare postgresql:// URL would pick
        # psycopg 3, so every Postgres config in this repo sets scheme postgresql+psycopg2.
        "psycopg2-binary>=2.9",
        "geoalchemy2>=0.14",
        "sqlalchemy>=2.0",
        # HDF-EOS5 granules (OMI L3 grids) are read with h5py.
        "h5py>=3.10",
        # STAC items and collections are validated against the vendored JSON schemas before publishing.
        "jsonschema>=4.18",
    ],
    extras_require={
        "test": [
            "pytest>=8.0",
            "pytest-timeout>=2.2",
            "moto[server]>=5.0",
            "jsonschema>=4.18",
            # The zonal engine's accuracy oracle (test_zonal compares loss areas with it).
            "exactextract>=0.3.0",
            # A real STAC API for the transaction tests: stac-fastapi-pgstac on the local Postgres,
            # schema installed by pypgstac (see ../shared/reference/local-services.md).
            "stac-fastapi-pgstac[server]>=6.0",
            "pypgstac[psycopg]>=0.9",
        ],
        "bench": [
            "duckdb>=1.4",
            "duckdb-ext-spatial",
            "exactextract>=0.3.0",
            "rasterstats>=0.21",
        ],
    },
    entry_points={
        "console_scripts": [
            "geopump=pipeline.cli:main",
        ],
    },
)
