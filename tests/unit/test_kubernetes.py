"""The Kubernetes manifests against Kubernetes' schemas, and the image's install step."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from collector.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes release still common in managed clusters and the newest known.
VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
CRDS = {"monitoring.coreos.com/v1"}  # the Prometheus Operator's: not in Kubernetes' schemas


def documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted(MANIFESTS.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def by_kind(kind: str) -> dict[str, Any]:
    [doc] = [doc for _, doc in documents() if doc["kind"] == kind]
    return doc


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("name", "doc"), documents(), ids=[n for n, _ in documents()])
def test_manifest_is_valid_kubernetes(name: str, doc: dict[str, Any], version: str) -> None:
    if doc["apiVersion"] in CRDS:
        assert doc["kind"] in ("ServiceMonitor", "PrometheusRule")
        return
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_a_misspelt_field_offline() -> None:
    broken = by_kind("StatefulSet")
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[1], strict=True)


def test_kustomization_lists_every_core_manifest() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    core = {n for n, d in documents() if d["apiVersion"] not in CRDS}
    assert set(kustomization["resources"]) == core


def container() -> dict[str, Any]:
    [only] = by_kind("StatefulSet")["spec"]["template"]["spec"]["containers"]
    return only


def shipped_config(tmp_path: Path, hostname: str) -> Settings:
    """The generated ConfigMap's collector.toml as a pod named ``hostname`` loads it."""
    path = tmp_path / "collector.toml"
    path.write_text((MANIFESTS / "collector.toml").read_text())
    return load_settings(path, {"HOSTNAME": hostname})


def test_the_shard_count_equals_the_replicas_and_the_ordinal_is_the_shard(
    tmp_path: Path,
) -> None:
    replicas = by_kind("StatefulSet")["spec"]["replicas"]
    last = shipped_config(tmp_path, f"gate-collector-{replicas - 1}")
    assert (last.accounts.shard_index, last.accounts.shard_count) == (replicas - 1, replicas)
    assert last.http.listen.endswith(":9108")


def test_probes_and_scrape_point_at_the_endpoint() -> None:
    c = container()
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    annotations = by_kind("StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9108"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_credentials_are_files_where_credentials_directory_points(tmp_path: Path) -> None:
    c = container()
    env = {e["name"]: e["value"] for e in c["env"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert env["CREDENTIALS_DIRECTORY"] == mounts["credentials"]
    volumes = {v["name"]: v for v in by_kind("StatefulSet")["spec"]["template"]["spec"]["volumes"]}
    assert "secret" in volumes["credentials"]
    state = shipped_config(tmp_path, "gate-collector-0").state.dir
    assert mounts["state"] == state
    claims = by_kind("StatefulSet")["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["state"]


def readme_install() -> list[str]:
    block = (ROOT / "README.md").read_text().split("### Install under systemd", 1)[1]
    return [
        line.split("#")[0].strip()
        for line in block.split("```")[1].splitlines()
        if "venv" in line and ("python3 -m venv" in line or "pip install" in line)
    ]


def containerfile_install() -> list[str]:
    text = (ROOT / "Containerfile").read_text().replace("\\\n", " ")
    runs = [line[len("RUN ") :] for line in text.splitlines() if line.startswith("RUN ")]
    commands = [re.sub(r"\s+", " ", c).strip() for run in runs for c in run.split("&&")]
    return [c for c in commands if "python3 -m venv" in c or "pip install" in c]


def test_the_image_installs_with_the_readmes_command() -> None:
    assert readme_install() == [
        "python3 -m venv /opt/gate-collector/venv",
        "/opt/gate-collector/venv/bin/pip install .",
    ]
    assert containerfile_install() == readme_install()
