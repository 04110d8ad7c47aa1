#!/usr/bin/env bash
# The build steps every compsrt image shares, whatever its base image: docker/Dockerfile.cpu (Debian,
# TensorRT-RTX, no GPU), docker/Dockerfile.desktop (NGC TensorRT) and docker/Dockerfile.jetson (L4T).
# Each Dockerfile COPYs this script and RUNs its steps in this order; only what depends on the base
# (getting Python and TensorRT) stays in the Dockerfiles.
#
#   install_compsrt.sh deps REQUIREMENTS [PIP_SPEC...]
#       the Python packages of REQUIREMENTS plus PIP_SPECs; then torch when TORCH_SPEC is set
#       (from TORCH_INDEX_URL when that is set, else from PyPI)
#   install_compsrt.sh package [SRC]
#       compsrt itself from SRC (default: the current folder), without dependencies
#   install_compsrt.sh plugin [SRC]
#       the Hadamard C++ plugin library from SRC (default: compsrt/plugins/cpp of the source folder),
#       for CUDA_ARCHITECTURES, installed at COMPSRT_PLUGIN_LIB
#       (GPU images: needs nvcc, cmake and TensorRT's headers and libraries under /usr)
#   install_compsrt.sh check
#       every compsrt command the images and docker/run.sh call exists, and the engine entry point
#       (compsrt-build-engine = docker/build_engine.sh) answers --help
set -euo pipefail

PROG=$(basename "$0")
die() { echo "$PROG: error: $*" >&2; exit 2; }

[[ $# -ge 1 ]] || die "which step? deps, package, plugin or check (see the header of this script)"
step=$1
shift
case $step in
    deps)
        [[ $# -ge 1 && -f $1 ]] || die "deps needs a requirements file"
        python3 -m pip install -r "$@"
        if [[ -n ${TORCH_SPEC:-} ]]; then
            python3 -m pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"
        fi
        ;;
    package)
        python3 -m pip install --no-deps "${1:-.}"
        compsrt --help >/dev/null
        ;;
    plugin)
        [[ -n ${CUDA_ARCHITECTURES:-} && -n ${COMPSRT_PLUGIN_LIB:-} ]] \
            || die "plugin needs CUDA_ARCHITECTURES and COMPSRT_PLUGIN_LIB"
        cmake -S "${1:-compsrt/plugins/cpp}" -B /tmp/plugin-build -DCMAKE_BUILD_TYPE=Release -DTENSORRT_ROOT=/usr \
            "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHITECTURES"
        cmake --build /tmp/plugin-build --parallel
        lib=$(find /tmp/plugin-build -name libcompsrt_plugins.so -print -quit)
        [[ -n $lib ]] || die "the plugin build made no libcompsrt_plugins.so"
        install -D -m 0755 "$lib" "$COMPSRT_PLUGIN_LIB"
        rm -rf /tmp/plugin-build
        ;;
    check)
        compsrt build --help >/dev/null
        compsrt profile --help >/dev/null
        compsrt selftest --help >/dev/null
        compsrt-build-engine --help >/dev/null
        ;;
    *) die "unknown step '$step' (use deps, package, plugin or check)" ;;
esac
