// Package relay publishes the transactional outbox to Kafka.
//
// Every state change writes its events to the outbox table in its own
// transaction; the relay moves them to Kafka:
//
//  1. claim: in a short transaction, take the oldest unsent rows
//     (ORDER BY created_at, seq ... FOR UPDATE SKIP LOCKED) and stamp them
//     with a lease (claimed_until); rows of a key whose earlier rows are in
//     another relay's hands are left alone, so each key stays in order;
//  2. publish the batch with one WriteMessages call (kafka-go keeps the
//     order of a call's messages within a partition, and the key picks the
//     partition);
//  3. mark the rows sent.
//
// A relay that dies between 2 and 3 leaves rows claimed but unsent: when
// the lease ends another relay (or the same one, restarted) publishes them
// again under the same event id, because the row is the event. Consumers
// deduplicate by event id, so a row can reach Kafka twice but never as
// two different events. Several relays run at once safely: SKIP LOCKED and
// the lease keep them on different rows.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/omsd/omsd/oms"
)

// Outbox is what the relay needs of the SQL store (pgstore.Store).
type Outbox interface {
	ClaimOutboxSince(ctx context.Context, since, now, leaseUntil time.Time, limit int) ([]oms.OutboxEvent, error)
	MarkOutboxSent(ctx context.Context, ids []string, at time.Time) error
	UnclaimOutbox(ctx context.Context, ids []string) error
	OldestUnsentOutbox(ctx context.Context) (time.Time, bool, error)
}

// Writer is the Kafka producer (a *kafka.Writer from kafkabus.NewWriter).
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Config configures a relay. The zero value means defaults.
type Config struct {
	// Batch is the most rows claimed and published at once; default 500.
	Batch int
	// Lease is how long claimed rows belong to this relay; default 30s. A
	// publication is cancelled after half of it, so that a slow relay does
	// not publish rows another one has taken over.
	Lease time.Duration
	// Idle is the poll period when the outbox is empty; default 10ms. A
	// full batch is followed at once by the next claim.
	Idle time.Duration
	// LagEvery is how often the lag gauge is refreshed; default 1s.
	LagEvery time.Duration
	// Logger; default discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	// Now is the clock; default time.Now.
	Now func() time.Time

	// BeforeMark, if set, runs after a batch was published and before it
	// is marked sent; an error stops Run with that error, leaving the rows
	// published but unmarked, as a crash at that point would. For tests.
	BeforeMark func(ctx context.Context, batch []oms.OutboxEvent) error
}

func (c *Config) setDefaults() {
	if c.Batch <= 0 {
		c.Batch = 500
	}
	if c.Lease <= 0 {
		c.Lease = 30 * time.Second
	}
	if c.Idle <= 0 {
		c.Idle = 10 * time.Millisecond
	}
	if c.LagEvery <= 0 {
		c.LagEvery = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Relay publishes the outbox. Create it with New; Run it.
type Relay struct {
	cfg    Config
	outbox Outbox
	w      Writer

	lag       prometheus.Gauge
	published *prometheus.CounterVec
	failures  prometheus.Counter

	// low and lastFull are the claim's low-water mark (see Once); a Relay
	// runs one Once at a time.
	low, lastFull time.Time
}

// New builds a relay over an outbox and a writer.
func New(cfg Config, outbox Outbox, w Writer) (*Relay, error) {
	if outbox == nil || w == nil {
		return nil, errors.New("relay: an outbox and a writer are required")
	}
	cfg.setDefaults()
	r := &Relay{cfg: cfg, outbox: outbox, w: w}
	r.lag = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "omsd_outbox_lag_seconds", Help: "Age of the oldest unsent outbox row (0 when every row is sent).",
	})
	r.published = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_outbox_published_total", Help: "Outbox events published to Kafka, by topic (a republication after a crash counts again).",
	}, []string{"topic"})
	r.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "omsd_outbox_publish_failures_total", Help: "Relay passes that failed (claim, publish or mark); the rows are retried.",
	})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.lag, r.published, r.failures} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("relay: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// The relay's low-water mark: rows created claimLookback before the newest
// claimed row are still looked at (a transaction commits a little after
// it stamps created_at), and every fullScanEvery the claim starts from the
// beginning to pick up rows that committed later than that.
const (
	claimLookback = 2 * time.Second
	fullScanEvery = 30 * time.Second
)

// errStop wraps the BeforeMark hook's error: Run ends with it.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }
func (e errStop) Unwrap() error { return e.err }

// Run publishes until ctx ends (then it returns nil). Errors of a pass are
// logged and retried with backoff; only the BeforeMark hook stops it.
func (r *Relay) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	var lastLag time.Time
	for {
		if ctx.Err() != nil {
			return nil
		}
		if now := r.cfg.Now(); now.Sub(lastLag) >= r.cfg.LagEvery {
			lastLag = now
			r.updateLag(ctx)
		}
		n, err := r.Once(ctx)
		var stop errStop
		switch {
		case errors.As(err, &stop):
			return stop.err
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			r.failures.Inc()
			backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
			r.cfg.Logger.Warn("oms.relay: publish outbox", "err", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return nil
			}
			continue
		}
		backoff = 0
		if n >= r.cfg.Batch {
			continue // more waiting
		}
		if !sleep(ctx, r.cfg.Idle) {
			return nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *Relay) updateLag(ctx context.Context) {
	at, ok, err := r.outbox.OldestUnsentOutbox(ctx)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			r.cfg.Logger.Warn("oms.relay: outbox lag", "err", err)
		}
	case !ok:
		r.lag.Set(0)
	default:
		r.lag.Set(max(r.cfg.Now().Sub(at).Seconds(), 0))
	}
}

