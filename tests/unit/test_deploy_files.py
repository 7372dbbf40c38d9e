"""The deployment files kept true, without an engine: the Dockerfile, both compose files,
the Kubernetes manifests and the Prometheus config, parsed and checked against the code
(config keys, ports, health paths) and the repository (every file they name exists)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from synctv_project import config as config_module
from synctv_project.config import SyncTVConfig, load_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
# Variables SyncTV reads that are not config keys (SPEC §2, cluster.node_id).
OTHER_SYNCTV_VARIABLES = {"NODE_NAME", config_module.CONFIG_PATH_VARIABLE}
SYNCTV_UID = 10001
CLUSTER_SERVICES = {
    "postgres",
    "redis",
    "migrate",
    "node1",
    "node2",
    "node3",
    "worker",
    "nginx",
    "prometheus",
}
NODE_SERVICES = ("node1", "node2", "node3")


def config_variables(model: type[BaseModel] = SyncTVConfig, prefix: str = "SYNCTV") -> set[str]:
    """Every `SYNCTV__SECTION__KEY` name the pydantic model accepts (aliases as written)."""
    names = set()
    for name, info in model.model_fields.items():
        variable = f"{prefix}__{(info.alias or name).upper()}"
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= config_variables(annotation, variable)
        else:
            names.add(variable)
    return names


VALID_VARIABLES = config_variables()


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) → object, for every manifest in deploy/k8s/."""
    objects = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_documents(path):
            if "metadata" in doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def assert_loads_as_config(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`env` names only real keys, and its values pass the config's own validation."""
    unknown = {name for name in env if name.startswith("SYNCTV__")} - VALID_VARIABLES
    assert not unknown, f"not config keys: {sorted(unknown)}"
    for name, value in env.items():
        if name.startswith("SYNCTV__"):
            # Compose interpolation (`${SYNCTV_SECRET_KEY:?...}`) is the operator's value.
            monkeypatch.setenv(name, re.sub(r"\$\{[^}]*\}", "operator-value", value))
    load_config()


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each Dockerfile line, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


# --- Dockerfile -----------------------------------------------------------------------


def test_dockerfile_runs_a_slim_python_as_a_fixed_non_root_user():
    stage = final_stage()
    assert stage[0] == ("FROM", "python:3.11-slim")
    users = [args for op, args in stage if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    created = " ".join(args for op, args in stage if op == "RUN")
    assert re.search(rf"useradd [^&]*--uid {SYNCTV_UID} [^&]*{users[-1]}\b", created), created


def test_dockerfile_checks_health_on_the_served_port_and_exposes_it():
    stage = dict(final_stage())
    assert "/health" in stage["HEALTHCHECK"]
    assert "127.0.0.1:8080/health" in stage["HEALTHCHECK"]
    assert stage["EXPOSE"] == "8080"
    assert SyncTVConfig().server.port == 8080


def test_dockerfile_copies_only_files_that_exist_and_sets_real_config_keys(monkeypatch):
    for op, args in dockerfile_instructions():
        if op == "COPY" and "--from=" not in args:
            *sources, _ = args.split()
            for source in sources:
                assert (REPO / source).exists(), source
        if op == "ENV":
            env = dict(pair.split("=", 1) for pair in shlex.split(args))
            assert_loads_as_config(env, monkeypatch)


# --- docker compose -------------------------------------------------------------------


def compose(name: str) -> dict[str, Any]:
    return load_yaml(DEPLOY / name)


def synctv_services(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in document["services"].items() if "build" in svc}


@pytest.mark.parametrize("name", ["docker-compose.single.yml", "docker-compose.cluster.yml"])
def test_compose_files_build_the_repository_and_mount_files_that_exist(name):
    document = compose(name)
    for service in synctv_services(document).values():
        assert (DEPLOY / service["build"] / "Dockerfile").is_file()
    for service_name, service in document["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{service_name}: {source}"
            else:
                assert source in document["volumes"], f"{service_name}: volume {source}"
        for dependency in service.get("depends_on", {}):
            assert dependency in document["services"], f"{service_name}: {dependency}"
        image = service.get("image", "synctv:latest")
        assert image == "synctv:latest" or re.fullmatch(r"[\w./-]+:[\w.-]+", image), image
        assert not image.endswith(":latest") or "build" in service, image


def test_single_node_compose_serves_8080_with_its_data_in_a_volume():
    service = compose("docker-compose.single.yml")["services"]["synctv"]
    assert service["ports"] == ["8080:8080"]
    assert any(volume.endswith(":/data") for volume in service["volumes"])


def test_cluster_compose_has_every_service_and_real_config_keys(monkeypatch):
    document = compose("docker-compose.cluster.yml")
    assert set(document["services"]) == CLUSTER_SERVICES
    assert set(synctv_services(document)) == CLUSTER_SERVICES - {
        "postgres",
        "redis",
        "nginx",
        "prometheus",
    }
    for name, service in synctv_services(document).items():
        with monkeypatch.context() as patch:
            assert_loads_as_config(service["environment"], patch)
        assert service["environment"]["SYNCTV__REDIS__URL"].startswith("redis://redis:")
        assert "@postgres:5432/" in service["environment"]["SYNCTV__DATABASE__URL"], name


def node_port(service: dict[str, Any]) -> int:
    command = service["command"]
    return int(command[command.index("--port") + 1])


def test_cluster_nodes_ports_match_their_healthchecks_nginx_and_prometheus():
    document = compose("docker-compose.cluster.yml")
    nginx = (DEPLOY / "nginx.conf").read_text()
    scraped = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"][0]
    targets = scraped["static_configs"][0]["targets"]
    expected_targets = []
    for name in NODE_SERVICES:
        service = document["services"][name]
        port = node_port(service)
        assert f"127.0.0.1:{port}/ready" in " ".join(service["healthcheck"]["test"])
        # nginx.conf names the nodes 127.0.0.1:808N; the compose file rewrites it to nodeN.
        assert f"127.0.0.1:{port}" in nginx
        assert f"{name}:{port}" == f"node{port - 8080}:{port}"
        expected_targets.append(f"{name}:{port}")
    assert targets == expected_targets
    assert scraped["metrics_path"] == "/metrics"


def test_cluster_prometheus_loads_the_deploy_config_and_rules():
    service = compose("docker-compose.cluster.yml")["services"]["prometheus"]
    mounts = dict(volume.split(":")[:2] for volume in service["volumes"])
    assert mounts["./prometheus"] == "/etc/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in service["command"]
    rules = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["rule_files"]
    assert rules and all((DEPLOY / "prometheus" / rule).is_file() for rule in rules)


# --- Kubernetes -----------------------------------------------------------------------


def node_deployment() -> dict[str, Any]:
    return k8s_objects()[("Deployment", "synctv-node")]


def test_kustomization_lists_manifests_that_exist_and_every_one_but_the_job():
    resources = load_yaml(K8S / "kustomization.yaml")["resources"]
    assert all((K8S / name).is_file() for name in resources)
    manifests = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(resources) == manifests - {"migrate-job.yaml"}


def test_k8s_node_probes_health_and_ready_on_the_served_port():
    pod = node_deployment()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    command = container["command"]
    assert ports["http"] == int(command[command.index("--port") + 1]) == 8080
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}


def test_k8s_node_pauses_before_sigterm_and_has_time_to_drain():
    pod = node_deployment()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    configmap = k8s_objects()[("ConfigMap", "synctv-config")]["data"]
    grace = int(configmap["SYNCTV__CLUSTER__SHUTDOWN_GRACE_SECS"])
    assert pod["terminationGracePeriodSeconds"] > int(pause[1]) + grace


def test_k8s_disruption_budget_covers_the_node_pods():
    objects = k8s_objects()
    budget = objects[("PodDisruptionBudget", "synctv-node")]
    selector = budget["spec"]["selector"]["matchLabels"]
    labels = node_deployment()["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] == 1
    service = objects[("Service", "synctv")]
    assert service["spec"]["selector"].items() <= labels.items()


def test_k8s_pods_run_the_image_as_its_non_root_user_with_the_shared_config(monkeypatch):
    objects = k8s_objects()
    settings_names = {"synctv-config", "synctv-secret"}
    for (kind, name), doc in objects.items():
        if kind not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": SYNCTV_UID}, name
        for container in pod["containers"]:
            assert container["image"] == "synctv:latest", name
            refs = {
                ref.get("configMapRef", ref.get("secretRef"))["name"]
                for ref in container["envFrom"]
            }
            assert refs == settings_names, name
            env_names = {entry["name"] for entry in container.get("env", [])}
            assert env_names <= OTHER_SYNCTV_VARIABLES | VALID_VARIABLES, name
    shared = {
        **objects[("ConfigMap", "synctv-config")]["data"],
        **objects[("Secret", "synctv-secret")]["stringData"],
    }
    assert_loads_as_config(shared, monkeypatch)


def test_the_config_walk_knows_nested_and_aliased_keys():
    assert "SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER" in VALID_VARIABLES
    assert "SYNCTV__CLUSTER__CONNECTION_LIMITS__GLOBAL" in VALID_VARIABLES
    assert "SYNCTV__METRICS__PER_ROOM_LABELS" in VALID_VARIABLES
    assert "SYNCTV__CLUSTER__CONNECTION_LIMITS" not in VALID_VARIABLES
