package oms

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAdmissionLimitFollowsThroughputTimesBudget(t *testing.T) {
	a := newAdmission(50*time.Millisecond, 4, 1000)
	now := time.Unix(0, a.start.Load())
	// 1,000 orders completed in one window: 4,000/s, so 200 may be inside.
	for range 1000 {
		if !a.enter(now) {
			t.Fatal("refused below the ceiling before any measurement")
		}
		a.leave()
	}
	now = now.Add(admissionWindow)
	a.enter(now)
	a.leave()
	if got := a.limit.Load(); got != 200 {
		t.Fatalf("got limit %d, want 4000/s × 50ms = 200", got)
	}
	for i := range 200 {
		if !a.enter(now) {
			t.Fatalf("refused order %d within the limit", i)
		}
	}
	if a.enter(now) {
		t.Error("admitted an order past the limit")
	}
	// Nothing completes for a window: the limit falls to the floor, and an
	// order is admitted again once those inside leave.
	now = now.Add(admissionWindow)
	if a.enter(now) {
		t.Error("admitted an order past the limit")
	}
	if got := a.limit.Load(); got >= 200 {
		t.Errorf("got limit %d after a window without completions, want lower", got)
	}
	for range 200 {
		a.leave()
	}
	if !a.enter(now) {
		t.Error("refused with nothing inside")
	}
}

func TestAdmissionUnderConcurrency(t *testing.T) {
	a := newAdmission(time.Millisecond, 2, 8)
	var wg sync.WaitGroup
	var inside, most atomic.Int64
	for range 64 {
		wg.Go(func() {
			for range 500 {
				if !a.enter(time.Now()) {
					continue
				}
				n := inside.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				inside.Add(-1)
				a.leave()
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m > 8 {
		t.Errorf("got %d orders inside at once, want at most the ceiling of 8", m)
	}
	if n := a.inflight.Load(); n != 0 {
		t.Errorf("got %d in flight after every order left, want 0", n)
	}
}
