"""Deployment configuration: instance YAMLs, workspace, packaging pins and the Helm values.

Nothing here imports ``pipeline``: these files must stay valid whatever the code location does.
Helm is checked offline (no cluster, no Helm CLI): the values are validated against the chart's
JSON schema vendored in ``helm/schema/`` and the parts the chart renders into ``dagster.yaml`` are
validated with Dagster's own config types.
"""

import copy
import functools
import hashlib
import importlib
import json
import re
import shutil
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.workspace.config_schema import process_workspace_config
from jsonschema import Draft7Validator

from pipeline_tests.conftest import PG_HOST, PG_PORT, PG_USER

REPO = Path(__file__).resolve().parents[1]
LOCAL_INSTANCE = REPO / "dagster.yaml"
POSTGRES_INSTANCE = REPO / "deploy" / "dagster-postgres.yaml"
HELM_VALUES = REPO / "helm" / "values.yaml"
HELM_README = REPO / "helm" / "README.md"
SCHEMA_DIR = REPO / "helm" / "schema"
MAIN_SCHEMA = "dagster-values.schema.json"
SUBCHART_SCHEMA = "dagster-user-deployments-values.schema.json"

# sha256 of the vendored copies (== ../shared/reference/helm/, see helm/README.md for provenance).
VENDORED_SCHEMA_SHA256 = {
    MAIN_SCHEMA: "cccbf9a9956cf32b240ef7fc2f4735e03c02db369f15ff444b06492544f8503a",
    SUBCHART_SCHEMA: "06a6e7967bb569722e053b21700ab5dd475d9688568447f694869e758bd28d20",
}

DEFINITIONS_MODULE = "pipeline.definitions"
RELEASE = "geopump"  # `helm install geopump dagster/dagster ...`, see helm/README.md
NAMESPACE = "geopump"


def _load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def _snake_keys(mapping: dict[str, Any]) -> dict[str, Any]:
    """camelCase Helm keys -> snake_case Dagster config keys (one level, values untouched)."""
    return {_snake(k): v for k, v in mapping.items()}


def _instance_home(tmp_path: Path, source: Path) -> Path:
    """A fresh DAGSTER_HOME-like directory holding ``source`` as dagster.yaml."""
    home = tmp_path / f"home-{uuid.uuid4().hex[:8]}"
    home.mkdir()
    shutil.copy(source, home / "dagster.yaml")
    return home


def _write_instance(tmp_path: Path, config: dict[str, Any]) -> Path:
    home = tmp_path / f"home-{uuid.uuid4().hex[:8]}"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return home


# =====================================================================================================
# Instance configs (dagster.yaml, deploy/dagster-postgres.yaml)
# =====================================================================================================


@pytest.mark.parametrize("source", [LOCAL_INSTANCE, POSTGRES_INSTANCE], ids=["local", "postgres"])
def test_instance_yaml_validates(tmp_path, source):
    config, custom_class = dagster_instance_config(str(_instance_home(tmp_path, source)))

    assert custom_class is None
    assert config["run_coordinator"] == {
        "module": "dagster._core.run_coordinator",
        "class": "QueuedRunCoordinator",
    }
    # Run limits live in `concurrency`, so the coordinator must carry none (dagster-notes §1.7).
    assert not (config["run_coordinator"].get("config") or {}).keys() & {
        "max_concurrent_runs",
        "tag_concurrency_limits",
    }
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 2
    assert config["run_retries"]["enabled"] is True
    assert config["run_retries"]["max_retries"] == 2
    assert config["run_monitoring"]["enabled"] is True
    assert config["telemetry"]["enabled"] is False


def test_local_instance_uses_default_sqlite_storage(tmp_path):
    config, _ = dagster_instance_config(str(_instance_home(tmp_path, LOCAL_INSTANCE)))
    assert "storage" not in config
    assert not config.keys() & {"run_storage", "event_log_storage", "schedule_storage"}


