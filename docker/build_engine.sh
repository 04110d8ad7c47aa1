#!/usr/bin/env bash
# Build a TensorRT engine from an ONNX file with `compsrt build`, then `compsrt profile` it and
# run `compsrt selftest` when a GPU is visible. Engine, logs and sidecars go to one output folder.
#
# The same script is the images' engine entry point (/usr/local/bin/compsrt-build-engine, with the
# models folder mounted at /models) and runs outside Docker with local paths:
#
#   docker/build_engine.sh --onnx models/swinir_x4.onnx --out-dir models/engines
#   COMPSRT=".venv/bin/compsrt" docker/build_engine.sh --onnx m.onnx --out-dir out --steps build
#
# Options (each has an environment variable; the option wins):
#   --onnx PATH          ONNX model                                   COMPSRT_ONNX
#   --out-dir DIR        output folder (created)                      COMPSRT_OUT_DIR (default: ONNX's folder)
#   --name NAME          engine base name (default: ONNX file stem)   COMPSRT_ENGINE_NAME
#   --plugins P          auto | python | none | /path/lib.so          COMPSRT_PLUGINS (default auto)
#                        auto = $COMPSRT_PLUGIN_LIB when that file exists, else python
#   --sparse             pass --sparse to compsrt build               COMPSRT_SPARSE=1
#   --workspace MB       builder workspace limit                      COMPSRT_WORKSPACE_MB
#   --tile N / --batch N only for ONNX graphs with dynamic tile / batch dims (compsrt build)
#   --size WxH           profile input size (compsrt profile's default: 320x180)  COMPSRT_PROFILE_SIZE
#   --steps LIST         comma list of build,profile,selftest         COMPSRT_STEPS (default all three)
#   --gpu auto|0|1       force GPU detection (profile/selftest need one)  COMPSRT_GPU (default auto)
#   --require-gpu        exit 3 instead of skipping profile/selftest when no GPU is found
#   --dry-run            print the compsrt commands, run nothing
#   -h, --help
# Also: COMPSRT_CHOWN=UID:GID  when run as root (the Docker runs), hand the outputs to that owner;
#       COMPSRT  the command that runs compsrt (default: `compsrt` on PATH, else `python3 -m compsrt`);
#       COMPSRT_PLUGIN_LIB  C++ plugin library (default /opt/compsrt/lib/libcompsrt_plugins.so).
#
# Outputs in the output folder: NAME.plan with the sidecar, build log and layer info that
# `compsrt build` writes beside it, NAME.timing.cache, NAME.profile.json (`compsrt profile --out`),
# NAME.build.log / NAME.profile.log / NAME.selftest.log (console output), and NAME.steps.txt, which
# records each step as ran / skipped (with the reason) / failed. The engine carries its plugin:
# profile and the runtime read the plugin choice from the engine's sidecar.
# Exit status: 0 all requested steps ran or were skipped for want of a GPU; 2 usage error; 3 no GPU
# with --require-gpu; otherwise the failing compsrt command's status.
set -euo pipefail

PROG=$(basename "$0")

usage() { sed -n '2,/^set -euo pipefail$/{/^#/s/^# \{0,1\}//p}' "$0"; }
die() { echo "$PROG: error: $*" >&2; exit 2; }

ONNX=${COMPSRT_ONNX:-}
OUT_DIR=${COMPSRT_OUT_DIR:-}
NAME=${COMPSRT_ENGINE_NAME:-}
PLUGINS=${COMPSRT_PLUGINS:-auto}
PLUGIN_LIB=${COMPSRT_PLUGIN_LIB:-/opt/compsrt/lib/libcompsrt_plugins.so}
SPARSE=${COMPSRT_SPARSE:-0}
WORKSPACE=${COMPSRT_WORKSPACE_MB:-}
TILE=
BATCH=
SIZE=${COMPSRT_PROFILE_SIZE:-}
STEPS=${COMPSRT_STEPS:-build,profile,selftest}
GPU=${COMPSRT_GPU:-auto}
REQUIRE_GPU=0
DRY_RUN=0

