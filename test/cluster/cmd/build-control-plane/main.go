// Command build-control-plane builds (once) the etcd, kube-apiserver and
// kube-controller-manager binaries the end-to-end tests run, and a kubectl
// of the same version, and prints their paths as shell assignments, e.g.
// for a Makefile:
//
//	eval "$(go run ./test/cluster/cmd/build-control-plane)"
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"clb-direct/test/cluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bins, err := cluster.EnsureBinaries(ctx, cluster.BuildOptions{Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("ETCD=%s\nKUBE_APISERVER=%s\nKUBE_CONTROLLER_MANAGER=%s\nKUBECTL=%s\n",
		bins.Etcd, bins.KubeAPIServer, bins.KubeControllerManager, bins.Kubectl)
}
