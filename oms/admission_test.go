package oms

import (
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