// Once claims, publishes and marks one batch, and returns how many rows it
// claimed. Rows it could not publish are given back for the next pass.
func (r *Relay) Once(ctx context.Context) (int, error) {
	now := r.cfg.Now()
	// Claim above a low-water mark (the newest row claimed, less a
	// lookback for rows that commit a little after their created_at), and
	// from the start of the outbox every FullScanEvery for stragglers: sent
	// rows linger as dead index entries until VACUUM, and a claim that
	// starts at the oldest walks them all.
	since := r.low
	if now.Sub(r.lastFull) >= fullScanEvery {
		since, r.lastFull = time.Time{}, now
	}
	batch, err := r.outbox.ClaimOutboxSince(ctx, since, now, now.Add(r.cfg.Lease), r.cfg.Batch)
	if err != nil {
		return 0, err
	}
	for _, e := range batch {
		if low := e.At.Add(-claimLookback); low.After(r.low) {
			r.low = low
		}
	}
	if len(batch) == 0 {
		return 0, nil
	}
	msgs := make([]kafka.Message, len(batch))
	for i, e := range batch {
		msgs[i] = kafka.Message{
			Topic:   e.Topic,
			Key:     []byte(e.Key),
			Value:   e.Payload,
			Time:    e.At,
			Headers: []kafka.Header{{Key: "event_id", Value: []byte(e.ID)}},
		}
	}
	// Give up well before the lease ends: past it another relay may
	// publish the same rows (harmless, same ids, but wasteful).
	pctx, cancel := context.WithTimeout(ctx, r.cfg.Lease/2)
	werr := r.w.WriteMessages(pctx, msgs...)
	cancel()
	sent := batch
	var failed []string
	if werr != nil {
		// A cancelled or failed write has an unknown outcome for each
		// message; those reported failed are retried (maybe a duplicate,
		// never a loss), those reported written are marked.
		var we kafka.WriteErrors
		if errors.As(werr, &we) && len(we) == len(batch) {
			sent = sent[:0:0]
			for i, e := range batch {
				if we[i] != nil {
					failed = append(failed, e.ID)
				} else {
					sent = append(sent, e)
				}
			}
		} else {
			sent = nil
			for _, e := range batch {
				failed = append(failed, e.ID)
			}
		}
	}
	if len(sent) > 0 {
		if r.cfg.BeforeMark != nil {
			if err := r.cfg.BeforeMark(ctx, sent); err != nil {
				return len(batch), errStop{err}
			}
		}
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := r.outbox.MarkOutboxSent(mctx, ids(sent), r.cfg.Now())
		cancel()
		if err != nil {
			// Published but not marked: republished after the lease, under
			// the same event ids.
			return len(batch), fmt.Errorf("relay: mark sent: %w", err)
		}
		for _, e := range sent {
			r.published.WithLabelValues(e.Topic).Inc()
		}
	}
	if len(failed) > 0 {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := r.outbox.UnclaimOutbox(uctx, failed); err != nil {
			r.cfg.Logger.Warn("oms.relay: unclaim failed rows; they wait for their lease", "err", err)
		}
		cancel()
		return len(batch), fmt.Errorf("relay: publish %d of %d events: %w", len(failed), len(batch), werr)
	}
	return len(batch), nil
}

func ids(evs []oms.OutboxEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}
