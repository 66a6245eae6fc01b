"""The Kubernetes path, checked without a cluster or docker: backend config, Job template rendered by MLflow's
own functions into a valid Job, the docker_env view of MLproject, and the Dockerfile against the pins."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from mlflow.projects._project_spec import load_project

from abtest.config import PROJECT_DIR
from team import k8s

IMAGE = "registry.example.com/abtest/abtest-mlflow-movielens:abc1234"
DIGEST = "sha256:" + "0" * 64
RUN_ENV = {
    "MLFLOW_RUN_ID": "r" * 32,
    "MLFLOW_TRACKING_URI": "http://mlflow.mlflow.svc:5000",
    "MLFLOW_EXPERIMENT_ID": "1",
}


@pytest.fixture
def submission(tmp_path: Path) -> Path:
    return k8s.write_submission_project(tmp_path / "submission", IMAGE)


def test_backend_config_has_the_keys_mlflow_requires() -> None:
    config = k8s.load_backend_config()
    assert set(config) >= {"kube-job-template-path", "repository-uri"}
    assert config["kube-job-template-path"] == "team/kubernetes/job-template.yaml"


def test_backend_config_without_repository_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text('{"kube-job-template-path": "team/kubernetes/job-template.yaml"}')
    with pytest.raises(ValueError, match=r"missing \['repository-uri'\]"):
        k8s.load_backend_config(bad)


def test_submission_project_is_the_same_project_with_docker_env(submission: Path) -> None:
    original = load_project(str(PROJECT_DIR))
    docker = load_project(str(submission))
    assert docker.docker_env == {"image": IMAGE}
    assert docker.name == original.name
    assert sorted(docker._entry_points) == sorted(original._entry_points)
    for name, entry in original._entry_points.items():
        assert docker._entry_points[name].command == entry.command
        assert {k: (p.type, p.default) for k, p in docker._entry_points[name].parameters.items()} == {
            k: (p.type, p.default) for k, p in entry.parameters.items()
        }


def test_docker_env_rewrite_rejects_a_bad_image() -> None:
    with pytest.raises(ValueError, match="image must be"):
        k8s.docker_env_mlproject("python_env: python_env.yaml\n", "has space:1")


@pytest.mark.parametrize("entry_point", ["prepare", "main"])
def test_template_renders_into_a_valid_job(submission: Path, entry_point: str) -> None:
    manifest = k8s.render_job_manifest(
        submission,
        entry_point,
        {"dataset": "ml-1m"},
        backend_config=k8s.load_backend_config(),
        image_tag=IMAGE,
        image_digest=DIGEST,
        env_vars=RUN_ENV,
    )
    assert k8s.job_manifest_problems(manifest) == []
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"{IMAGE}@{DIGEST}"
    assert container["name"] == "abtest-mlflow-movielens"
    assert re.fullmatch(r"abtest-mlflow-movielens-[0-9-]+", manifest["metadata"]["name"])
    assert container["command"][:3] == ["python", "-m", f"steps.{entry_point}"]
    assert container["command"][container["command"].index("--dataset") + 1] == "ml-1m"
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["MLFLOW_RUN_ID"] == RUN_ENV["MLFLOW_RUN_ID"]
    assert env["MLFLOW_TRACKING_URI"] == RUN_ENV["MLFLOW_TRACKING_URI"]
    assert "MLFLOW_TRACKING_PASSWORD" in env  # from the Secret, not a literal
    assert env["MLFLOW_TRACKING_PASSWORD"] is None


def test_manifest_checks_catch_what_the_api_server_would_reject(submission: Path) -> None:
    good = k8s.render_job_manifest(
        submission, "prepare", {}, backend_config=k8s.load_backend_config(), image_tag=IMAGE,
        image_digest=DIGEST, env_vars=RUN_ENV,
    )  # fmt: skip
    bad = copy.deepcopy(good)
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    bad["metadata"]["name"] = "Abtest_" + "x" * 70
    del bad["spec"]["template"]["spec"]["containers"][0]["env"][-1]
    problems = " | ".join(k8s.job_manifest_problems(bad))
    assert "restartPolicy must be Never or OnFailure, got 'Always'" in problems
    assert "DNS-1123" in problems
    assert "lacks MLFLOW_EXPERIMENT_ID" in problems


def test_submit_command_runs_main_locally_inside_the_pod(submission: Path) -> None:
    command = k8s.submit_command(submission)
    assert "--backend kubernetes --backend-config team/kubernetes/backend-config.json" in command
    assert "-P env_manager=local" in command


def test_dockerfile_matches_the_pins_and_copies_what_exists() -> None:
    dockerfile = (PROJECT_DIR / "team" / "Dockerfile").read_text()
    python = yaml.safe_load((PROJECT_DIR / "python_env.yaml").read_text())["python"]
    assert re.search(rf"^FROM python:{re.escape(python)}-slim", dockerfile, re.MULTILINE)
    assert "pip install -r requirements.txt" in dockerfile
    assert "WORKDIR /mlflow/projects/code" in dockerfile  # where MLflow's Kubernetes backend runs the command
    for line in re.findall(r"^COPY (.+)$", dockerfile, re.MULTILINE):
        for source in line.split()[:-1]:
            assert (PROJECT_DIR / source).exists(), f"Dockerfile copies {source}, which does not exist"
    # Every top-level package the project ships must be in the image, and let through by the build context filter.
    copied = {line.split()[0].rstrip("/") for line in re.findall(r"^COPY (.+)$", dockerfile, re.MULTILINE)}
    allowed = (PROJECT_DIR / "team" / "Dockerfile.dockerignore").read_text().splitlines()
    packages = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for package in (pattern.rstrip("*") for pattern in packages["find"]["include"]):
        assert package in copied, f"team/Dockerfile does not copy {package}/"
        assert f"!{package}/**" in allowed, f"team/Dockerfile.dockerignore filters out {package}/"
    template = yaml.safe_load((PROJECT_DIR / "team" / "kubernetes" / "job-template.yaml").read_text())
    user = re.search(r"^RUN useradd --uid (\d+)", dockerfile, re.MULTILINE).group(1)
    assert str(template["spec"]["template"]["spec"]["securityContext"]["runAsUser"]) == user
