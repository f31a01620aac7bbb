"""Every service of the registry has its Deployment in deploy/k8s, and every Deployment runs one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from services.hub.registry import REGISTRY
from tests.conftest import REPO

K8S = REPO / "deploy" / "k8s"


def _deployments() -> dict[str, list[str]]:
    """The `safetyhub run <service>` Deployments that kustomization.yaml applies, by service."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    found: dict[str, list[str]] = {}
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S / Path(resource)).read_text(encoding="utf-8")):
            if not isinstance(doc, dict) or doc.get("kind") != "Deployment":
                continue
            spec: Any = doc["spec"]["template"]["spec"]
            for container in spec["containers"]:
                command = container.get("command", [])
                if command[:2] == ["safetyhub", "run"]:
                    found.setdefault(command[2], []).append(doc["metadata"]["name"])
    return found


def test_every_registered_service_has_one_deployment_applied_by_the_kustomization() -> None:
    deployments = _deployments()
    missing = [name for name in REGISTRY.names if name not in deployments]
    assert not missing, f"no Deployment runs {missing}: add deploy/k8s/<service>-deployment.yaml"
    assert all(len(names) == 1 for names in deployments.values()), deployments


def test_every_deployment_runs_a_registered_service() -> None:
    assert set(_deployments()) <= set(REGISTRY.names)
