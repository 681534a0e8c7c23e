#!/usr/bin/env bash
# Compiles the GLSL compute shaders of the Vulkan backend to SPIR-V
# (generated code is committed, like api/loompb). Run from anywhere:
#   bash kernels/vulkan/shaders/build.sh     (or: make shaders, go generate ./kernels/vulkan)
# Needs glslc (Debian: apt-get install glslc). TestSPIRVUpToDate checks that
# the committed .spv files are what this script produces.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../spv}"
mkdir -p "$out"
for src in "$here"/*.comp; do
  glslc -fshader-stage=compute --target-env=vulkan1.2 -O "$src" -o "$out/$(basename "${src%.comp}").spv"
done
# The smoke-test shader of the low-level package.
vk="$here/../../internal/vk/testdata"
glslc -fshader-stage=compute --target-env=vulkan1.2 -O "$vk/axpy.comp" -o "${2:-$vk}/axpy.spv"
