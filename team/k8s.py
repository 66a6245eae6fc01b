"""Run the pipeline as a Kubernetes Job with ``mlflow run --backend kubernetes``.

MLflow's Kubernetes backend accepts only projects with a ``docker_env``; ours names ``python_env.yaml`` (and
MLflow refuses both at once). So the code and pinned environment travel in the project image (team/Dockerfile),
and the submission is a folder holding a docker_env view of the same MLproject - same entry points, parameters and
defaults, written once in the real MLproject. The Job runs the entry point's command in the image's copy of the
project, where main's nested steps use the real MLproject with ``env_manager=local``.

Inputs: the project image (pushed), team/kubernetes/backend-config.json, team/kubernetes/job-template.yaml.
Output: the submission folder, and the ``mlflow run`` command that submits the Job.

    python -m team.k8s --image registry.example.com/abtest/abtest-mlflow-movielens:abc1234 --out /tmp/abtest-k8s
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
BACKEND_CONFIG = PROJECT_DIR / "team" / "kubernetes" / "backend-config.json"
REQUIRED_BACKEND_KEYS: tuple[str, ...] = ("kube-job-template-path", "repository-uri")
OPTIONAL_BACKEND_KEYS: tuple[str, ...] = ("kube-context",)
# Kubernetes object names: RFC 1123 labels (container names) and subdomains (Job names, via the job-name label
# the controller puts on pods, also limited to 63 characters).
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ENV_LINE = re.compile(r"^python_env:.*$", re.MULTILINE)


def docker_env_mlproject(mlproject_text: str, image: str) -> str:
    """MLproject text with its ``python_env`` line replaced by a ``docker_env`` naming ``image``."""
    if not image or any(c.isspace() for c in image):
        raise ValueError(f"image must be a registry reference like repo/name:tag, got {image!r}")
    if len(_ENV_LINE.findall(mlproject_text)) != 1:
        raise ValueError("MLproject must have exactly one top-level `python_env:` line to replace")
    docker_env = f"docker_env:\n  image: {json.dumps(image)}"
    return _ENV_LINE.sub(lambda _: docker_env, mlproject_text, count=1)


def write_submission_project(destination: Path, image: str, *, project_dir: Path = PROJECT_DIR) -> Path:
    """A folder holding only the docker_env MLproject; ``mlflow run <folder> --backend kubernetes`` submits it."""
    destination.mkdir(parents=True, exist_ok=True)
    text = docker_env_mlproject((project_dir / "MLproject").read_text(), image)
    (destination / "MLproject").write_text(text)
    return destination


def load_backend_config(path: Path = BACKEND_CONFIG, *, cwd: Path = PROJECT_DIR) -> dict[str, Any]:
    """Read a backend config and check it the way MLflow will (template path resolved from ``cwd``)."""
    config = json.loads(path.read_text())
    unknown = sorted(set(config) - set(REQUIRED_BACKEND_KEYS) - set(OPTIONAL_BACKEND_KEYS))
    missing = [key for key in REQUIRED_BACKEND_KEYS if not config.get(key)]
    if missing or unknown:
        raise ValueError(
            f"backend config {path} must have non-empty {list(REQUIRED_BACKEND_KEYS)} and may have "
            f"{list(OPTIONAL_BACKEND_KEYS)}; missing {missing}, unknown {unknown}"
        )
    template = Path(config["kube-job-template-path"])
    if not (cwd / template).is_file():
        raise ValueError(f"kube-job-template-path {template} does not exist relative to {cwd}")
    return config


def render_job_manifest(
    submission_dir: Path,
    entry_point: str,
    parameters: Mapping[str, str],
    *,
    backend_config: Mapping[str, Any],
    image_tag: str,
    image_digest: str,
    env_vars: Mapping[str, str],
    cwd: Path = PROJECT_DIR,
) -> dict[str, Any]:
    """The Job MLflow would submit, built with MLflow's own functions (no cluster, no docker needed)."""
    from mlflow.projects import _parse_kubernetes_config
    from mlflow.projects import kubernetes as mlflow_kubernetes
    from mlflow.projects._project_spec import load_project
    from mlflow.projects.utils import get_entry_point_command

    project = load_project(str(submission_dir))
    config = dict(backend_config)
    config["kube-job-template-path"] = str(cwd / config["kube-job-template-path"])
    kube_config = _parse_kubernetes_config(config)
    command = get_entry_point_command(project, entry_point, dict(parameters), storage_dir=None)
    return mlflow_kubernetes._get_kubernetes_job_definition(
        project.name,
        image_tag,
        image_digest,
        mlflow_kubernetes._get_run_command(command),
        dict(env_vars),
        kube_config["kube-job-template"],
    )


