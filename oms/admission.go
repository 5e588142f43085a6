package oms

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// admission bounds the orders in progress so that the ones accepted keep
// their latency when more is offered than the instance can take. By
// Little's law the time an order spends inside is in-flight / throughput,
// so the limit follows the measured throughput: limit = throughput ×
// budget (at least floor, at most ceiling). Under the instance's capacity
// the orders inside stay far below the limit; past it the excess is
// answered at once.
type admission struct {
	budget         time.Duration
	floor, ceiling int64

	inflight atomic.Int64
	done     atomic.Int64 // completions in the current window
	mu       sync.Mutex
	start    atomic.Int64 // of the current window, unix nanoseconds
	rate     float64      // completions per second, smoothed (under mu)
	limit    atomic.Int64
}

const admissionWindow = 250 * time.Millisecond

func newAdmission(budget time.Duration, floor, ceiling int) *admission {
	a := &admission{budget: budget, floor: int64(floor), ceiling: int64(max(ceiling, floor))}
	a.start.Store(time.Now().UnixNano())
	a.limit.Store(a.ceiling)
	return a
}

// enter admits one order or reports that the instance is at its limit.
func (a *admission) enter(now time.Time) bool {
	a.tick(now)
	if a.inflight.Add(1) > a.limit.Load() {
		a.inflight.Add(-1)
		return false
	}
	return true
}

// leave ends an admitted order.
func (a *admission) leave() {
	a.inflight.Add(-1)
	a.done.Add(1)
}

// tick closes the window when it is over and sets the next limit.
func (a *admission) tick(now time.Time) {
	if time.Duration(now.UnixNano()-a.start.Load()) < admissionWindow || !a.mu.TryLock() {
		return
	}
	defer a.mu.Unlock()
	elapsed := time.Duration(now.UnixNano() - a.start.Load())
	if elapsed < admissionWindow {
		return
	}
	rate := float64(a.done.Swap(0)) / elapsed.Seconds()
	a.start.Store(now.UnixNano())
	if a.rate == 0 {
		a.rate = rate
	} else {
		a.rate = 0.7*a.rate + 0.3*rate
	}
	limit := int64(math.Ceil(a.rate * a.budget.Seconds()))
	a.limit.Store(min(max(limit, a.floor), a.ceiling))
}
