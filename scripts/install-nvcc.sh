#!/usr/bin/env bash
# Installs a pinned nvcc from the Python package registry into a cache folder outside the repository and prints
# the nvcc path on its last line. CUDA 13 wheels carry the nvcc driver (the -cu12 ones do not); the kernels use
# only what CUDA 12.6 (JetPack 6) accepts, so the same sources build with the Jetson's own nvcc.
#
#   NVCC=$(scripts/install-nvcc.sh | tail -n1)
#
# Cache: ${OCRNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocrnet-edge}/cuda-<ver>. A finished install is reused.
set -euo pipefail

CUDA_VER=13.0.88
CCCL_VER=13.0.85   # cccl is versioned on its own; this is the one released with CUDA 13.0 update 2
# nvcc needs cicc, which ships in nvidia-nvvm (a dependency of nvidia-cuda-nvcc); --no-deps keeps the pins exact.
cache="${OCRNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocrnet-edge}"
dest="$cache/cuda-$CUDA_VER"

find_nvcc() { find "$dest" -type f -name nvcc -path '*/bin/*' 2>/dev/null | head -n1; }

if [ ! -f "$dest/.complete" ]; then
    echo "installing nvcc $CUDA_VER into $dest" >&2
    rm -rf "$dest"
    mkdir -p "$dest"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$dest" \
        "nvidia-cuda-nvcc==$CUDA_VER" "nvidia-cuda-runtime==$CUDA_VER" \
        "nvidia-cuda-crt==$CUDA_VER" "nvidia-nvvm==$CUDA_VER" "nvidia-cuda-cccl==$CCCL_VER" >&2
    nvcc=$(find_nvcc)
    [ -n "$nvcc" ] || { echo "install-nvcc: no nvcc found under $dest after pip install" >&2; exit 1; }
    chmod +x "$(dirname "$nvcc")"/* 2>/dev/null || true
    # nvcc.profile searches lib64/ for cudart_static and cudadevrt; the wheels put them in lib/.
    top=$(dirname "$(dirname "$nvcc")")
    [ -e "$top/lib64" ] || ln -s lib "$top/lib64"
    touch "$dest/.complete"
fi
nvcc=$(find_nvcc)
[ -n "$nvcc" ] || { echo "install-nvcc: no nvcc under $dest (remove the folder and retry)" >&2; exit 1; }
echo "$nvcc"
