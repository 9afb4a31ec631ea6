#!/usr/bin/env bash
# `make image-smoke`: build the three evdet images with podman on a local Debian 12 base made by debootstrap,
# with the CPU build of torch, then run each image's entry point with --help and one tiny training step
# (synthetic data -> shards -> 1 optimizer step) inside the model image. Needs root (debootstrap, podman as
# root with runc), the Debian packages podman buildah runc debootstrap, and network access to a Debian mirror
# and a Python package index (or a mirror given by PIP_INDEX_URL). See docker/README.md.
#
# Environment (all optional):
#   SMOKE_DIR            work folder (default build/image-smoke): debootstrap root file system, logs
#   SMOKE_BASE_IMAGE     local base image name (default localhost/evdet-smoke-base:bookworm); made once, reused
#   DEBIAN_MIRROR        debootstrap mirror (default http://deb.debian.org/debian)
#   SMOKE_TORCH, SMOKE_TORCHVISION  torch / torchvision pins for the images; default empty = constraints.txt's
#                        torch 2.14.1 / torchvision 0.29.1 (the CUDA 13.0 build, which also runs on CPU). For a
#                        CPU-only build: SMOKE_TORCH=2.13.0+cpu SMOKE_TORCHVISION=0.28.0+cpu with
#                        PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu (PyPI's torchvision wheels are
#                        CUDA builds and fail to load next to a +cpu torch: "operator torchvision::nms does not exist").
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS  package sources for the build; default: this machine's
#                        pip configuration (`pip config get global.<key>`). Local folders among them (file:// URLs
#                        and paths) are mounted read-only into the build at the same path.
#   PIP_CERT             CA bundle for pip in the build (default: the host's `pip config get global.cert`)
#   IMAGE_REGISTRY, IMAGE_TAG  image names (default localhost/evdet-smoke and "smoke")
#   PODMAN_ISOLATION     podman build --isolation (default: chroot, which works as root inside a container)
# Needs buildah too: the containers run with `buildah run --isolation chroot` (see run_in below).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "image-smoke: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and rootful podman); got uid $(id -u)"
for tool in podman buildah debootstrap runc; do
  command -v "$tool" >/dev/null || die "'$tool' not found; install the Debian packages: apt-get install -y podman buildah runc debootstrap"
done

