package inventory

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Liveness is kept by stores whose holds record their owner (Hold.Owner):
// every instance that reserves beats, and the reconciler releases within
// seconds the holds of an owner that stopped beating and that the ledger
// does not know (its process died between its reservation and its SQL
// commit), instead of waiting for ReconcilerConfig.Grace. redisstock and
// memstock implement it.
type Liveness interface {
	// Beat records that owner is alive for ttl from now (by the store's
	// clock) and registers it; it stays registered until ForgetOwners.
	// Errors: ErrInvalid.
	Beat(ctx context.Context, owner string, ttl time.Duration) error
	// Owners returns the registered owners, split by whether their last
	// heartbeat is still live, each sorted.
	Owners(ctx context.Context) (live, dead []string, err error)
	// ForgetOwners unregisters owners (a later Beat registers one again).
	ForgetOwners(ctx context.Context, owners []string) error
}

// ValidateOwner checks an owner (instance) id: non-empty, valid UTF-8, at
// most MaxIDLen bytes, without NUL bytes.
func ValidateOwner(owner string) error {
	if err := validateID("owner", owner); err != nil {
		return err
	}
	if strings.ContainsRune(owner, 0) {
		return fmt.Errorf("%w: owner id contains a NUL byte", ErrInvalid)
	}
	return nil
}

// HeartbeatConfig configures a Heartbeat. The zero value means defaults.
type HeartbeatConfig struct {
	// Every is the period of the beats; default 1 s.
	Every time.Duration
	// TTL is how long one beat keeps the owner alive; default 5 s. It must
	// exceed Every: a missed beat or two must not declare a live instance
	// dead.
	TTL time.Duration
	// Logger gets one line when the lease lapses and one when a new one
	// starts; default discards.
	Logger *slog.Logger
}

// Heartbeat is one instance's lease on the holds it takes. Each unbroken
// run of beats is one owner id, "<name>.<run>": when the beats lapse (none
// succeeded for TTL), the run's context is cancelled at once, so that a
// commit still running under it stops, and the next successful beat starts
// a new run under a new id. Holds taken under a lapsed id belong to a dead
// owner for good, whatever the process does next: the reconcilers of the
// other instances release those the ledger does not know, and the ids
// never come back to life.
type Heartbeat struct {
	store Liveness
	name  string
	cfg   HeartbeatConfig

	mu  sync.Mutex
	gen int
	cur *leaseRun // nil before the first beat and after a lapse
}

// leaseRun is one unbroken run of beats.
type leaseRun struct {
	owner  string
	ctx    context.Context
	cancel context.CancelFunc
	timer  *time.Timer // cancels the run TTL after its last successful beat started
}

// NewHeartbeat returns a Heartbeat whose owner ids start with name.
// Errors: ErrInvalid.
func NewHeartbeat(store Liveness, name string, cfg HeartbeatConfig) (*Heartbeat, error) {
	if err := ValidateOwner(name + ".0"); err != nil {
		return nil, err
	}
	if cfg.Every == 0 {
		cfg.Every = time.Second
	}
	if cfg.TTL == 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Every < 0 || cfg.TTL <= cfg.Every {
		return nil, fmt.Errorf("%w: heartbeat TTL %v not above its period %v", ErrInvalid, cfg.TTL, cfg.Every)
	}
	return &Heartbeat{store: store, name: name, cfg: cfg}, nil
}

// Current returns the owner id to put on new holds and a context that is
// cancelled when this run lapses; ok is false while there is no live run
// (nothing may be reserved then).
func (h *Heartbeat) Current() (owner string, ctx context.Context, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur == nil || h.cur.ctx.Err() != nil {
		return "", nil, false
	}
	return h.cur.owner, h.cur.ctx, true
}

// Beat beats once: it extends the current run, or starts a new one when
// there is none.
func (h *Heartbeat) Beat(ctx context.Context) error {
	h.mu.Lock()
	run := h.cur
	if run != nil && run.ctx.Err() != nil {
		run = nil
	}
	owner := fmt.Sprintf("%s.%d", h.name, h.gen)
	if run != nil {
		owner = run.owner
	}
	h.mu.Unlock()

	start := time.Now()
	if err := h.store.Beat(ctx, owner, h.cfg.TTL); err != nil {
		return err
	}
	left := h.cfg.TTL - time.Since(start)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case left <= 0:
		// The beat took longer than its TTL: it kept nothing alive.
	case run != nil && h.cur == run:
		if !run.timer.Reset(left) {
			run.timer.Stop() // fired meanwhile: the run is over
		}
	case run == nil && h.cur == nil || run == nil && h.cur.ctx.Err() != nil:
		rctx, cancel := context.WithCancel(context.Background())
		nr := &leaseRun{owner: owner, ctx: rctx, cancel: cancel}
		nr.timer = time.AfterFunc(left, func() { h.lapse(nr) })
		h.cur = nr
		h.gen++
		h.cfg.Logger.Info("inventory: stock lease started", "owner", owner)
	}
	return nil
}

// lapse ends run: its context is cancelled and a new beat starts a new
// owner id.
func (h *Heartbeat) lapse(run *leaseRun) {
	run.cancel()
	h.cfg.Logger.Warn("inventory: stock lease lapsed; holds taken under it are left to the reconcilers", "owner", run.owner)
}

// Stop ends the current run (at shutdown, after the last commit).
func (h *Heartbeat) Stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur != nil {
		h.cur.timer.Stop()
		h.cur.cancel()
	}
}

// Run beats at once and then every Every until ctx ends; a failed beat is
// logged and the next one tried on time. It returns nil when ctx ends.
func (h *Heartbeat) Run(ctx context.Context) error {
	t := time.NewTicker(h.cfg.Every)
	defer t.Stop()
	failing := false
	for {
		err := h.Beat(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			h.cfg.Logger.Error("inventory: heartbeat failed", "err", err)
		case err == nil && failing:
			failing = false
			h.cfg.Logger.Info("inventory: heartbeat recovered")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
