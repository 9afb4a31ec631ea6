"""The Kubernetes manifests of k8s/: every kustomization builds, validates strictly and holds the cluster contract.

Builds each kustomization with ``kubectl kustomize`` in a temporary copy of k8s/ where the overlays' ``minio.env``,
``minio-root.env`` and ``grafana.env`` are copies of the shipped ``*.env.example`` files (the real files are gitignored and never
read here), validates every built object with kubernetes-validate (strict, Kubernetes ``K8S_VERSION``, the version
k8s/README.md names) and checks security contexts, GPU limits, secret references, shared memory, scrape
annotations, Grafana/Prometheus wiring and that no credential is in plain text. PyTorchJob (kubeflow.org/v1) is a
CRD outside the schemas: its pod templates are validated as v1 PodTemplates and the rest is checked structurally.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evdet.model.config import list_experiments

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
EXPERIMENT_CONF = REPO / "packages/model/src/evdet/model/conf/experiment"
#: Kubernetes version the manifests are validated against (k8s/README.md names it).
K8S_VERSION = "1.32.0"
OVERLAYS = ("overlays/local", "overlays/gpu")
#: Every experiment config has its generated Job overlay k8s/training/<experiment>/ (tests/k8s/test_training_overlays.py).
EXPERIMENTS = tuple(list_experiments())
PYTORCHJOB = "training/pytorchjob"
MINIO_ENV = ("MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_SECURE")
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SECRETISH_NAME = re.compile(r"KEY|PASSWORD|SECRET|TOKEN|CREDENTIAL|ROOT_USER|ADMIN_USER", re.I)

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (needed for `kubectl kustomize`; "
                                "Debian: apt-get install kubectl; .ci/run installs it)")


#: The gitignored credential files each overlay's secretGenerators read (copies of k8s/<name>.example).
CREDENTIAL_FILES = ("minio.env", "minio-root.env", "grafana.env")


def _read_env_example(name: str) -> dict[str, str]:
    pairs = {}
    for line in (K8S / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _kustomize(root: Path, rel: str) -> list[dict]:
    proc = subprocess.run([KUBECTL, "kustomize", str(root / rel)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"kubectl kustomize k8s/{rel} failed:\n{proc.stderr}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of k8s/ whose overlays read the example credentials (never the user's real minio.env)."""
    root = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, root, ignore=shutil.ignore_patterns(*CREDENTIAL_FILES, "__pycache__"))
    for overlay in OVERLAYS:
        for name in CREDENTIAL_FILES:
            shutil.copy(root / f"{name}.example", root / overlay / name)
    return root


@pytest.fixture(scope="module")
def built(tree) -> dict[str, list[dict]]:
    """kustomization (relative to k8s/) -> its built objects."""
    rels = [*OVERLAYS, *(f"training/{e}" for e in EXPERIMENTS), PYTORCHJOB]
    return {rel: _kustomize(tree, rel) for rel in rels}


def _objects(built, rel, kind):
    return [o for o in built[rel] if o["kind"] == kind]


def _is_root_secret(name: str) -> bool:
    """The MinIO root Secret, whose generated name carries kustomize's content hash (rotation rolls MinIO)."""
    return name == "evdet-minio-root" or name.startswith("evdet-minio-root-")


