package oms

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Hundreds of concurrent calls: each gets its own answer, batches never
// exceed the bound, never run two at a time, and gather calls while one
// runs (fewer batches than calls).
func TestCombinerAnswersEveryCallFromBatchesThatNeverOverlap(t *testing.T) {
	var running, batches, biggest atomic.Int64
	c := newCombiner(16, func(_ context.Context, qs []int) []int {
		if running.Add(1) != 1 {
			t.Error("two batches ran at once")
		}
		defer running.Add(-1)
		batches.Add(1)
		if n := int64(len(qs)); n > biggest.Load() {
			biggest.Store(n)
		}
		if len(qs) > 16 {
			t.Errorf("batch of %d, bound 16", len(qs))
		}
		time.Sleep(time.Millisecond)
		rs := make([]int, len(qs))
		for i, q := range qs {
			rs[i] = q * 2
		}
		return rs
	})
	const calls = 400
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := c.do(context.Background(), i); got != 2*i {
				t.Errorf("call %d answered %d", i, got)
			}
		}()
	}
	wg.Wait()
	if n := batches.Load(); n >= calls || biggest.Load() < 2 {
		t.Errorf("%d batches for %d calls, biggest %d: calls did not gather", n, calls, biggest.Load())
	}
	// Everything answered: the next call leads at once.
	if got := c.do(context.Background(), 7); got != 14 {
		t.Errorf("got %d", got)
	}
}
