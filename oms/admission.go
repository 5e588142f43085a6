package oms

import (
	"sync"
	"sync/atomic"
	"time"
)

// admission bounds the orders in progress so that the ones accepted keep
// their latency when more is offered than the instance can take: past the
// limit an order is answered 503 at once, before any work.
//
// The limit follows the measured latency (additive increase,
// multiplicative decrease): every window, when the orders that completed
// took longer on average than the budget, the limit shrinks in proportion
// (at most by half); when they stayed within it and the limit was reached,
// it grows by an eighth. Below capacity the limit is never reached and
// nothing is refused; past it the limit settles where the mean time inside
// is the budget, whatever is offered.
//
// (A limit computed from throughput × budget, Little's law, does not work:
// when the instance's own latency exceeds the budget, each window's limit
// is smaller than the last, down to the floor.)
type admission struct {
	budget         time.Duration
	floor, ceiling int64

	inflight atomic.Int64
	peak     atomic.Int64 // most in flight in the current window
	done     atomic.Int64 // completions in the current window
	busy     atomic.Int64 // their summed time inside, nanoseconds
	mu       sync.Mutex
	start    atomic.Int64 // of the current window, unix nanoseconds
	limit    atomic.Int64
}

const admissionWindow = 250 * time.Millisecond

func newAdmission(budget time.Duration, floor, ceiling int) *admission {
	a := &admission{budget: budget, floor: int64(max(floor, 1)), ceiling: int64(max(ceiling, floor, 1))}
	a.start.Store(time.Now().UnixNano())
	a.limit.Store(min(max(4*a.floor, 64), a.ceiling))
	return a
}

// enter admits one order or reports that the instance is at its limit.
func (a *admission) enter(now time.Time) bool {
	a.tick(now)
	n := a.inflight.Add(1)
	if n > a.limit.Load() {
		a.inflight.Add(-1)
		return false
	}
	for p := a.peak.Load(); n > p && !a.peak.CompareAndSwap(p, n); p = a.peak.Load() {
	}
	return true
}

// full reports whether an order would be refused now (a peek for callers
// that want to refuse before decoding; enter decides).
func (a *admission) full() bool { return a.inflight.Load() >= a.limit.Load() }

// leave ends an admitted order that spent took inside.
func (a *admission) leave(took time.Duration) {
	a.inflight.Add(-1)
	a.busy.Add(int64(took))
	a.done.Add(1)
}

// tick closes the window when it is over and sets the next limit.
func (a *admission) tick(now time.Time) {
	if time.Duration(now.UnixNano()-a.start.Load()) < admissionWindow || !a.mu.TryLock() {
		return
	}
	defer a.mu.Unlock()
	if time.Duration(now.UnixNano()-a.start.Load()) < admissionWindow {
		return
	}
	a.start.Store(now.UnixNano())
	n, busy := a.done.Swap(0), a.busy.Swap(0)
	peak := a.peak.Swap(a.inflight.Load())
	if n == 0 {
		return // nothing measured: keep the limit
	}
	mean := time.Duration(busy / n)
	limit := a.limit.Load()
	switch {
	case mean > a.budget:
		limit = int64(float64(limit) * max(0.5, float64(a.budget)/float64(mean)))
	case peak >= limit:
		limit += max(1, limit/8)
	}
	a.limit.Store(min(max(limit, a.floor), a.ceiling))
}
