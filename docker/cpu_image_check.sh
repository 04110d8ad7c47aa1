#!/usr/bin/env bash
# `make docker-test`: build the CPU engine-builder image (docker/Dockerfile.cpu) for real, build an
# engine with its entry point, and check the result against the same build on the host.
#
#   1. base    Debian 12 root file system from Debian's packages (docker/make_base.sh), cached as a
#              tarball keyed by the package list and the script; imported into buildah's storage
#   2. image   buildah bud --isolation chroot -f docker/Dockerfile.cpu (layers cached between runs)
#   3. onnx    the test ONNX on the host: `compsrt export` of a seeded SwinIR-light x4 at an 8x8 tile
#   4. engine  the ONNX copied into a container of the image, the image's entry point run on it
#   5. host    the same entry point (docker/build_engine.sh) with the same arguments on the host
#   6. compare the two engines and sidecars (docker/compare_engines.py): bytes, sizes, inputs and
#              outputs, precision record
#   7. errors  bad inputs through the entry point in the image (a missing ONNX, a PNG named .onnx):
#              exit status 2 and the one-line error the host gives for the same input
# Each phase's wall time and the image size are printed and written to OUT/summary.json; the whole
# console output goes to OUT/docker-test.log.
#
# Needs root, buildah and mmdebstrap (apt-get install buildah mmdebstrap), and a host Python with
# compsrt's requirements (torch for the export, TensorRT-RTX for the host build). Environment:
#   PYTHON             host Python (default .venv/bin/python)
#   DOCKER_TEST_CACHE  cache folder for the base tarball and .deb files (default ~/.cache/compsrt-docker-test)
#   DOCKER_TEST_OUT    output folder (default outputs/docker-test; emptied first)
#   IMAGE              image name (default compsrt-trt:cpu)
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
die() { echo "$PROG: error: $*" >&2; exit 2; }

PY=${PYTHON:-$REPO/.venv/bin/python}
CACHE=${DOCKER_TEST_CACHE:-$HOME/.cache/compsrt-docker-test}
OUT=${DOCKER_TEST_OUT:-$REPO/outputs/docker-test}
IMAGE=${IMAGE:-compsrt-trt:cpu}
BUILDAH=(buildah --storage-driver "${STORAGE_DRIVER:-overlay}")

