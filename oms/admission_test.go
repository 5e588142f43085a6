package oms

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// window runs one admission window in which n orders enter and leave after
// took each, and returns the limit set when the next window starts.
func window(a *admission, now *time.Time, n int, took time.Duration) int64 {
	for range n {
		if a.enter(*now) {
			a.leave(took)
		}
	}
	*now = now.Add(admissionWindow)
	a.tick(*now)
	return a.limit.Load()
}

func TestAdmissionShrinksWhenOrdersTakeLongerThanTheBudget(t *testing.T) {
	a := newAdmission(100*time.Millisecond, 8, 1000)
	now := time.Unix(0, a.start.Load())
	start := a.limit.Load()
	// Orders take twice the budget: the limit halves.
	if got := window(a, &now, 10, 200*time.Millisecond); got != start/2 {
		t.Errorf("after a window at twice the budget: got limit %d, want %d", got, start/2)
	}
	// Ten times the budget: at most halved again, never below the floor.
	for range 10 {
		window(a, &now, 10, time.Second)
	}
	if got := a.limit.Load(); got != 8 {
		t.Errorf("after long overload: got limit %d, want the floor 8", got)
	}
	// Past the limit orders are refused at once.
	for range 8 {
		if !a.enter(now) {
			t.Fatal("refused within the limit")
		}
	}
	if !a.full() || a.enter(now) {
		t.Error("admitted an order past the limit")
	}
}

func TestAdmissionGrowsOnlyWhileTheLimitIsReachedWithinTheBudget(t *testing.T) {
	a := newAdmission(100*time.Millisecond, 8, 100)
	now := time.Unix(0, a.start.Load())
	start := a.limit.Load()
	// Fast orders that never fill the limit: it stays.
	if got := window(a, &now, 10, time.Millisecond); got != start {
		t.Errorf("below capacity: got limit %d, want it kept at %d", got, start)
	}
	// The limit is reached and the orders stay fast: it grows by an eighth
	// a window, up to the ceiling.
	for i := int64(0); i < start; i++ {
		a.enter(now)
	}
	for range int(start) {
		a.leave(time.Millisecond)
	}
	now = now.Add(admissionWindow)
	a.tick(now)
	if got := a.limit.Load(); got != start+start/8 {
		t.Errorf("limit reached within the budget: got %d, want %d", got, start+start/8)
	}
	for range 40 {
		l := a.limit.Load()
		for range l {
			a.enter(now)
		}
		for range l {
			a.leave(time.Millisecond)
		}
		now = now.Add(admissionWindow)
		a.tick(now)
	}
	if got := a.limit.Load(); got != 100 {
		t.Errorf("got limit %d, want the ceiling 100", got)
	}
	// A window without completions keeps the limit.
	now = now.Add(admissionWindow)
	a.tick(now)
	if got := a.limit.Load(); got != 100 {
		t.Errorf("after an idle window: got limit %d, want it kept", got)
	}
}

func TestAdmissionUnderConcurrency(t *testing.T) {
	a := newAdmission(time.Millisecond, 2, 8)
	var wg sync.WaitGroup
	var inside, most atomic.Int64
	for range 64 {
		wg.Go(func() {
			for range 500 {
				start := time.Now()
				if !a.enter(start) {
					continue
				}
				n := inside.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				inside.Add(-1)
				a.leave(time.Since(start))
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
