package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Start-up backoff between attempts to reach a dependency: doubling from
// startMinBackoff to startMaxBackoff, each pause drawn in [d/2, d] so that
// instances started together do not knock in step.
const (
	startMinBackoff = 100 * time.Millisecond
	startMaxBackoff = 5 * time.Second
	// attemptTimeout bounds one attempt (a dependency that accepts the
	// connection but does not answer).
	attemptTimeout = 10 * time.Second
)

// waitForDependency calls try until it succeeds, ctx ends, or deadline
// passes (it always tries once), logging every failed attempt with its
// error cleaned by redact (no credentials) and the pause before the next.
// It returns the last error, naming the dependency, when it gives up.
func waitForDependency(ctx context.Context, log *slog.Logger, dep string, deadline time.Time, redact func(string) string, try func(context.Context) error) error {
	start := time.Now()
	backoff := startMinBackoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, min(attemptTimeout, max(time.Until(deadline), time.Second)))
		err := try(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				log.Info("dependency up", "dependency", dep, "attempts", attempt, "waited", time.Since(start).Round(time.Millisecond).String())
			}
			return nil
		}
		msg := redact(err.Error())
		if ctx.Err() != nil {
			return fmt.Errorf("%s: start-up interrupted: %w", dep, ctx.Err())
		}
		pause := backoff/2 + rand.N(backoff/2+1)
		if time.Now().Add(pause).After(deadline) {
			log.Error("dependency not reachable; giving up", "dependency", dep, "attempts", attempt,
				"waited", time.Since(start).Round(time.Millisecond).String(), "err", msg)
			return fmt.Errorf("%s not reachable after %d attempts in %s (-start.timeout): %s",
				dep, attempt, time.Since(start).Round(time.Millisecond), msg)
		}
		log.Warn("waiting for a dependency", "dependency", dep, "attempt", attempt, "err", msg, "retry_in", pause.Round(time.Millisecond).String())
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: start-up interrupted: %w", dep, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, startMaxBackoff)
	}
}

// dependencies pings database, Redis and the broker for /readyz and
// omsd_dependency_up{dependency}: every readiness probe and a background
// pass every 10 s set the gauge, so it is fresh without probes.
type dependencies struct {
	checks map[string]func(context.Context) error
	up     *prometheus.GaugeVec
	log    *slog.Logger

	mu   sync.Mutex
	last map[string]bool
}

// newDependencies starts the gauge at what start-up found: up, except
// the names in down.
func newDependencies(reg prometheus.Registerer, log *slog.Logger, checks map[string]func(context.Context) error, down ...string) (*dependencies, error) {
	d := &dependencies{checks: checks, log: log, last: map[string]bool{},
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "omsd_dependency_up",
			Help: "Whether the dependency answered its last check (1) or not (0): database, redis, broker. A broker down does not fail readiness (the outbox keeps the events).",
		}, []string{"dependency"})}
	for name := range checks {
		up, v := !slices.Contains(down, name), 0.0
		if up {
			v = 1
		}
		d.up.WithLabelValues(name).Set(v)
		d.last[name] = up
	}
	if err := reg.Register(d.up); err != nil {
		return nil, err
	}
	return d, nil
}

// check returns the named check, recording its outcome.
func (d *dependencies) check(name string) func(context.Context) error {
	return func(ctx context.Context) error {
		err := d.checks[name](ctx)
		d.record(name, err)
		return err
	}
}

func (d *dependencies) record(name string, err error) {
	v := 0.0
	if err == nil {
		v = 1
	}
	d.up.WithLabelValues(name).Set(v)
	d.mu.Lock()
	was := d.last[name]
	d.last[name] = err == nil
	d.mu.Unlock()
	switch {
	case was && err != nil:
		d.log.Warn("dependency down", "dependency", name, "err", err)
	case !was && err == nil:
		d.log.Info("dependency up again", "dependency", name)
	}
}

// Run checks every dependency every interval until ctx ends.
func (d *dependencies) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		var wg sync.WaitGroup
		for name := range d.checks {
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				err := d.checks[name](cctx)
				if ctx.Err() == nil { // not a check cut short by the shutdown
					d.record(name, err)
				}
			})
		}
		wg.Wait()
	}
}
