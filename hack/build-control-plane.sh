#!/usr/bin/env bash
# Builds (first run only) etcd, kube-apiserver and kube-controller-manager
# for the end-to-end tests, and kubectl for poking at the sandbox, into
# ${CLB_DIRECT_CACHE:-<repo>/_output}/bin and prints their paths as shell
# assignments (ETCD, KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBECTL).
# Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./test/cluster/cmd/build-control-plane "$@"