def _one(built, rel, kind, name=None):
    found = [o for o in _objects(built, rel, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"k8s/{rel}: expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod_templates(obj: dict) -> list[tuple[str, dict]]:
    """(where, pod template) of a workload object; PyTorchJob: one per replica type."""
    kind = obj["kind"]
    if kind in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
        return [(f"{kind}/{obj['metadata']['name']}", obj["spec"]["template"])]
    if kind == "PyTorchJob":
        return [(f"PyTorchJob/{obj['metadata']['name']}/{replica}", spec["template"])
                for replica, spec in obj["spec"]["pytorchReplicaSpecs"].items()]
    return []


def _all_pod_templates(built):
    return [(rel, where, tpl) for rel, objs in built.items() for obj in objs for where, tpl in _pod_templates(obj)]


def _training_workloads(built):
    """(rel, workload, pod template) of every training Job / PyTorchJob replica."""
    out = [(f"training/{e}", _one(built, f"training/{e}", "Job")) for e in EXPERIMENTS]
    out.append((PYTORCHJOB, _one(built, PYTORCHJOB, "PyTorchJob")))
    return [(rel, obj, tpl) for rel, obj in out for _, tpl in _pod_templates(obj)]


# ------------------------------------------------------------------------------------------------ build + schema

def test_every_kustomization_builds_and_validates_strictly(built):
    import kubernetes_validate
    from kubernetes_validate.utils import ValidationError

    failures = []
    for rel, objs in built.items():
        assert objs, f"k8s/{rel} built no objects"
        for obj in objs:
            if obj["kind"] == "PyTorchJob":  # CRD: its pod templates are validated as v1 PodTemplates below
                docs = [{"apiVersion": "v1", "kind": "PodTemplate",
                         "metadata": {"name": f"{obj['metadata']['name']}-{replica.lower()}"}, "template": tpl}
                        for replica, tpl in ((r, s["template"])
                                             for r, s in obj["spec"]["pytorchReplicaSpecs"].items())]
            else:
                docs = [obj]
            for doc in docs:
                try:
                    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
                except ValidationError as err:
                    failures.append(f"k8s/{rel} {doc['kind']}/{doc['metadata']['name']}: {err}")
    assert not failures, "\n".join(failures)


def test_kubernetes_validate_cli_passes_on_gpu_overlay(built, tmp_path):
    """The README's check, as a user runs it: kubectl kustomize ... | kubernetes-validate --strict."""
    manifest = tmp_path / "gpu.yaml"
    manifest.write_text(yaml.safe_dump_all(built["overlays/gpu"]))
    cli = Path(sys.executable).with_name("kubernetes-validate")
    proc = subprocess.run([str(cli), "--strict", "--quiet", "-k", K8S_VERSION, str(manifest)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_overlay_without_minio_env_fails_naming_the_file(tree, tmp_path):
    broken = tmp_path / "k8s"
    shutil.copytree(tree, broken)
    (broken / "overlays/gpu/minio.env").unlink()
    proc = subprocess.run([KUBECTL, "kustomize", str(broken / "overlays/gpu")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "minio.env" in proc.stderr


def test_real_credential_files_are_gitignored():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for overlay in OVERLAYS:
        for name in CREDENTIAL_FILES:
            path = f"k8s/{overlay}/{name}"
            proc = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, capture_output=True)
            assert proc.returncode == 0, f"{path} is not gitignored"


# ---------------------------------------------------------------------------------------------- security

def test_every_pod_runs_non_root_with_restricted_security_context(built):
    for rel, where, tpl in _all_pod_templates(built):
        pod = tpl["spec"]
        psc = pod.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, f"k8s/{rel} {where}: pod securityContext.runAsNonRoot"
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"k8s/{rel} {where}: seccomp"
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c.get("securityContext", {})
            label = f"k8s/{rel} {where} container {c['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, f"{label}: allowPrivilegeEscalation"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{label}: capabilities.drop"
            assert sc.get("readOnlyRootFilesystem") is True, f"{label}: readOnlyRootFilesystem"
            assert sc.get("privileged") is not True, f"{label}: privileged"
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(part, {})), f"{label}: resources.{part} cpu and memory"


def test_namespace_enforces_restricted_pod_security(built):
    for rel in OVERLAYS:
        ns = _one(built, rel, "Namespace", "evdet")
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        for obj in built[rel]:
            if obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
                assert obj["metadata"].get("namespace") == "evdet", f"k8s/{rel} {obj['kind']} not in evdet"


def test_no_plain_text_credentials(built):
    examples = {k: v for name in CREDENTIAL_FILES for k, v in _read_env_example(f"{name}.example").items()}
    secret_values = [v for k, v in examples.items() if SECRETISH_NAME.search(k)]
    assert secret_values, "the example env files hold no credential to look for"
    needles = secret_values + [base64.b64encode(v.encode()).decode() for v in secret_values]
    # Built objects: the credentials exist only in the generated Secrets' data.
    for rel, objs in built.items():
        for obj in objs:
            if obj["kind"] == "Secret":
                assert "stringData" not in obj
                continue
            text = yaml.safe_dump(obj)
            for needle in needles:
                assert needle not in text, f"k8s/{rel} {obj['kind']}/{obj['metadata']['name']} holds a credential"
    # Every environment variable that looks like a credential comes from a Secret.
    for rel, where, tpl in _all_pod_templates(built):
        for c in tpl["spec"]["containers"]:
            for env in c.get("env", []):
                if SECRETISH_NAME.search(env["name"]):
                    assert "value" not in env and "secretKeyRef" in env.get("valueFrom", {}), \
                        f"k8s/{rel} {where}: env {env['name']} must come from a secretKeyRef"
    # Committed files: no Secret object, no example value outside *.example, no common secret pattern.
    patterns = [re.compile(p) for p in (r"AKIA[0-9A-Z]{16}", r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
                                        r"(?im)^\s*(stringData|password|secret_?key|access_?key)\s*:\s*\S",
                                        r"(?i)(MINIO_ROOT_PASSWORD|MINIO_SECRET_KEY)\s*=\s*\S")]
    for path in K8S.rglob("*"):
        if not path.is_file() or path.name.endswith(".example") or path.name in CREDENTIAL_FILES:
            continue
        text = path.read_text(errors="replace")
        for needle in secret_values:
            assert needle not in text, f"{path.relative_to(REPO)} holds the example credential {needle!r}"
        for pattern in patterns:
            assert not pattern.search(text), f"{path.relative_to(REPO)} matches secret pattern {pattern.pattern}"
        if path.suffix in (".yaml", ".yml"):
            for doc in yaml.safe_load_all(text):
                assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), \
                    f"{path.relative_to(REPO)}: commit no Secret; generate it from minio.env"


# ---------------------------------------------------------------------------------------------- MinIO

def test_minio_statefulset_secret_bucket_job_and_network_policy(built):
    rel = "overlays/gpu"
    secret = _one(built, rel, "Secret", "evdet-minio")
    assert set(secret["data"]) == set(MINIO_ENV), "Secret evdet-minio keys"
    sts = _one(built, rel, "StatefulSet", "minio")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Ti"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    (root,) = [o for o in _objects(built, rel, "Secret") if _is_root_secret(o["metadata"]["name"])]
    assert set(root["data"]) == {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
    assert env["MINIO_ROOT_USER"] == {"name": root["metadata"]["name"], "key": "MINIO_ROOT_USER"}
    assert env["MINIO_ROOT_PASSWORD"] == {"name": root["metadata"]["name"], "key": "MINIO_ROOT_PASSWORD"}
    _one(built, rel, "Service", "minio")
    job = _one(built, rel, "Job", "minio-buckets")
    script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "mc mb --ignore-existing" in script and "mc admin user add" in script
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    policy = _one(built, rel, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    allowed = peer["podSelector"]["matchLabels"]
    assert allowed == {"app.kubernetes.io/part-of": "evdet"}
    # The pods that talk to MinIO carry the admitted label.
    for _, _, tpl in _training_workloads(built):
        assert allowed.items() <= tpl["metadata"]["labels"].items()
    assert allowed.items() <= pod_labels.items()
    assert _one(built, "overlays/local", "StatefulSet", "minio")["spec"]["volumeClaimTemplates"][0]["spec"][
        "resources"]["requests"]["storage"] == "10Gi"


# ---------------------------------------------------------------------------------------------- monitoring

def _secret_and_configmap_names(objs):
    return ({o["metadata"]["name"] for o in objs if o["kind"] == "Secret"},
            {o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap"})


def test_every_secret_and_configmap_reference_resolves(built):
    for rel in OVERLAYS:
        secrets, configmaps = _secret_and_configmap_names(built[rel])
        data = {o["metadata"]["name"]: o["data"] for o in built[rel] if o["kind"] == "Secret"}
        for _, where, tpl in _all_pod_templates({rel: built[rel]}):
            for vol in tpl["spec"].get("volumes", []):
                if "configMap" in vol:
                    assert vol["configMap"]["name"] in configmaps, f"k8s/{rel} {where}: volume {vol['name']}"
            for c in tpl["spec"]["containers"]:
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["name"] in secrets and ref["key"] in data[ref["name"]], \
                            f"k8s/{rel} {where}: env {env['name']} -> {ref}"
    # Training manifests are built apart from the overlays: their Secret keys must exist in the overlay's Secret.
    minio_keys = set(_one(built, "overlays/gpu", "Secret", "evdet-minio")["data"])
    for rel, _, tpl in _training_workloads(built):
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in tpl["spec"]["containers"][0]["env"]
                if "valueFrom" in e}
        for name in MINIO_ENV:
            assert refs.get(name) == {"name": "evdet-minio", "key": name}, f"k8s/{rel}: env {name}"
            assert name in minio_keys


def test_prometheus_finds_training_pods_by_annotation(built, tmp_path):
    rel = "overlays/gpu"
    deploy = _one(built, rel, "Deployment", "prometheus")
    cm_name = next(v["configMap"]["name"] for v in deploy["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    config_text = _one(built, rel, "ConfigMap", cm_name)["data"]["prometheus.yml"]
    config = yaml.safe_load(config_text)
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    pods = jobs["evdet-training-pods"]
    assert pods["kubernetes_sd_configs"] == [{"role": "pod"}]
    keep = pods["relabel_configs"][0]
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    assert keep["action"] == "keep" and keep["regex"] == "true"
    assert jobs["pushgateway"]["honor_labels"] is True
    pushgateway = _one(built, rel, "Service", "pushgateway")
    assert jobs["pushgateway"]["static_configs"][0]["targets"] == [f"pushgateway:{pushgateway['spec']['ports'][0]['port']}"]
    # RBAC: the Prometheus ServiceAccount may list and watch pods cluster-wide.
    sa = deploy["spec"]["template"]["spec"]["serviceAccountName"]
    binding = _one(built, rel, "ClusterRoleBinding")
    assert {"kind": "ServiceAccount", "name": sa, "namespace": "evdet"} in binding["subjects"]
    role = _one(built, rel, "ClusterRole", binding["roleRef"]["name"])
    assert any("pods" in r["resources"] and {"list", "watch"} <= set(r["verbs"]) for r in role["rules"])
    promtool = shutil.which("promtool")
    if promtool:
        # Debian's Prometheus is built without Kubernetes service discovery: promtool checks the rest of the
        # file (relabel regexes, fields) with the pod discovery swapped for an empty static target list.
        for job in config["scrape_configs"]:
            if job.pop("kubernetes_sd_configs", None) is not None:
                job["static_configs"] = [{"targets": []}]
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        proc = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_grafana_provisions_datasource_and_every_generated_dashboard(built):
    rel = "overlays/gpu"
    deploy = _one(built, rel, "Deployment", "grafana")
    pod = deploy["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    cms = {o["metadata"]["name"]: o for o in built[rel] if o["kind"] == "ConfigMap"}

    def mounted(path):
        (name,) = [n for n, p in mounts.items() if p == path]
        return cms[volumes[name]["configMap"]["name"]]["data"]

    datasources = mounted("/etc/grafana/provisioning/datasources")
    (ds,) = yaml.safe_load(next(iter(datasources.values())))["datasources"]
    prometheus = _one(built, rel, "Service", "prometheus")
    assert ds["type"] == "prometheus" and ds["url"] == f"http://prometheus:{prometheus['spec']['ports'][0]['port']}"
    providers = yaml.safe_load(next(iter(mounted("/etc/grafana/provisioning/dashboards").values())))["providers"]
    dashboards = mounted(providers[0]["options"]["path"])
    committed = {p.name for p in (K8S / "grafana/dashboards").glob("*.json")}
    assert committed and set(dashboards) == committed, "k8s/grafana/kustomization.yaml must list every dashboard"


# ---------------------------------------------------------------------------------------------- training

def test_one_training_job_per_experiment(built):
    assert {p.stem for p in EXPERIMENT_CONF.glob("*.yaml")} >= set(EXPERIMENTS)
    names = set()
    for exp in EXPERIMENTS:
        rel = f"training/{exp}"
        assert len(built[rel]) == 1, f"k8s/{rel} must hold only its Job"
        job = _one(built, rel, "Job")
        name = job["metadata"]["name"]
        assert DNS1123.match(name) and len(name) <= 63, f"k8s/{rel}: Job name {name!r}"
        names.add(name)
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["evdet-train"]
        assert container["args"][0] == f"+experiment={exp}"
        assert sum(a.startswith("+experiment=") for a in container["args"]) == 1
        assert any(a.startswith("output.store=s3://evdet") for a in container["args"])
        assert any(a.startswith("metrics.pushgateway=http://pushgateway.") for a in container["args"])
        assert job["spec"]["template"]["metadata"]["labels"]["evdet/experiment"] == exp
        assert job["spec"]["backoffLimit"] >= 1
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert len(names) == len(EXPERIMENTS)


def test_training_pods_gpu_shm_annotations_and_grace_period(built):
    for rel, obj, tpl in _training_workloads(built):
        pod = tpl["spec"]
        (container,) = pod["containers"]
        gpus = container["resources"]["limits"]["nvidia.com/gpu"]
        assert int(gpus) >= 1, f"k8s/{rel}: nvidia.com/gpu limit"
        assert container["resources"]["requests"].get("nvidia.com/gpu", gpus) == gpus
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert pod["terminationGracePeriodSeconds"] >= 300
        shm = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        assert len(shm) == 1, f"k8s/{rel}: /dev/shm mount"
        (vol,) = [v for v in pod["volumes"] if v["name"] == shm[0]]
        assert vol["emptyDir"]["medium"] == "Memory" and vol["emptyDir"]["sizeLimit"], f"k8s/{rel}: shm emptyDir"
        ann = tpl["metadata"]["annotations"]
        assert ann == {"prometheus.io/scrape": "true", "prometheus.io/port": "8000", "prometheus.io/path": "/metrics"}
        ports = {p["containerPort"] for p in container["ports"]}
        assert 8000 in ports
        assert obj["metadata"]["namespace"] == "evdet"


def test_pytorchjob_is_a_multinode_torchrun_job(built):
    job = _one(built, PYTORCHJOB, "PyTorchJob")
    assert job["apiVersion"] == "kubeflow.org/v1"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"}
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] >= 1
    nproc = int(job["spec"]["nprocPerNode"])
    nodes = replicas["Master"]["replicas"] + replicas["Worker"]["replicas"]
    assert job["spec"]["runPolicy"]["backoffLimit"] >= 1
    for replica, spec in replicas.items():
        assert spec["restartPolicy"] == "OnFailure"
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == "pytorch", "the Training Operator requires the container name pytorch"
        assert container["image"].split("/")[-1].split(":")[0] == "evdet-model"
        assert container["command"] == ["torchrun", "--no-python", "evdet-train"]
        args = container["args"]
        assert args[0].startswith("+experiment=") and (EXPERIMENT_CONF / f"{args[0].split('=')[1]}.yaml").is_file()
        assert f"hardware.devices={nproc}" in args and f"hardware.num_nodes={nodes}" in args and "resume=auto" in args
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == nproc
        metrics_ports = sorted(p["containerPort"] for p in container["ports"] if p["name"].startswith("metrics"))
        assert metrics_ports == [8000 + rank for rank in range(nproc)], f"{replica}: one metrics port per rank"
    assert replicas["Master"]["template"] == replicas["Worker"]["template"]


def test_manifests_agree_with_kubeflow_pipeline_settings(built):
    """pipelines/pipeline_builder.py CLUSTER and k8s/ name the same Secret, keys, GPU placement and metrics port."""
    sys.path.insert(0, str(REPO / "pipelines"))
    try:
        cluster = __import__("pipeline_builder").CLUSTER
    finally:
        sys.path.remove(str(REPO / "pipelines"))
    secret = _one(built, "overlays/gpu", "Secret", cluster["minio_secret"])
    assert set(cluster["minio_env"]) <= set(secret["data"])
    job = _one(built, f"training/{EXPERIMENTS[0]}", "Job")
    pod = job["spec"]["template"]["spec"]
    key, value = cluster["gpu_node_selector"]
    assert pod["nodeSelector"] == {key: value}
    assert cluster["gpu_toleration"] in pod["tolerations"]
    assert job["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == cluster["metrics_port"]
    assert cluster["gpu_resource"] in pod["containers"][0]["resources"]["limits"]


# ---------------------------------------------------------------------------------------------- least privilege

def test_only_minio_and_the_bucket_job_read_the_root_credentials(built):
    readers = set()
    for rel, where, tpl in _all_pod_templates(built):
        for c in tpl["spec"]["containers"] + tpl["spec"].get("initContainers", []):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef", {})
                if _is_root_secret(ref.get("name", "")):
                    readers.add(where)
    assert readers == {"StatefulSet/minio", "Job/minio-buckets"}, readers
    for rel, _, tpl in _training_workloads(built):  # training pods: the application user only
        for env in tpl["spec"]["containers"][0].get("env", []):
            assert not _is_root_secret(env.get("valueFrom", {}).get("secretKeyRef", {}).get("name", "")), rel


def test_bucket_job_creates_a_bucket_scoped_user(built, tmp_path):
    """Run the Job's script with a stand-in for mc: the policy allows the evdet bucket and nothing else, and the
    application user (evdet-minio) gets it; an application user equal to the root user is refused."""
    job = _one(built, "overlays/gpu", "Job", "minio-buckets")
    container = job["spec"]["template"]["spec"]["containers"][0]
    script = container["args"][0].replace("/tmp/", f"{tmp_path}/")
    env_values = {e["name"]: e.get("value") for e in container["env"]}
    calls = tmp_path / "mc.log"
    stub = f'mc() {{ echo "$*" >> {calls}; }}\n'
    env = {"PATH": "/usr/bin:/bin", "BUCKETS": env_values["BUCKETS"], "POLICY": env_values["POLICY"],
           "MINIO_ENDPOINT": "minio:9000", "MINIO_SECURE": "false", "MINIO_ROOT_USER": "root-user",
           "MINIO_ROOT_PASSWORD": "root-pass-0123456789", "MINIO_ACCESS_KEY": "app-user",
           "MINIO_SECRET_KEY": "app-secret-0123456789"}
    proc = subprocess.run(["/bin/sh", "-ec", stub + script], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    policy = json.loads((tmp_path / "evdet-buckets-policy.json").read_text())
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Resource"]) == ["arn:aws:s3:::evdet", "arn:aws:s3:::evdet/*"]
    log = calls.read_text().splitlines()
    assert log[0].startswith("alias set root http://minio:9000 root-user ")
    assert "admin user add root app-user app-secret-0123456789" in log
    assert f"admin policy attach root {env_values['POLICY']} --user app-user" in log
    same = subprocess.run(["/bin/sh", "-ec", stub + script], env={**env, "MINIO_ACCESS_KEY": "root-user"},
                          capture_output=True, text=True, timeout=30)
    assert same.returncode == 2 and "equals the root user" in same.stderr