def test_postgres_instance_reads_credentials_from_env(tmp_path):
    config, _ = dagster_instance_config(str(_instance_home(tmp_path, POSTGRES_INSTANCE)))
    pg = config["storage"]["postgres"]["postgres_db"]
    assert pg["username"] == {"env": "DAGSTER_PG_USERNAME"}
    assert pg["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert pg["hostname"] == {"env": "DAGSTER_PG_HOST"}
    assert pg["db_name"] == {"env": "DAGSTER_PG_DB"}
    assert pg["port"] == 5432
    # SQLAlchemy 2.1 + bare `postgresql` = psycopg 3, which dagster-postgres does not ship.
    assert pg["scheme"] == "postgresql+psycopg2"
    # Everything except storage is identical to the local instance.
    local = _load_yaml(LOCAL_INSTANCE)
    postgres = _load_yaml(POSTGRES_INSTANCE)
    postgres.pop("storage")
    assert postgres == local


@pytest.mark.parametrize(
    "mutate, message",
    [
        # Both run limits at once: Dagster refuses the combination.
        (
            lambda c: c["run_coordinator"].__setitem__("config", {"max_concurrent_runs": 5}),
            "incompatible with the `concurrency > runs` config",
        ),
        # Typo'd top-level key.
        (lambda c: c.__setitem__("run_retry", c.pop("run_retries")), "run_retry"),
        # Typo'd nested key.
        (lambda c: c["concurrency"]["pools"].__setitem__("default_limt", 2), "default_limt"),
        # Wrong type.
        (lambda c: c["run_retries"].__setitem__("max_retries", "two"), "max_retries"),
    ],
    ids=["run-limits-twice", "typo-top-level", "typo-nested", "wrong-type"],
)
def test_instance_validation_rejects_bad_config(tmp_path, mutate, message):
    config = _load_yaml(LOCAL_INSTANCE)
    mutate(config)
    with pytest.raises(DagsterInvalidConfigError) as excinfo:
        dagster_instance_config(str(_write_instance(tmp_path, config)))
    assert message in str(excinfo.value)


def test_local_instance_stores_runs_and_applies_pools(tmp_path):
    """A real instance built from dagster.yaml (SQLite under the temp home) records a run."""
    home = _instance_home(tmp_path, LOCAL_INSTANCE)

    @dg.asset(pool="firms_api")
    def firms_probe() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"rows": 3})

    @dg.asset(pool="gfw_api", deps=[firms_probe])
    def gfw_probe() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"rows": 5})

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        result = dg.materialize([firms_probe, gfw_probe], instance=instance)
        assert result.success

        from dagster._core.run_coordinator import QueuedRunCoordinator
        from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

        assert isinstance(instance.run_storage, SqliteRunStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert (home / "history" / "runs.db").exists()  # stored under the temp home, nowhere else

        runs = instance.get_runs()
        assert [r.run_id for r in runs] == [result.run_id]
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS

        event = instance.get_latest_materialization_event(dg.AssetKey("gfw_probe"))
        assert event is not None and event.run_id == result.run_id
        assert event.asset_materialization.metadata["rows"].value == 5

        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        assert instance.run_monitoring_enabled
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 2
        # Both API pools were initialised from pools.default_limit when their step ran.
        for pool in ("firms_api", "gfw_api"):
            info = instance.event_log_storage.get_concurrency_info(pool)
            assert info.slot_count == 1, pool
            assert info.claimed_slots == []  # released after the run
    finally:
        instance.dispose()


# -----------------------------------------------------------------------------------------------------
# PostgreSQL (real server on 127.0.0.1:5432, own temporary database)
# -----------------------------------------------------------------------------------------------------


@pytest.mark.db
def test_postgres_instance_stores_partitioned_materialization(tmp_path, monkeypatch, temp_pg_database):
    import psycopg2
    from dagster_postgres.event_log import PostgresEventLogStorage
    from dagster_postgres.run_storage import PostgresRunStorage
    from dagster_postgres.schedule_storage import PostgresScheduleStorage

    monkeypatch.setenv("DAGSTER_PG_USERNAME", PG_USER)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "")  # trust auth on the test server
    monkeypatch.setenv("DAGSTER_PG_HOST", PG_HOST)
    monkeypatch.setenv("DAGSTER_PG_DB", temp_pg_database)

    daily = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")

    @dg.asset(partitions_def=daily)
    def pg_probe(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"day": context.partition_key})

    instance = dg.DagsterInstance.from_config(str(_instance_home(tmp_path, POSTGRES_INSTANCE)))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)

        result = dg.materialize([pg_probe], instance=instance, partition_key="2026-01-02")
        assert result.success

        records = instance.fetch_materializations(dg.AssetKey("pg_probe"), limit=10).records
        assert len(records) == 1
        mat = records[0].asset_materialization
        assert mat.partition == "2026-01-02"
        assert mat.metadata["day"].value == "2026-01-02"
        assert instance.get_materialized_partitions(dg.AssetKey("pg_probe")) == {"2026-01-02"}
    finally:
        instance.dispose()

    # The run really is in *our* database (not some other server or SQLite file).
    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=temp_pg_database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT run_id, status FROM runs")
            assert cur.fetchall() == [(result.run_id, "SUCCESS")]
    finally:
        conn.close()