SMOKE_DIR=${SMOKE_DIR:-build/image-smoke}
BASE=${SMOKE_BASE_IMAGE:-localhost/evdet-smoke-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TORCH=${SMOKE_TORCH:-}
TORCHVISION=${SMOKE_TORCHVISION:-}
REGISTRY=${IMAGE_REGISTRY:-localhost/evdet-smoke}
TAG=${IMAGE_TAG:-smoke}
ISOLATION=${PODMAN_ISOLATION:-chroot}
mkdir -p "$SMOKE_DIR"
SECONDS=0
stamp() { printf '[image-smoke %4ds] %s\n' "$SECONDS" "$*"; }

# 1. Base image: Debian 12 minbase + CPython 3.11 (+ venv/ensurepip), imported into podman.
if podman image exists "$BASE"; then
  stamp "base $BASE exists, reusing it (podman rmi $BASE to rebuild)"
else
  rootfs="$SMOKE_DIR/rootfs"
  rm -rf "$rootfs"
  stamp "debootstrap bookworm -> $rootfs"
  # debootstrap does not resolve virtual packages (python3.11-distutils), so the venv dependencies are named.
  debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-distutils,python3-lib2to3,python3-pip-whl,python3-setuptools-whl,ca-certificates \
    bookworm "$rootfs" "$MIRROR" > "$SMOKE_DIR/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $SMOKE_DIR/debootstrap.log"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  stamp "import $BASE"
  tar -C "$rootfs" -c . | podman import - "$BASE" >/dev/null
  rm -rf "$rootfs"
fi

# 2. The three images, CPU torch, on that base.
build_args=(--build-arg "BASE_IMAGE=$BASE" --build-arg "TORCH_VERSION=$TORCH"
            --build-arg "TORCHVISION_VERSION=$TORCHVISION"
            --build-arg "VCS_REF=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)")
pip_config() {  # the host's pip setting for KEY (index-url, extra-index-url, find-links), or nothing
  local py
  for py in .venv/bin/python python3; do
    if "$py" -m pip --version >/dev/null 2>&1; then "$py" -m pip config get "global.$1" 2>/dev/null || true; return; fi
  done
}
declare -A mounts=()
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS; do
  key=$(echo "${var#PIP_}" | tr 'A-Z_' 'a-z-')
  value=${!var:-$(pip_config "$key")}
  value=$(echo "$value" | tr '\n' ' ' | sed 's/ *$//')
  [ -n "$value" ] || continue
  build_args+=(--build-arg "$var=$value")
  for item in $value; do
    path=${item#file://}
    case "$path" in /*) [ -d "$path" ] && mounts["${path%/simple*}"]=1;; esac
  done
done
cert=${PIP_CERT:-$(pip_config cert)}
if [ -n "$cert" ] && [ -f "$cert" ]; then  # a TLS-intercepting proxy's CA bundle, as the host's pip uses it
  build_args+=(--volume "$cert:/etc/evdet-build-ca.crt:ro" --build-arg PIP_CERT=/etc/evdet-build-ca.crt)
fi
for path in "${!mounts[@]}"; do build_args+=(--volume "$path:$path:ro"); done
for target in data model eval; do
  stamp "build $REGISTRY/evdet-$target:$TAG"
  podman build --isolation "$ISOLATION" --network host -f docker/Dockerfile --target "$target" \
    "${build_args[@]}" -t "$REGISTRY/evdet-$target:$TAG" . > "$SMOKE_DIR/build-$target.log" 2>&1 \
    || { tail -30 "$SMOKE_DIR/build-$target.log" >&2; die "podman build --target $target failed; see $SMOKE_DIR/build-$target.log"; }
done

# Containers run with `buildah run --isolation chroot` as the image's user: rootful `podman run` (runc) needs to
# set rlimits, which a root inside an unprivileged container may not ("error setting rlimit type 7").
# chroot isolation cannot create a network namespace, so the container shares the host network; nothing it runs
# opens a connection (the training step's exporter binds 127.0.0.1 on an ephemeral port).
run_in() {  # run_in IMAGE COMMAND... : the command in a throw-away working container of IMAGE
  local image=$1 ctr rc=0 user; shift
  user=$(podman image inspect --format '{{.Config.User}}' "$image")
  ctr=$(buildah from "$image")
  buildah run --isolation chroot --network host --user "$user" --workingdir /workspace "$ctr" -- "$@" || rc=$?
  buildah rm "$ctr" >/dev/null
  return "$rc"
}

# 3. Entry points: `<image> --help`, as the image's own (non-root) user.
for target in data model eval; do
  image="$REGISTRY/evdet-$target:$TAG"
  stamp "run $image --help"
  user=$(podman image inspect --format '{{.Config.User}}' "$image")
  case "$user" in ""|0|0:*|root|root:*) die "$image runs as root (User='$user')";; esac
  entry=$(podman image inspect --format '{{index .Config.Entrypoint 0}}' "$image")
  run_in "$image" "$entry" --help > "$SMOKE_DIR/help-$target.txt" 2>&1 \
    || { cat "$SMOKE_DIR/help-$target.txt" >&2; die "$image --help failed"; }
  grep -q "usage" "$SMOKE_DIR/help-$target.txt" || grep -q "Powered by Hydra" "$SMOKE_DIR/help-$target.txt" \
    || die "$image --help printed no usage text; see $SMOKE_DIR/help-$target.txt"
done

# 4. One tiny training step inside the model image (synthetic data, 160x90 shards, 1 step).
stamp "tiny training step in $REGISTRY/evdet-model:$TAG"
run_in "$REGISTRY/evdet-model:$TAG" /bin/sh -euc '
  evdet-data synth --output raw --seed 1 --train 1 --val 1 --test 0 --duration-s 0.6 --width 320 --height 180
  evdet-data preprocess --no-progress raw --output shards --splits train val
  evdet-train +experiment=plain_lstm_640x360_baseline dataset=etram profile=local dataset.path=shards \
    dataset.height=90 dataset.width=160 training.max_steps=1 validation.val_check_interval=1 \
    output.dir=run output.store=store run_id=smoke
  ls -R store | head -20
' > "$SMOKE_DIR/train.log" 2>&1 || { tail -40 "$SMOKE_DIR/train.log" >&2; die "training step in the model image failed"; }
stamp "done: images $REGISTRY/evdet-{data,model,eval}:$TAG; logs in $SMOKE_DIR"
