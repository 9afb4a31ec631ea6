#!/usr/bin/env bash
# Download, on a machine with PyPI, the wheels bench/gpu.sh needs on a GPU machine that has torch, Lightning, h5py,
# numba and timm but no package registry (this workplace's device machine: Python 3.12, x86-64). They land in .whl/
# (git-ignored); carry that folder with the repository and bench/gpu.sh installs them into /tmp/site. hdf5plugin
# (46 MB) is left out to stay within the 64 MiB a device call carries: nothing in bench/gpu.sh reads HDF5 shards.
# Usage, from the repository root:  bash bench/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
platforms=()
for n in 17 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# versions from constraints.txt; each wheel without its dependencies (the machine has numpy, PyYAML, packaging)
for name in hydra-core omegaconf antlr4-python3-runtime pycocotools faster-coco-eval aedat; do
  spec=$(grep -i "^${name}==" constraints.txt || echo "$name")
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "$spec" || python3 -m pip download --quiet --no-deps -d .whl "$spec"
done
ls -1 .whl
