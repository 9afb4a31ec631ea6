"""The scripts a user runs: no process is stopped by name, the test servers are provided in one place, and the
image's OCI source label carries no credentials."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [ROOT / ".ci" / "run", ROOT / "Makefile", ROOT / "tests" / "require_servers.sh",
           *sorted((ROOT / "docker").glob("*.sh"))]


def test_no_script_stops_processes_by_name():
    pattern = re.compile(r"\b(pkill|killall)\b|\bkill\s+-\d+\s+\$\(pgrep")
    for path in SCRIPTS:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.lstrip().startswith("#"):
                continue
            assert not pattern.search(line), f"{path.relative_to(ROOT)}:{number}: stops processes by name: {line}"


def test_make_test_provides_the_servers_first():
    dry = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    lines = [line for line in dry.stdout.splitlines() if line.strip()]
    servers = next(i for i, line in enumerate(lines) if "tests/require_servers.sh" in line)
    pytest_run = next(i for i, line in enumerate(lines) if "-m pytest tests" in line)
    assert servers < pytest_run
    assert "make test" in (ROOT / ".ci" / "run").read_text()  # CI runs the README's command, nothing else


def test_require_servers_passes_when_installed_and_names_what_is_missing(tmp_path):
    script = ROOT / "tests" / "require_servers.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    if shutil.which("prometheus") and shutil.which("prometheus-pushgateway"):
        assert subprocess.run([str(script)], capture_output=True, timeout=60).returncode == 0
    # As a non-root user on a machine without the binaries: one line naming the packages, exit 2, nothing run.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text("#!/bin/sh\necho 1000\n")
    (bin_dir / "id").chmod(0o755)
    for tool in ("bash", "env", "printf", "chmod", "rm"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    text = script.read_text().replace("[ -x \"/usr/bin/$pkg\" ]", "false")  # pretend /usr/bin lacks them too
    copy = tmp_path / "require_servers.sh"
    copy.write_text(text)
    proc = subprocess.run(["bash", str(copy)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": str(bin_dir)})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "prometheus prometheus-pushgateway" in proc.stderr
    assert "apt-get install" in proc.stderr


def test_image_source_label_drops_credentials(tmp_path):
    repo = tmp_path / "clone"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    for url, expected in (("https://alice:ghp_token123@github.com/org/evdet.git", "https://github.com/org/evdet.git"),
                          ("https://oauth2:abc@gitlab.example/org/evdet", "https://gitlab.example/org/evdet"),
                          ("git@github.com:org/evdet.git", "git@github.com:org/evdet.git")):
        subprocess.run(["git", "remote", "remove", "origin"], cwd=repo, capture_output=True)
        subprocess.run(["git", "remote", "add", "origin", url], cwd=repo, check=True)
        proc = subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "--eval", "print-%: ; @echo $($*)",
                               "print-IMAGE_SOURCE"], cwd=repo, capture_output=True, text=True, timeout=60)
        assert proc.stdout.strip() == expected, (url, proc.stdout, proc.stderr)
