#!/usr/bin/env bash
# Build the compsrt images and run engine builds, profiling and the self-test in them.
#
#   docker/run.sh build-desktop                    # x86_64 image on NGC TensorRT (docker/Dockerfile.desktop)
#   docker/run.sh build-jetson [--jetpack 6|7]     # aarch64 image for Jetson (docker/Dockerfile.jetson)
#   docker/run.sh engine --onnx swinir_x4.onnx     # build + profile + selftest; ONNX path relative to --models
#   docker/run.sh profile --name swinir_x4         # profile models/engines/swinir_x4.plan again
#   docker/run.sh selftest                         # plugin/runtime self-test on the GPU
#
# Options (before or after the subcommand):
#   --platform desktop|jetson  default: jetson when /etc/nv_tegra_release exists, else desktop
#   --jetpack 6|7              Jetson image flavour (default 6: L4T r36.4, TensorRT 10.3; 7: Thor)
#   --models DIR               host folder mounted read-write at /models (default ./models; $COMPSRT_MODELS)
#   --image TAG                image tag (default compsrt-trt:desktop, compsrt-trt:jetson-jp6 / -jp7)
#   --dry-run                  print the docker commands instead of running them
# Anything else after `engine`, `profile` or `selftest` is passed on to compsrt-build-engine
# (docker/build_engine.sh), e.g. `--sparse`, `--plugins python`, `--workspace 2048`.
# Engines, timing caches, logs and sidecars are written to DIR/engines/ on the host.
#
# GPU access: desktop runs use `--gpus all` (NVIDIA Container Toolkit); Jetson runs use
# `--runtime nvidia` (the runtime JetPack's nvidia-container packages install).
# Environment: DOCKER (docker binary, default docker), DOCKER_BUILD_ARGS (extra `docker build` args).
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

die() { echo "$PROG: error: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo pipefail$/{/^#/s/^# \{0,1\}//p}' "$0"; }

PLATFORM=auto
JETPACK=6
MODELS=${COMPSRT_MODELS:-$PWD/models}
IMAGE=
DRY_RUN=0
CMD=
PASS=()
read -r -a DOCKER <<<"${DOCKER:-docker}"

need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --platform) need_value "$@"; PLATFORM=$2; shift 2 ;;
        --jetpack) need_value "$@"; JETPACK=$2; shift 2 ;;
        --models) need_value "$@"; MODELS=$2; shift 2 ;;
        --image) need_value "$@"; IMAGE=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        build-desktop | build-jetson | engine | profile | selftest)
            [[ -z $CMD ]] || die "one subcommand at a time ('$CMD' and '$1')"
            CMD=$1; shift ;;
        *)
            [[ -n $CMD ]] || die "unknown argument '$1' before the subcommand (see --help)"
            PASS+=("$1"); shift ;;
    esac
done
[[ -n $CMD ]] || { usage >&2; exit 2; }

case $CMD in
    build-desktop) PLATFORM=desktop ;;
    build-jetson) PLATFORM=jetson ;;
esac
if [[ $PLATFORM == auto ]]; then
    if [[ -f /etc/nv_tegra_release ]]; then PLATFORM=jetson; else PLATFORM=desktop; fi
fi
case $PLATFORM in desktop | jetson) ;; *) die "--platform must be desktop or jetson, not '$PLATFORM'" ;; esac
case $JETPACK in 6 | 7) ;; *) die "--jetpack must be 6 or 7, not '$JETPACK'" ;; esac

if [[ -z $IMAGE ]]; then
    if [[ $PLATFORM == desktop ]]; then IMAGE=compsrt-trt:desktop; else IMAGE=compsrt-trt:jetson-jp$JETPACK; fi
fi

run() {
    printf '+ %s\n' "$*"
    if [[ $DRY_RUN -eq 0 ]]; then "$@"; fi
}

read -r -a EXTRA_BUILD <<<"${DOCKER_BUILD_ARGS:-}"

case $CMD in
    build-desktop)
        [[ ${#PASS[@]} -eq 0 ]] || die "build-desktop takes no arguments (use DOCKER_BUILD_ARGS)"
        # The build context is the repository root (the image installs the package source);
        # docker/Dockerfile.desktop.dockerignore keeps .venv, .git and outputs out of it.
        run "${DOCKER[@]}" build -f "$REPO/docker/Dockerfile.desktop" -t "$IMAGE" "${EXTRA_BUILD[@]}" "$REPO"
        ;;
    build-jetson)
        [[ ${#PASS[@]} -eq 0 ]] || die "build-jetson takes no arguments (use DOCKER_BUILD_ARGS)"
        jp_args=()
        if [[ $JETPACK == 7 ]]; then
            # JetPack 7 (Thor) uses the SBSA-unified NGC images instead of the L4T ones.
            jp_args=(--build-arg BASE_IMAGE=nvcr.io/nvidia/tensorrt:25.08-py3 --build-arg CUDA_ARCHITECTURES=110
                --build-arg CUDA_PYTHON_SPEC=cuda-python==13.0.3)
        fi
        run "${DOCKER[@]}" build --platform linux/arm64 -f "$REPO/docker/Dockerfile.jetson" -t "$IMAGE" \
            "${jp_args[@]}" "${EXTRA_BUILD[@]}" "$REPO"
        ;;
    engine | profile | selftest)
        if [[ $DRY_RUN -eq 0 ]]; then
            mkdir -p "$MODELS/engines"
        fi
        MODELS=$(cd "$MODELS" 2>/dev/null && pwd || echo "$MODELS")
        if [[ $PLATFORM == desktop ]]; then gpu=(--gpus all); else gpu=(--runtime nvidia); fi
        args=("${PASS[@]}")
        # `--onnx X` is relative to the mounted models folder unless absolute.
        for i in "${!args[@]}"; do
            if [[ ${args[$i]} == --onnx && $((i + 1)) -lt ${#args[@]} && ${args[$((i + 1))]} != /* ]]; then
                args[i + 1]=/models/${args[$((i + 1))]}
            fi
        done
        case $CMD in
            engine) steps=build,profile,selftest ;;
            profile) steps=profile ;;
            selftest) steps=selftest ;;
        esac
        # Runs as the image's root user (Jetson GPU device nodes belong to the `video` group);
        # COMPSRT_CHOWN hands the outputs back to the calling user.
        run "${DOCKER[@]}" run --rm "${gpu[@]}" -v "$MODELS:/models" \
            -e COMPSRT_CHOWN="$(id -u):$(id -g)" --entrypoint compsrt-build-engine "$IMAGE" \
            --out-dir /models/engines --steps "$steps" --require-gpu "${args[@]}"
        ;;
esac