need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --onnx) need_value "$@"; ONNX=$2; shift 2 ;;
        --out-dir) need_value "$@"; OUT_DIR=$2; shift 2 ;;
        --name) need_value "$@"; NAME=$2; shift 2 ;;
        --plugins) need_value "$@"; PLUGINS=$2; shift 2 ;;
        --sparse) SPARSE=1; shift ;;
        --workspace) need_value "$@"; WORKSPACE=$2; shift 2 ;;
        --tile) need_value "$@"; TILE=$2; shift 2 ;;
        --batch) need_value "$@"; BATCH=$2; shift 2 ;;
        --size) need_value "$@"; SIZE=$2; shift 2 ;;
        --steps) need_value "$@"; STEPS=$2; shift 2 ;;
        --gpu) need_value "$@"; GPU=$2; shift 2 ;;
        --require-gpu) REQUIRE_GPU=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

# --- validate ---------------------------------------------------------------------------------
declare -A WANT=()
IFS=',' read -r -a _steps <<<"$STEPS"
for s in "${_steps[@]}"; do
    case $s in
        build | profile | selftest) WANT[$s]=1 ;;
        '') ;;
        *) die "unknown step '$s' in --steps (use build, profile, selftest)" ;;
    esac
done
[[ ${#WANT[@]} -gt 0 ]] || die "--steps is empty"
case $GPU in auto | 0 | 1) ;; *) die "--gpu must be auto, 0 or 1, not '$GPU'" ;; esac
[[ -z $WORKSPACE || $WORKSPACE =~ ^[0-9]+$ ]] || die "--workspace must be a whole number of MB, not '$WORKSPACE'"
[[ -z $TILE || $TILE =~ ^[0-9]+$ ]] || die "--tile must be a whole number, not '$TILE'"
[[ -z $BATCH || $BATCH =~ ^[0-9]+$ ]] || die "--batch must be a whole number, not '$BATCH'"
[[ -z $SIZE || $SIZE =~ ^[0-9]+x[0-9]+$ ]] || die "--size must be WxH, e.g. 1280x720, not '$SIZE'"

if [[ -n ${WANT[build]:-} ]]; then
    [[ -n $ONNX ]] || die "no ONNX model: pass --onnx PATH (or set COMPSRT_ONNX)"
    [[ -f $ONNX ]] || die "ONNX model '$ONNX' not found (inside Docker, paths are under the mounted /models)"
fi
if [[ -z $NAME ]]; then
    if [[ -n $ONNX ]]; then
        NAME=$(basename "${ONNX%.onnx}")
    elif [[ -z ${WANT[build]:-} && -z ${WANT[profile]:-} ]]; then
        NAME=compsrt # selftest alone needs no engine; its log is compsrt.selftest.log
    else
        die "pass --name NAME (or --onnx PATH) to say which engine to use"
    fi
fi
[[ $NAME != */* && -n $NAME ]] || die "--name must be a plain file name, not '$NAME'"
if [[ -z $OUT_DIR ]]; then
    [[ -n $ONNX ]] || die "pass --out-dir DIR"
    OUT_DIR=$(dirname "$ONNX")
fi
if [[ $DRY_RUN -eq 0 ]]; then
    mkdir -p "$OUT_DIR" || die "cannot create output folder '$OUT_DIR'"
    [[ -w $OUT_DIR ]] || die "output folder '$OUT_DIR' is not writable (in Docker, mount it read-write and/or pass --user \$(id -u):\$(id -g))"
fi

ENGINE="$OUT_DIR/$NAME.plan"
STEPS_FILE="$OUT_DIR/$NAME.steps.txt"

# The compsrt command: $COMPSRT (split on spaces), else compsrt on PATH, else python3 -m compsrt.
if [[ -n ${COMPSRT:-} ]]; then
    read -r -a COMPSRT_CMD <<<"$COMPSRT"
elif command -v compsrt >/dev/null 2>&1; then
    COMPSRT_CMD=(compsrt)
else
    COMPSRT_CMD=(python3 -m compsrt)
fi

case $PLUGINS in
    auto) if [[ -f $PLUGIN_LIB ]]; then PLUGIN_ARGS=(--plugins "$PLUGIN_LIB"); else PLUGIN_ARGS=(--plugins python); fi ;;
    none) PLUGIN_ARGS=() ;;
    python) PLUGIN_ARGS=(--plugins python) ;;
    *)
        [[ $DRY_RUN -eq 1 || -f $PLUGINS ]] || die "plugin library '$PLUGINS' not found (use auto, python, none or a .so path)"
        PLUGIN_ARGS=(--plugins "$PLUGINS")
        ;;
esac

# --- GPU detection ----------------------------------------------------------------------------
# Desktop (docker run --gpus all): nvidia-smi lists a GPU or /dev/nvidia0 exists.
# Jetson Orin, JetPack 6 (docker run --runtime nvidia): /dev/nvhost-ctrl-gpu or /dev/nvgpu/.
# Jetson Thor, JetPack 7 (OpenRM driver): /dev/nvidia0.
gpu_present() {
    case $GPU in 1) return 0 ;; 0) return 1 ;; esac
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then return 0; fi
    [[ -e /dev/nvidia0 || -e /dev/nvhost-ctrl-gpu || -d /dev/nvgpu ]]
}

# --- run --------------------------------------------------------------------------------------
record() { [[ $DRY_RUN -eq 1 ]] || printf '%s\t%s\n' "$1" "$2" >>"$STEPS_FILE"; }

# run_compsrt LOG SUBCOMMAND ARGS...: echo the command, run it with output teed to LOG.
run_compsrt() {
    local log=$1
    shift
    local cmd=("${COMPSRT_CMD[@]}" "$@")
    printf '+ %s\n' "${cmd[*]}"
    if [[ $DRY_RUN -eq 1 ]]; then return 0; fi
    local rc=0
    "${cmd[@]}" 2>&1 | tee "$log" || rc=$?
    return "$rc"
}

step() { # step NAME ARGS... -> runs `compsrt ARGS`, records the result, exits on failure
    local name=$1
    shift
    local rc=0
    run_compsrt "$OUT_DIR/$NAME.$name.log" "$@" || rc=$?
    if [[ $rc -ne 0 ]]; then
        record "$name" "failed (exit $rc; see $NAME.$name.log)"
        echo "$PROG: $name failed with exit status $rc" >&2
        exit "$rc"
    fi
    record "$name" "ran"
}

chown_outputs() {
    if [[ -n ${COMPSRT_CHOWN:-} && $(id -u) -eq 0 && $DRY_RUN -eq 0 ]]; then
        chown "$COMPSRT_CHOWN" "$OUT_DIR" "$OUT_DIR/$NAME".* 2>/dev/null || true
    fi
}
trap chown_outputs EXIT

[[ $DRY_RUN -eq 1 ]] || : >"$STEPS_FILE"

if [[ -n ${WANT[build]:-} ]]; then
    build_args=(build --onnx "$ONNX" --out "$ENGINE" --timing-cache "$OUT_DIR/$NAME.timing.cache" "${PLUGIN_ARGS[@]}")
    if [[ $SPARSE == 1 ]]; then build_args+=(--sparse); fi
    if [[ -n $WORKSPACE ]]; then build_args+=(--workspace "$WORKSPACE"); fi
    if [[ -n $TILE ]]; then build_args+=(--tile "$TILE"); fi
    if [[ -n $BATCH ]]; then build_args+=(--batch "$BATCH"); fi
    step build "${build_args[@]}"
fi

if [[ -n ${WANT[profile]:-} || -n ${WANT[selftest]:-} ]]; then
    if gpu_present; then
        if [[ -n ${WANT[profile]:-} ]]; then
            [[ $DRY_RUN -eq 1 || -f $ENGINE ]] || die "engine '$ENGINE' not found: run the build step first"
            profile_args=(profile --backend trt --engine "$ENGINE" --out "$OUT_DIR/$NAME.profile.json")
            if [[ -n $SIZE ]]; then profile_args+=(--size "$SIZE"); fi
            step profile "${profile_args[@]}"
        fi
        if [[ -n ${WANT[selftest]:-} ]]; then
            step selftest selftest "${PLUGIN_ARGS[@]}"
        fi
    else
        reason="no GPU visible (no nvidia-smi GPU, /dev/nvidia0, /dev/nvhost-ctrl-gpu or /dev/nvgpu; in Docker use --gpus all on a desktop, --runtime nvidia on a Jetson)"
        if [[ -n ${WANT[profile]:-} ]]; then record profile "skipped: $reason"; fi
        if [[ -n ${WANT[selftest]:-} ]]; then record selftest "skipped: $reason"; fi
        if [[ $REQUIRE_GPU -eq 1 ]]; then
            echo "$PROG: error: $reason" >&2
            exit 3
        fi
        echo "$PROG: skipping profile/selftest: $reason" >&2
    fi
fi

if [[ $DRY_RUN -eq 0 ]]; then
    echo "$PROG: done; outputs in $OUT_DIR:"
    sed 's/^/  /' "$STEPS_FILE"
fi
