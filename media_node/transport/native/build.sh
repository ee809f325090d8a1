#!/bin/sh
# Builds the media node's send path, media_node._fanout, from every C file beside this
# script, with the stable ABI (Python 3.11+), so that one build serves every later
# interpreter too.
#   sh media_node/transport/native/build.sh PYTHON OUTPUT.abi3.so
# The Makefile runs it (`make test`, `make up`), the Dockerfile in its build stage.
# Needs a C compiler, that interpreter's headers, and OpenSSL 3's and zlib's headers
# and libraries (Debian: gcc, python3-dev, libssl-dev, zlib1g-dev).
set -eu
python=$1
output=$2
here=$(dirname "$0")
include=$("$python" -c 'import sysconfig; print(sysconfig.get_path("include"))')
# Only PyInit__fanout is exported: the files' shared functions stay inside the module.
${CC:-cc} -O2 -g -Wall -Wextra -Wno-missing-field-initializers -Werror=implicit-function-declaration \
    -fPIC -shared -pthread -fvisibility=hidden \
    -DPy_LIMITED_API=0x030B0000 -DOPENSSL_API_COMPAT=30000 -DOPENSSL_NO_DEPRECATED \
    -I"$include" "$here"/*.c -o "$output" -lcrypto -lz