# =====================================================================================================
# Workspace and packaging
# =====================================================================================================


def test_workspace_loads_definitions_module():
    raw = _load_yaml(REPO / "workspace.yaml")
    result = process_workspace_config(raw)
    assert result.success, [e.message for e in result.errors]
    [entry] = result.value["load_from"]
    assert entry["python_module"]["module_name"] == DEFINITIONS_MODULE
    assert entry["python_module"]["working_directory"] == "."


def test_workspace_validation_rejects_typo():
    raw = _load_yaml(REPO / "workspace.yaml")
    raw["load_from"][0]["python_module"]["module_nam"] = raw["load_from"][0]["python_module"].pop("module_name")
    assert not process_workspace_config(raw).success


def test_pyproject_points_tools_at_definitions():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    tool = pyproject["tool"]
    assert tool["dagster"]["module_name"] == DEFINITIONS_MODULE
    assert tool["dg"]["directory_type"] == "project"
    assert tool["dg"]["project"]["root_module"] == "pipeline"
    assert tool["dg"]["project"]["code_location_target_module"] == DEFINITIONS_MODULE
    ini = tool["pytest"]["ini_options"]
    assert ini["testpaths"] == ["pipeline_tests"]
    declared = {m.split(":")[0] for m in ini["markers"]}
    assert {"slow", "db", "cluster", "s3", "e2e"} <= declared


def _setup_py_versions() -> tuple[str, str]:
    text = (REPO / "setup.py").read_text(encoding="utf-8")
    core = re.search(r'^DAGSTER_VERSION = "([^"]+)"', text, re.M)
    libs = re.search(r'^DAGSTER_LIBS_VERSION = "([^"]+)"', text, re.M)
    assert core and libs
    return core.group(1), libs.group(1)


def test_dagster_pins_match_installed_and_helm_chart():
    from importlib.metadata import version

    core, libs = _setup_py_versions()
    assert version("dagster") == core
    for lib in ("dagster-webserver", "dagster-graphql"):
        assert version(lib) == core, lib
    for lib in ("dagster-aws", "dagster-postgres", "dagster-k8s"):
        assert version(lib) == libs, lib
    # The chart version equals the Dagster version; the README pins it on every helm command.
    readme = HELM_README.read_text(encoding="utf-8")
    pins = set(re.findall(r"--version\s+(\S+)", readme))
    assert pins == {core}
    assert f"chart version {core}" in HELM_VALUES.read_text(encoding="utf-8")


# =====================================================================================================
# Helm values: offline JSON-schema validation
# =====================================================================================================

