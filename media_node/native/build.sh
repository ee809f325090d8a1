#!/bin/sh
# Builds media_node/_fanout.abi3.so, the node's C send path, against libsrtp2.
#   sh media_node/native/build.sh [python]
# The Makefile runs it for `make test` and `make up`, the Dockerfile in its build stage.
# Needs a C compiler, the Python headers of that interpreter and libsrtp2's headers
# (Debian: gcc, libsrtp2-dev). The stable ABI (3.11+) keeps one build good for every
# later interpreter.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${1:-python3}
include=$("$python" -c 'import sysconfig; print(sysconfig.get_path("include"))')
${CC:-cc} -O2 -g -Wall -Wextra -Wno-missing-field-initializers -fPIC -shared \
    -DPy_LIMITED_API=0x030B0000 -I"$include" \
    "$here/fanout.c" -lsrtp2 -o "$here/../_fanout.abi3.so"
