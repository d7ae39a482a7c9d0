"""What an install carries: dependencies, the image, the units' optional credentials,
and kustomize's rendering (the config's hash in the ConfigMap's name, the image)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
MANIFESTS = ROOT / "deploy" / "kubernetes"


def project() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0] for r in requirements}


def test_influxdb_client_is_for_the_tests_only_and_isal_is_installed_by_default() -> None:
    runtime = names(project()["dependencies"])
    assert "influxdb-client" not in runtime
    assert "influxdb-client" in names(project()["optional-dependencies"]["dev"])
    assert "isal" in runtime
    imports = [
        path
        for path in (ROOT / "collector").rglob("*.py")
        if re.search(r"^\s*(import|from) influxdb_client", path.read_text(), re.M)
    ]
    assert imports == []


def stages(text: str) -> list[str]:
    return re.findall(r"^FROM .*$", text, re.M)


def test_the_image_is_two_stages_and_runs_as_a_user() -> None:
    text = (ROOT / "Containerfile").read_text()
    assert len(stages(text)) == 2
    final = text.rsplit(stages(text)[1], 1)[1]
    assert "COPY --from=build /opt/gate-collector/venv /opt/gate-collector/venv" in final
    assert "pip install" not in final and "COPY . " not in final
    user = re.findall(r"^USER (\S+)", final, re.M)
    assert user and not user[-1].startswith(("0", "root"))


def test_build_output_and_local_state_never_reach_the_image() -> None:
    ignored = set((ROOT / ".containerignore").read_text().split())
    assert {".venv", ".git", "build", "dist", "*.egg-info", "**/__pycache__"} <= ignored


@pytest.mark.parametrize("name", ["gate-collector.service", "gate-collector@.service"])
def test_units_require_no_influx_credential_and_document_an_installed_file(name: str) -> None:
    text = (SYSTEMD / name).read_text()
    assert not re.search(r"^LoadCredential\w*=influx-", text, re.M)
    assert "Documentation=file:///usr/local/share/doc/gate-collector/README.md" in text
    assert (
        "install -D -m 0644 README.md /usr/local/share/doc/gate-collector/README.md"
        in (ROOT / "README.md").read_text()
    )


@pytest.mark.parametrize("credential", ["influx-password", "influx-token"])
def test_each_influx_credential_is_a_drop_in_of_its_own(credential: str) -> None:
    text = (SYSTEMD / f"{credential}.conf").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "[Service]",
        f"LoadCredentialEncrypted={credential}:/etc/gate-collector/credentials/{credential}.cred",
    ]


def kustomized(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl renders kustomizations offline (Debian: kubernetes-client)")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def mounted_config(docs: list[dict[str, Any]]) -> tuple[str, str]:
    [config] = [d for d in docs if d["kind"] == "ConfigMap"]
    [sts] = [d for d in docs if d["kind"] == "StatefulSet"]
    [volume] = [v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
    return config["metadata"]["name"], volume["configMap"]["name"]


def test_a_config_change_renames_the_configmap_the_pods_mount(tmp_path: Path) -> None:
    generated, mounted = mounted_config(kustomized(MANIFESTS))
    assert generated == mounted and generated.startswith("gate-collector-")
    copy = tmp_path / "kubernetes"
    shutil.copytree(MANIFESTS, copy)
    toml = copy / "collector.toml"
    toml.write_text(toml.read_text().replace("refresh_interval = 300", "refresh_interval = 600"))
    changed, mounted_after = mounted_config(kustomized(copy))
    assert changed == mounted_after != generated  # a new name: the StatefulSet rolls


def test_the_image_is_set_in_the_kustomization(tmp_path: Path) -> None:
    copy = tmp_path / "kubernetes"
    shutil.copytree(MANIFESTS, copy)
    kustomization = copy / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("newTag: 0.1.0", "newTag: 9.9.9"))
    [sts] = [d for d in kustomized(copy) if d["kind"] == "StatefulSet"]
    [container] = sts["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/example/gate-collector:9.9.9"