# The vendored schema predates the chart's top-level `concurrency` block (helm/README.md). This mirrors
# the chart's model for it (schema/charts/dagster/subschema/concurrency.py: every model extra="forbid").
_TAG_LIMIT = {
    "type": "object",
    "properties": {
        "key": {"type": "string"},
        "value": {"anyOf": [{"type": "string"}, {"type": "object"}, {"type": "null"}]},
        "limit": {"type": "integer"},
    },
    "required": ["key", "limit"],
    "additionalProperties": False,
}
CONCURRENCY_SCHEMA = {
    "type": "object",
    "properties": {
        "enabled": {"type": "boolean"},
        "pools": {
            "type": "object",
            "properties": {
                "defaultLimit": {"type": ["integer", "null"]},
                "granularity": {"enum": ["op", "run", None]},
                "opGranularityRunBuffer": {"type": ["integer", "null"]},
            },
            "additionalProperties": False,
        },
        "runs": {
            "type": "object",
            "properties": {
                "maxConcurrentRuns": {"type": ["integer", "null"]},
                "tagConcurrencyLimits": {"type": "array", "items": _TAG_LIMIT},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
NEWER_TOP_LEVEL_KEYS = {"concurrency"}


def _strip_remote_refs(node: Any) -> Any:
    """Drop `$ref`s to kubernetesjsonschema.dev (unreachable offline; dagster#29629)."""
    if isinstance(node, dict):
        return {
            k: _strip_remote_refs(v)
            for k, v in node.items()
            if not (k == "$ref" and isinstance(v, str) and v.startswith("http"))
        }
    if isinstance(node, list):
        return [_strip_remote_refs(v) for v in node]
    return node


@functools.cache
def _schema(name: str) -> dict[str, Any]:
    with open(SCHEMA_DIR / name, encoding="utf-8") as f:
        return _strip_remote_refs(json.load(f))


@functools.cache
def _validator(name: str, definition: str | None = None, partial: bool = False) -> Draft7Validator:
    """Validator for the whole schema or one definition.

    ``partial``: our values file holds overrides only, and Helm merges maps with the chart defaults,
    which supply the keys each definition marks `required`. So partial mode drops the `required` list
    of every definition (and the root), but keeps `additionalProperties: false`, types and the
    type -> config conditionals. List items (e.g. user deployments) replace the defaults wholesale and
    must be validated with ``partial=False``.
    """
    schema = copy.deepcopy(_schema(name))
    if partial:
        schema.pop("required", None)
        for definition_schema in schema["definitions"].values():
            definition_schema.pop("required", None)
    if definition is not None:
        assert definition in schema["definitions"], definition
        schema = {"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]}
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def _errors(validator: Draft7Validator, instance: Any, where: str) -> list[str]:
    return [
        f"{where}/{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
    ]


def helm_values_errors(values: dict[str, Any]) -> list[str]:
    """Every problem the offline checks find in a values override file (empty list = valid)."""
    errors: list[str] = []
    main_props = _schema(MAIN_SCHEMA)["properties"]

    # 1. The whole file, in override (partial) mode.
    errors += _errors(_validator(MAIN_SCHEMA, partial=True), values, "values")

    # 2. The root schema is open (no additionalProperties: false): catch top-level typos ourselves.
    for key in values.keys() - main_props.keys() - NEWER_TOP_LEVEL_KEYS:
        errors.append(f"values/{key}: unknown top-level key")

    # 3. User deployments: list items are not merged with defaults, so validate them strictly, against
    #    the main chart's embedded definition and the subchart's own schema. UserDeployment is an
    #    open object in the schema, so reject unknown keys ourselves (Helm would silently ignore them).
    user = values.get("dagster-user-deployments") or {}
    for i, deployment in enumerate(user.get("deployments") or []):
        where = f"dagster-user-deployments/deployments/{i}"
        for schema_name in (MAIN_SCHEMA, SUBCHART_SCHEMA):
            errors += _errors(_validator(schema_name, "UserDeployment"), deployment, where)
            known = _schema(schema_name)["definitions"]["UserDeployment"]["properties"]
            for key in deployment.keys() - known.keys():
                errors.append(f"{where}/{key}: unknown key for UserDeployment ({schema_name})")

    # 4. Blocks we set completely are validated strictly too (required keys included).
    for key, definition in (("runLauncher", "RunLauncher"), ("computeLogManager", "ComputeLogManager")):
        if key in values:
            errors += _errors(_validator(MAIN_SCHEMA, definition), values[key], key)

    # 5. The newer `concurrency` block, and the chart's own `fail` on run limits set twice.
    concurrency = values.get("concurrency")
    if concurrency is not None:
        errors += _errors(Draft7Validator(CONCURRENCY_SCHEMA), concurrency, "concurrency")
        qrc = (((values.get("dagsterDaemon") or {}).get("runCoordinator") or {}).get("config") or {}).get(
            "queuedRunCoordinator"
        ) or {}
        runs = concurrency.get("runs") or {}
        if runs.get("maxConcurrentRuns") is not None and qrc.get("maxConcurrentRuns") is not None:
            errors.append("concurrency/runs/maxConcurrentRuns: also set in queuedRunCoordinator")
        if runs.get("tagConcurrencyLimits") and qrc.get("tagConcurrencyLimits"):
            errors.append("concurrency/runs/tagConcurrencyLimits: also set in queuedRunCoordinator")
    return errors


@pytest.fixture(scope="module")
def helm_values() -> dict[str, Any]:
    return _load_yaml(HELM_VALUES)


@pytest.mark.parametrize("name", sorted(VENDORED_SCHEMA_SHA256))
def test_vendored_schema_is_unmodified(name):
    digest = hashlib.sha256((SCHEMA_DIR / name).read_bytes()).hexdigest()
    assert digest == VENDORED_SCHEMA_SHA256[name]


def test_helm_values_validate_against_vendored_schema(helm_values):
    assert helm_values_errors(helm_values) == []


def test_helm_values_sub_blocks_validate(helm_values):
    """Each block we override, against its own definition (the same checks, spelled out)."""
    blocks = {
        "UserDeployments": helm_values["dagster-user-deployments"],
        "RunLauncher": helm_values["runLauncher"],
        "K8sRunLauncherConfig": helm_values["runLauncher"]["config"]["k8sRunLauncher"],
        "RunK8sConfig": helm_values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"],
        "PostgreSQL": helm_values["postgresql"],
        "Daemon": helm_values["dagsterDaemon"],
        "RunCoordinator": helm_values["dagsterDaemon"]["runCoordinator"],
        "ComputeLogManager": helm_values["computeLogManager"],
        "Webserver": helm_values["dagsterWebserver"],
        "Telemetry": helm_values["telemetry"],
    }
    complete = {"RunLauncher", "K8sRunLauncherConfig", "RunK8sConfig", "RunCoordinator",
                "ComputeLogManager", "Telemetry"}  # fmt: skip
    for definition, block in blocks.items():
        partial = definition not in complete
        assert _errors(_validator(MAIN_SCHEMA, definition, partial), block, definition) == []


_MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "k8s-launcher-typo": (
        lambda v: v["runLauncher"]["config"]["k8sRunLauncher"].__setitem__("jobNamespce", "x"),
        "jobNamespce",
    ),
    "launcher-config-missing": (
        lambda v: v["runLauncher"]["config"].pop("k8sRunLauncher"),
        "'k8sRunLauncher' is a required property",
    ),
    "run-k8s-config-typo": (
        lambda v: v["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"].__setitem__("containerConfg", {}),
        "containerConfg",
    ),
    "daemon-typo": (lambda v: v["dagsterDaemon"].__setitem__("runRetry", {}), "runRetry"),
    "compute-log-typo": (
        lambda v: v["computeLogManager"]["config"].__setitem__(
            "s3ComputeLogManger", v["computeLogManager"]["config"].pop("s3ComputeLogManager")
        ),
        "s3ComputeLogManger",
    ),
    "postgres-port-type": (
        lambda v: v["postgresql"]["service"].__setitem__("port", "5432"),
        "is not of type 'integer'",
    ),
    "telemetry-typo": (lambda v: v["telemetry"].__setitem__("enable", False), "enable"),
    "top-level-typo": (lambda v: v.__setitem__("runLauncer", v["runLauncher"]), "runLauncer"),
    "deployment-unknown-key": (
        lambda v: v["dagster-user-deployments"]["deployments"][0].__setitem__("codeServerArg", []),
        "codeServerArg",
    ),
    "deployment-missing-image": (
        lambda v: v["dagster-user-deployments"]["deployments"][0].pop("image"),
        "'image' is a required property",
    ),
    "deployment-port-type": (
        lambda v: v["dagster-user-deployments"]["deployments"][0].__setitem__("port", "3030"),
        "is not of type 'integer'",
    ),
    "concurrency-typo": (
        lambda v: v["concurrency"]["pools"].__setitem__("defaultLimt", 2),
        "defaultLimt",
    ),
    "run-limits-twice": (
        lambda v: v["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"].__setitem__(
            "maxConcurrentRuns", 5
        ),
        "also set in queuedRunCoordinator",
    ),
}


@pytest.mark.parametrize("case", sorted(_MUTATIONS))
def test_helm_validation_rejects_mistakes(helm_values, case):
    mutate, expected = _MUTATIONS[case]
    values = copy.deepcopy(helm_values)
    mutate(values)
    errors = helm_values_errors(values)
    assert errors, f"{case}: mistake not detected"
    assert any(expected in e for e in errors), errors


def _module_from_args(args: list[str]) -> str | None:
    for flag in ("-m", "--module-name"):
        if flag in args:
            return args[args.index(flag) + 1]
    return None


def test_helm_user_deployment_runs_definitions_module(helm_values):
    user = helm_values["dagster-user-deployments"]
    assert user["enabled"] is True and user["enableSubchart"] is True  # topology A
    [deployment] = user["deployments"]
    assert deployment["name"] == "geopump"
    assert deployment["image"]["repository"] == "ghcr.io/geopump/geopump"
    args = deployment.get("codeServerArgs") or deployment.get("dagsterApiGrpcArgs")
    assert _module_from_args(args) == DEFINITIONS_MODULE
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True

    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["GEOPUMP_STORAGE_URL"].startswith("s3://")
    assert re.fullmatch(r"tcp://[a-z0-9.-]+:\d+", env["DASK_SCHEDULER_ADDRESS"])
    assert {"name": "geopump-env"} in deployment["envSecrets"]


def test_helm_instance_settings(helm_values):
    pg = helm_values["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlScheme"] == "postgresql+psycopg2"
    assert helm_values["generatePostgresqlPasswordSecret"] is False
    daemon = helm_values["dagsterDaemon"]
    assert daemon["runRetries"]["enabled"] is True and daemon["runRetries"]["maxRetries"] == 2
    assert daemon["runMonitoring"]["enabled"] is True
    assert helm_values["runLauncher"]["type"] == "K8sRunLauncher"
    assert helm_values["computeLogManager"]["type"] == "S3ComputeLogManager"
    assert helm_values["telemetry"]["enabled"] is False


def test_helm_k8s_objects_parse_as_kubernetes_models(helm_values):
    """The schema's Kubernetes sub-objects are loose offline (remote refs stripped): parse them with
    the Kubernetes client models instead, which reject unknown fields."""
    import kubernetes.client as k8s
    from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict

    def parse(model, data):
        return k8s_model_from_dict(model, k8s_snake_case_dict(model, data))

    deployment = helm_values["dagster-user-deployments"]["deployments"][0]
    launcher = helm_values["runLauncher"]["config"]["k8sRunLauncher"]
    for item in deployment["env"]:
        parse(k8s.V1EnvVar, item)
    for item in deployment["envSecrets"] + launcher["envSecrets"]:
        parse(k8s.V1SecretEnvSource, item)
    resources = parse(k8s.V1ResourceRequirements, deployment["resources"])
    assert resources.requests["memory"] == "1Gi"

    with pytest.raises(Exception, match="valu"):
        parse(k8s.V1EnvVar, {"name": "X", "valu": "typo"})
    with pytest.raises(Exception, match="request"):
        parse(k8s.V1ResourceRequirements, {"request": {"cpu": "1"}})


# =====================================================================================================
# Helm values -> the chart's rendered dagster.yaml, checked with Dagster's own config types
# =====================================================================================================


def _secret_names(items: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in items if "name" in item]


def _image_name(image: dict[str, Any]) -> str:
    return f"{image['repository']}:{image['tag']}"


# helm key -> (K8sRunLauncher field, how the chart renders the value). An unmapped key fails the test,
# so a new key in values.yaml forces a look at how the chart renders it.
_K8S_LAUNCHER_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "image": ("job_image", _image_name),
    "imagePullPolicy": ("image_pull_policy", lambda v: v),
    "jobNamespace": ("job_namespace", lambda v: v),
    "loadInclusterConfig": ("load_incluster_config", lambda v: v),
    "kubeconfigFile": ("kubeconfig_file", lambda v: v),
    "envConfigMaps": ("env_config_maps", _secret_names),
    "envSecrets": ("env_secrets", _secret_names),
    "envVars": ("env_vars", lambda v: v),
    "volumeMounts": ("volume_mounts", lambda v: v),
    "volumes": ("volumes", lambda v: v),
    "labels": ("labels", lambda v: v),
    "resources": ("resources", lambda v: v),
    "failPodOnRunFailure": ("fail_pod_on_run_failure", lambda v: v),
    "schedulerName": ("scheduler_name", lambda v: v),
    "securityContext": ("security_context", lambda v: v),
    "runK8sConfig": ("run_k8s_config", _snake_keys),
}


def render_k8s_run_launcher(values: dict[str, Any]) -> dict[str, Any]:
    """runLauncher.config.k8sRunLauncher -> the K8sRunLauncher config the chart writes."""
    helm = values["runLauncher"]["config"]["k8sRunLauncher"]
    unknown = helm.keys() - _K8S_LAUNCHER_FIELDS.keys()
    assert not unknown, f"no rendering rule for k8sRunLauncher keys {unknown}"
    config: dict[str, Any] = {}
    for key, value in helm.items():
        field, render = _K8S_LAUNCHER_FIELDS[key]
        if value in (None, "", [], {}):  # the chart omits empty values
            continue
        config[field] = render(value)
    # Supplied by the chart itself (release "geopump" -> fullname "geopump-dagster").
    config.setdefault("job_namespace", NAMESPACE)
    config["service_account_name"] = f"{RELEASE}-dagster"
    config["dagster_home"] = "/opt/dagster/dagster_home"
    config["instance_config_map"] = f"{RELEASE}-dagster-instance"
    config["postgres_password_secret"] = "dagster-postgresql-secret"
    return config


def render_instance(values: dict[str, Any]) -> dict[str, Any]:
    """The parts of the chart's dagster.yaml ConfigMap that values.yaml influences."""
    pg = values["postgresql"]
    postgres_db = {
        "username": pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg["postgresqlHost"],
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
        "params": pg.get("postgresqlParams") or {},
        "scheme": pg["postgresqlScheme"],
    }
    storage = {
        key: {"module": module, "class": cls, "config": {"postgres_db": postgres_db}}
        for key, module, cls in (
            ("run_storage", "dagster_postgres.run_storage", "PostgresRunStorage"),
            ("event_log_storage", "dagster_postgres.event_log", "PostgresEventLogStorage"),
            ("schedule_storage", "dagster_postgres.schedule_storage", "PostgresScheduleStorage"),
        )
    }
    daemon = values["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    qrc = coordinator["config"].get("queuedRunCoordinator") or {}
    s3 = values["computeLogManager"]["config"]["s3ComputeLogManager"]
    retries = daemon["runRetries"]
    instance: dict[str, Any] = {
        **storage,
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": _snake_keys(qrc),
        },
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": render_k8s_run_launcher(values),
        },
        "compute_logs": {
            "module": "dagster_aws.s3.compute_log_manager",
            "class": "S3ComputeLogManager",
            "config": _snake_keys(s3),
        },
        "run_monitoring": _snake_keys(daemon["runMonitoring"]),
        "run_retries": _snake_keys(retries),
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }
    concurrency = values.get("concurrency") or {}
    if concurrency.get("enabled"):
        rendered: dict[str, Any] = {}
        pools = {k: v for k, v in (concurrency.get("pools") or {}).items() if v is not None}
        if pools:
            rendered["pools"] = _snake_keys(pools)
        runs = concurrency.get("runs") or {}
        rendered_runs: dict[str, Any] = {}
        if runs.get("maxConcurrentRuns") is not None:
            rendered_runs["max_concurrent_runs"] = runs["maxConcurrentRuns"]
        if runs.get("tagConcurrencyLimits"):
            rendered_runs["tag_concurrency_limits"] = runs["tagConcurrencyLimits"]
        if rendered_runs:
            rendered["runs"] = rendered_runs
        instance["concurrency"] = rendered
    return instance


def _class_config_errors(instance: dict[str, Any]) -> dict[str, list[str]]:
    """process_config each configurable class entry with the class's own config type."""
    errors = {}
    for key, entry in instance.items():
        if not (isinstance(entry, dict) and "module" in entry and "class" in entry):
            continue
        cls = getattr(importlib.import_module(entry["module"]), entry["class"])
        result = process_config(cls.config_type(), entry.get("config") or {})
        if not result.success:
            errors[key] = [e.message for e in result.errors]
    return errors


def test_rendered_instance_validates_with_dagster_types(tmp_path, monkeypatch, helm_values):
    # In the pods this comes from the Secret dagster-postgresql-secret; process_config resolves it.
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "from-secret")
    instance = render_instance(helm_values)
    config, _ = dagster_instance_config(str(_write_instance(tmp_path, instance)))
    assert _class_config_errors(instance) == {}

    assert config["run_retries"] == {
        "enabled": True,
        "max_retries": 2,
        "retry_on_asset_or_op_failure": False,
    }
    assert config["run_monitoring"]["enabled"] is True
    assert config["concurrency"]["pools"] == {"default_limit": 1, "granularity": "op"}
    assert config["run_storage"]["config"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert config["compute_logs"]["config"]["bucket"]
    assert config["telemetry"] == {"enabled": False}


def test_rendered_instance_rejects_run_limits_twice(tmp_path, helm_values):
    values = copy.deepcopy(helm_values)
    values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] = 5
    with pytest.raises(DagsterInvalidConfigError, match="incompatible with the `concurrency > runs`"):
        dagster_instance_config(str(_write_instance(tmp_path, render_instance(values))))


def test_k8s_run_launcher_config_and_run_pod(helm_values):
    """The launcher config passes K8sRunLauncher's config type, and the run pod Job that dagster-k8s
    builds from it carries our resources, TTL and secrets."""
    from dagster_k8s import K8sRunLauncher
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
    )

    config = render_k8s_run_launcher(helm_values)
    result = process_config(K8sRunLauncher.config_type(), config)
    assert result.success, [e.message for e in result.errors]
    processed = result.value
    assert processed["env_secrets"] == ["geopump-env"]
    assert processed["load_incluster_config"] is True

    # Raises on fields unknown to V1Container / V1JobSpec etc.
    user_k8s = UserDefinedDagsterK8sConfig.from_dict(processed["run_k8s_config"])
    job_config = DagsterK8sJobConfig(
        job_image="ghcr.io/geopump/geopump:0.1.0",
        dagster_home=processed["dagster_home"],
        image_pull_policy=processed["image_pull_policy"],
        service_account_name=processed["service_account_name"],
        instance_config_map=processed["instance_config_map"],
        postgres_password_secret=processed["postgres_password_secret"],
        env_secrets=processed["env_secrets"],
    )
    job = construct_dagster_k8s_job(job_config, ["dagster", "api", "execute_run", "{}"], "dagster-run-test", user_k8s)
    container = job.spec.template.spec.containers[0]
    assert container.resources.requests == {"cpu": "2", "memory": "8Gi"}
    assert container.resources.limits == {"memory": "8Gi"}
    assert job.spec.ttl_seconds_after_finished == 7200
    secret_refs = [s.secret_ref.name for s in container.env_from if s.secret_ref]
    assert "geopump-env" in secret_refs


def test_k8s_run_launcher_config_rejects_typos(helm_values):
    from dagster_k8s import K8sRunLauncher
    from dagster_k8s.job import UserDefinedDagsterK8sConfig

    config = render_k8s_run_launcher(helm_values)
    config["job_namespce"] = config.pop("job_namespace")
    result = process_config(K8sRunLauncher.config_type(), config)
    assert not result.success
    assert "job_namespce" in result.errors[0].message

    with pytest.raises(Exception, match="resourcez"):
        UserDefinedDagsterK8sConfig.from_dict({"container_config": {"resourcez": {}}})

    values = copy.deepcopy(helm_values)
    values["runLauncher"]["config"]["k8sRunLauncher"]["someNewKey"] = True
    with pytest.raises(AssertionError, match="someNewKey"):
        render_k8s_run_launcher(values)
