#!/bin/sh
# Builds one of the project's C extension modules with the stable ABI (Python 3.11+),
# so that one build serves every later interpreter too.
#   sh media_node/native/build.sh PYTHON SOURCE.c OUTPUT.abi3.so
# The Makefile runs it for the media node's send path (media_node/_fanout.abi3.so:
# `make test`, `make up`) and the benchmark's packet sink (`make bench`), the
# Dockerfile in its build stage. Needs a C compiler and that interpreter's headers.
set -eu
python=$1
source=$2
output=$3
include=$("$python" -c 'import sysconfig; print(sysconfig.get_path("include"))')
${CC:-cc} -O2 -g -Wall -Wextra -Wno-missing-field-initializers -Werror=implicit-function-declaration -fPIC -shared -pthread \
    -DPy_LIMITED_API=0x030B0000 -I"$include" "$source" -o "$output"
