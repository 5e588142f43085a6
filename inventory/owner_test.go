package inventory_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/memstock"
)

// flaky is a Liveness whose beats fail while down is set.
type flaky struct {
	inventory.Liveness
	down atomic.Bool
}

func (f *flaky) Beat(ctx context.Context, owner string, ttl time.Duration) error {
	if f.down.Load() {
		return errors.New("redis unreachable")
	}
	return f.Liveness.Beat(ctx, owner, ttl)
}

func TestALapsedLeaseCancelsItsRunAndNeverComesBack(t *testing.T) {
	ctx := context.Background()
	store := &flaky{Liveness: memstock.New(memstock.Config{})}
	hb, err := inventory.NewHeartbeat(store, "api-1", inventory.HeartbeatConfig{Every: 20 * time.Millisecond, TTL: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := hb.Current(); ok {
		t.Fatal("Current before the first beat: got a lease, want none")
	}
	if err := hb.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	owner, run, ok := hb.Current()
	if !ok || owner != "api-1.0" {
		t.Fatalf("Current after a beat: got %q %v, want api-1.0", owner, ok)
	}
	// Beats keep the run alive past its TTL.
	for range 8 {
		time.Sleep(20 * time.Millisecond)
		if err := hb.Beat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if run.Err() != nil {
		t.Fatal("the run lapsed although every beat succeeded")
	}
	// Beats fail: the run's context is cancelled within the TTL.
	store.down.Store(true)
	select {
	case <-run.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("the run's context was not cancelled 2 s after the beats stopped")
	}
	if _, _, ok := hb.Current(); ok {
		t.Error("Current after a lapse: got a lease, want none")
	}
	// The next beat starts a new run under a new id: the holds of the old
	// one stay a dead owner's.
	store.down.Store(false)
	if err := hb.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	owner, _, ok = hb.Current()
	if !ok || owner != "api-1.1" {
		t.Errorf("Current after the lapse and a beat: got %q %v, want api-1.1", owner, ok)
	}
	live, dead, err := store.Owners(ctx)
	if err != nil || len(live) != 1 || live[0] != "api-1.1" || len(dead) != 1 || dead[0] != "api-1.0" {
		t.Errorf("Owners: got live %v dead %v (%v), want [api-1.1] [api-1.0]", live, dead, err)
	}
	hb.Stop()
	if _, _, ok := hb.Current(); ok {
		t.Error("Current after Stop: got a lease, want none")
	}
}

func TestHeartbeatRefusesATTLNotAboveItsPeriod(t *testing.T) {
	_, err := inventory.NewHeartbeat(memstock.New(memstock.Config{}), "api", inventory.HeartbeatConfig{Every: time.Second, TTL: time.Second})
	if !errors.Is(err, inventory.ErrInvalid) {
		t.Errorf("got %v, want ErrInvalid", err)
	}
}