[[ $(id -u) -eq 0 ]] || die "run as root (mmdebstrap and buildah's chroot isolation need it)"
command -v buildah >/dev/null || die "buildah is not installed (apt-get install buildah)"
[[ -x $PY ]] || die "no host Python at $PY (make venv, or set PYTHON)"
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute, not resolved: a venv's python is a link
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
rm -rf "${OUT:?}"/*
exec > >(tee "$OUT/docker-test.log") 2>&1

declare -A SECONDS_OF=()
phase_start() { echo; echo "=== $1 ($(date -u +%H:%M:%S))"; T0=$(date +%s.%N); }
phase_end() {
    SECONDS_OF[$1]=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    echo "=== $1: ${SECONDS_OF[$1]} s"
}
echo "$PROG: load average at the start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine slows every phase)"
echo "$PROG: $(date -u +%FT%TZ) on $(nproc) CPU cores, $(grep -oP '^PRETTY_NAME="\K[^"]+' /etc/os-release)," \
    "$(buildah --version)"

# --- 1. base --------------------------------------------------------------------------------------
phase_start base
key=$(cat "$HERE/base-cpu.packages" "$HERE/make_base.sh" | sha256sum | cut -c1-16)
BASE_TAR="$CACHE/base-bookworm-$key.tar"
BASE_IMAGE="localhost/compsrt-debian-base:$key"
mkdir -p "$CACHE"
if [[ -f $BASE_TAR ]]; then
    echo "base: reusing $BASE_TAR"
else
    echo "base: making $BASE_TAR with mmdebstrap"
    rm -f "$CACHE"/base-bookworm-*.tar
    DEB_CACHE="$CACHE/debs" "$HERE/make_base.sh" "$BASE_TAR"
fi
if "${BUILDAH[@]}" inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "base: $BASE_IMAGE is in buildah's storage"
else
    ctr=$("${BUILDAH[@]}" from scratch)
    "${BUILDAH[@]}" add "$ctr" "$BASE_TAR" /
    "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd /bin/bash "$ctr"
    "${BUILDAH[@]}" commit --rm -q "$ctr" "$BASE_IMAGE" >/dev/null
    echo "base: imported as $BASE_IMAGE"
fi
phase_end base

# --- 2. image -------------------------------------------------------------------------------------
phase_start image
# The host's CA bundle over the base's: pip then trusts what the host trusts (a TLS-inspecting proxy's CA).
ca=/etc/ssl/certs/ca-certificates.crt
CA_MOUNT=()
if [[ -f $ca ]]; then CA_MOUNT=(-v "$ca:$ca:ro"); fi
"${BUILDAH[@]}" bud --isolation chroot --format docker --layers --force-rm --pull-never "${CA_MOUNT[@]}" \
    -f "$HERE/Dockerfile.cpu" \
    --ignorefile "$HERE/Dockerfile.cpu.dockerignore" --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" "$REPO"
phase_end image

# --- 3. onnx --------------------------------------------------------------------------------------
phase_start onnx
host="$OUT/host"
mkdir -p "$host"
ONNX_NAME=standin_x4_t8
OMP_NUM_THREADS=2 PYTHONPATH="$REPO" "$PY" - "$OUT/standin_x4.pth" <<'EOF'
import sys

import torch

from compsrt.models.swinir import SwinIR, SwinIRConfig

torch.manual_seed(0)  # SwinIR-light's architecture, seeded random weights: no download, same graph
torch.save({"params": SwinIR(SwinIRConfig(scale=4)).state_dict()}, sys.argv[1])
EOF
OMP_NUM_THREADS=2 PYTHONPATH="$REPO" "$PY" -m compsrt export --checkpoint "$OUT/standin_x4.pth" --tile 8 \
    --out "$host/$ONNX_NAME.onnx"
phase_end onnx

# --- 4. engine in the image -----------------------------------------------------------------------
phase_start engine_image
entrypoint=$("${BUILDAH[@]}" inspect --type image --format '{{range .OCIv1.Config.Entrypoint}}{{.}} {{end}}' "$IMAGE")
read -r -a ENTRYPOINT <<<"$entrypoint"
echo "image entry point: ${ENTRYPOINT[*]}"
ctr=$("${BUILDAH[@]}" from --pull-never "$IMAGE")
cleanup() { "${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true; }
trap cleanup EXIT
"${BUILDAH[@]}" copy -q "$ctr" "$host/$ONNX_NAME.onnx" "$host/$ONNX_NAME.onnx.json" /models/
ENGINE_ARGS=(--out-dir engines --gpu 0)  # no GPU here: profile/selftest are recorded as skipped
in_image() { "${BUILDAH[@]}" run --isolation chroot --workingdir /models "$ctr" -- "${ENTRYPOINT[@]}" "$@"; }
in_image --onnx "/models/$ONNX_NAME.onnx" "${ENGINE_ARGS[@]}"
phase_end engine_image
mnt=$("${BUILDAH[@]}" mount "$ctr")
mkdir -p "$OUT/image"
cp -a "$mnt/models/engines/." "$OUT/image/"

# --- 5. engine on the host ------------------------------------------------------------------------
phase_start engine_host
(cd "$host" && COMPSRT="$PY -m compsrt" PYTHONPATH="$REPO" COMPSRT_PLUGIN_LIB=/nonexistent/libcompsrt_plugins.so \
    "$HERE/build_engine.sh" --onnx "$host/$ONNX_NAME.onnx" "${ENGINE_ARGS[@]}")
phase_end engine_host

# --- 6. compare -----------------------------------------------------------------------------------
phase_start compare
"$PY" "$HERE/compare_engines.py" "$host/engines" "$OUT/image" "$ONNX_NAME" --json "$OUT/comparison.json"
phase_end compare

# --- 7. bad inputs through the entry point --------------------------------------------------------
phase_start errors
cp "$REPO/compsrt/assets/sample.png" "$host/picture.onnx"
"${BUILDAH[@]}" copy -q "$ctr" "$host/picture.onnx" /models/
# check_error LABEL FILE: the entry point in the image and on the host on FILE: exit 2, no traceback,
# no engine, and the same error text once the folder and the script's name are made alike.
check_error() {
    local label=$1 file=$2 rc_img=0 rc_host=0
    in_image --onnx "/models/$file" --out-dir "bad-$label" --gpu 0 >"$OUT/error-$label.buildah.txt" 2>&1 || rc_img=$?
    # buildah run adds its own report of a non-zero exit; the rest is the entry point's output
    grep -vxE 'subprocess exited with status [0-9]+|Error: exit status [0-9]+' "$OUT/error-$label.buildah.txt" \
        >"$OUT/error-$label.image.txt" || true
    (cd "$host" && COMPSRT="$PY -m compsrt" PYTHONPATH="$REPO" COMPSRT_PLUGIN_LIB=/nonexistent/libcompsrt_plugins.so \
        "$HERE/build_engine.sh" --onnx "$host/$file" --out-dir "bad-$label" --gpu 0) \
        >"$OUT/error-$label.host.txt" 2>&1 \
        || rc_host=$?
    sed -i "s#$host#/models#g; s#${PY//#/\\#} -m compsrt#compsrt#g; s#build_engine.sh#compsrt-build-engine#g" \
        "$OUT/error-$label.host.txt"
    echo "--- $label: exit $rc_img in the image, $rc_host on the host; the image's output:"
    cat "$OUT/error-$label.image.txt"
    [[ $rc_img -eq 2 && $rc_host -eq 2 ]] || die "$label: expected exit status 2 in the image and on the host"
    if grep -q Traceback "$OUT/error-$label.image.txt"; then die "$label: a traceback in the image"; fi
    [[ ! -e $mnt/models/bad-$label/${file%.onnx}.plan ]] || die "$label: an engine was left behind"
    diff -u "$OUT/error-$label.host.txt" "$OUT/error-$label.image.txt" \
        || die "$label: the image's error differs from the host's"
}
check_error missing missing.onnx
grep -qx "compsrt-build-engine: error: ONNX model '/models/missing.onnx' not found.*" "$OUT/error-missing.image.txt" \
    || die "missing: not the entry point's one-line 'not found' error"
check_error png picture.onnx
grep -qx "compsrt build: error: /models/picture.onnx is a PNG image, not an ONNX model;.*" "$OUT/error-png.image.txt" \
    || die "png: not the CLI's one-line 'is a PNG image' error"
phase_end errors

# --- sizes and summary ----------------------------------------------------------------------------
image_bytes=$(du -sxb "$mnt" | cut -f1)
venv_bytes=$(du -sxb "$mnt/opt/compsrt/venv" | cut -f1)
base_bytes=$(stat -c %s "$BASE_TAR")
torch_absent=$([[ -z $(find "$mnt/opt/compsrt/venv" -maxdepth 4 -name torch -type d) ]] && echo true || echo false)
echo
echo "largest packages in the image's venv:"
(cd "$mnt"/opt/compsrt/venv/lib/python3*/site-packages && du -sxm -- * | sort -rn | head -8 | sed 's/^/  MB /')
echo "buildah images: $("${BUILDAH[@]}" images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE")"
"$PY" - "$OUT/summary.json" "$image_bytes" "$venv_bytes" "$base_bytes" "$torch_absent" "$IMAGE" "$BASE_IMAGE" \
    "${SECONDS_OF[base]}" "${SECONDS_OF[image]}" "${SECONDS_OF[onnx]}" "${SECONDS_OF[engine_image]}" \
    "${SECONDS_OF[engine_host]}" "${SECONDS_OF[compare]}" "${SECONDS_OF[errors]}" <<'EOF'
import json, sys
out, image_b, venv_b, base_b, torch_absent, image, base = sys.argv[1:8]
names = ("base", "image", "onnx", "engine_image", "engine_host", "compare", "errors")
phases = dict(zip(names, map(float, sys.argv[8:])))
summary = {"image": image, "base_image": base, "image_rootfs_bytes": int(image_b), "venv_bytes": int(venv_b),
           "base_tar_bytes": int(base_b), "torch_in_image": torch_absent != "true", "seconds": phases,
           "total_seconds": round(sum(phases.values()), 1),
           "comparison": json.load(open(out.replace("summary.json", "comparison.json")))["verdict"]}
json.dump(summary, open(out, "w"), indent=1)
print(json.dumps(summary, indent=1))
EOF
echo "$PROG: load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$PROG: passed; image $IMAGE: $((image_bytes / 1000000)) MB uncompressed (venv $((venv_bytes / 1000000)) MB)," \
    "total $("$PY" -c 'import sys; print(round(sum(map(float, sys.argv[1:]))))' "${SECONDS_OF[@]}") s"