def job_manifest_problems(manifest: Mapping[str, Any]) -> list[str]:
    """What would make the API server reject the Job, or run it differently from what we mean; [] = fine."""
    problems: list[str] = []
    if manifest.get("apiVersion") != "batch/v1" or manifest.get("kind") != "Job":
        problems.append(
            f"apiVersion/kind must be batch/v1 Job, got {manifest.get('apiVersion')}/{manifest.get('kind')}"
        )
    name = manifest.get("metadata", {}).get("name", "")
    if not DNS_LABEL.match(name):
        problems.append(f"metadata.name must be a DNS-1123 label of <= 63 characters, got {name!r} ({len(name)})")
    if not manifest.get("metadata", {}).get("namespace"):
        problems.append("metadata.namespace must be set (MLflow submits into it)")
    pod = manifest.get("spec", {}).get("template", {}).get("spec", {})
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append(f"a Job's restartPolicy must be Never or OnFailure, got {pod.get('restartPolicy')!r}")
    containers = pod.get("containers") or [{}]
    first = containers[0]
    if not DNS_LABEL.match(first.get("name", "")):
        problems.append(f"container name must be a DNS-1123 label, got {first.get('name')!r}")
    if "@" not in first.get("image", ""):
        problems.append(f"image must be pinned by digest (tag@sha256:...), got {first.get('image')!r}")
    command = first.get("command") or []
    if not command or not all(isinstance(part, str) for part in command):
        problems.append(f"command must be a non-empty list of strings, got {command!r}")
    env_names = [item.get("name") for item in first.get("env", [])]
    for needed in ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
        if needed not in env_names:
            problems.append(f"container env lacks {needed}")
    duplicated = sorted({n for n in env_names if env_names.count(n) > 1})
    if duplicated:
        problems.append(f"container env names repeat: {duplicated}")
    try:
        from kubernetes.client import ApiClient

        # The official client's models check required fields and types, as the API server's schema would.
        ApiClient()._ApiClient__deserialize(manifest, "V1Job")
    except (ValueError, TypeError) as exc:
        problems.append(f"not a valid V1Job: {exc}")
    return problems


def submit_command(
    submission_dir: Path, entry_point: str = "main", parameters: Mapping[str, str] | None = None
) -> str:
    """The shell command that submits ``entry_point`` as a Job (run from the repository root)."""
    parts = ["mlflow", "run", str(submission_dir), "-e", entry_point, "--backend", "kubernetes"]
    parts += ["--backend-config", str(BACKEND_CONFIG.relative_to(PROJECT_DIR))]
    # main's nested steps run inside the pod's image: no environment to build there.
    for key, value in {"env_manager": "local", **(parameters or {})}.items():
        parts += ["-P", f"{key}={value}"]
    return shlex.join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the submission folder for ``--image`` and print the command that submits the pipeline."""
    parser = argparse.ArgumentParser(prog="team.k8s", description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True, help="the pushed project image, e.g. registry/name:tag")
    parser.add_argument("--out", type=Path, default=Path("/tmp/abtest-k8s-project"))
    args = parser.parse_args(argv)
    load_backend_config()
    submission = write_submission_project(args.out, args.image)
    print(
        "# from the repository root, with kubectl's context set and docker logged in to the registry:\n"
        "export KUBE_MLFLOW_TRACKING_URI=http://mlflow.mlflow.svc.cluster.local:5000\n"
        + submit_command(submission)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
