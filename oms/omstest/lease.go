package omstest

import (
	"context"
	"fmt"
	"sync"
)

// Lease is an oms.Lease a test lapses and renews by hand. A new Lease is
// live under owner "test.0".
type Lease struct {
	mu     sync.Mutex
	gen    int
	ctx    context.Context
	cancel context.CancelFunc
	live   bool
}

// NewLease returns a live lease.
func NewLease() *Lease {
	l := &Lease{}
	l.Renew()
	return l
}

// Current implements oms.Lease.
func (l *Lease) Current() (string, context.Context, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.live {
		return "", nil, false
	}
	return fmt.Sprintf("test.%d", l.gen), l.ctx, true
}

// Lapse ends the current claim: its context is cancelled.
func (l *Lease) Lapse() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.live {
		l.live = false
		l.cancel()
	}
}

// Renew lapses the current claim, if any, and starts a new one under the
// next owner id.
func (l *Lease) Renew() {
	l.Lapse()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx != nil {
		l.gen++
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.live = true
}
