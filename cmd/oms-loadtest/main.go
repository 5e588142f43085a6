// Command oms-loadtest seeds an omsd stack and offers it open-model load,
// then audits the outcome. It is a client of the public API and topics
// only (the v1 contract); see package loadtest for the model and formulas.
//
//	oms-loadtest seed --env .oms-dev/stack.env --skus 1000 --nodes 12 --stock 100
//	oms-loadtest run  --env .oms-dev/stack.env --rate 500 --duration 3m --profile flash-sale --json out/report.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errAuditFailed):
		fmt.Fprintln(os.Stderr, "oms-loadtest:", err)
		os.Exit(2)
	case errors.Is(err, errThresholdFailed):
		fmt.Fprintln(os.Stderr, "oms-loadtest:", err)
		os.Exit(3)
	default:
		fmt.Fprintln(os.Stderr, "oms-loadtest:", err)
		os.Exit(1)
	}
}
