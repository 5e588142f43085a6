// Package omstest holds in-memory stand-ins for intake's collaborators
// (an order store, a review memory, a catalog) and helpers that start oms
// components for a test, so that intake and the committer are tested
// without services. Stock and purchase limits come from inventory/memstock.
package omstest

import (
	"context"
	"testing"

	"github.com/omsd/omsd/oms"
)

// StartCommitter builds a committer on store, runs it for the test and
// stops it (flushing what is queued) at cleanup.
func StartCommitter(tb testing.TB, cfg oms.CommitterConfig, store oms.OrderStore) *oms.Committer {
	tb.Helper()
	c, err := oms.NewCommitter(cfg, store)
	if err != nil {
		tb.Fatalf("committer: %v", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx)
	}()
	tb.Cleanup(func() {
		stop()
		<-done
	})
	return c
}
