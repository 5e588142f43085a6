// Package relay publishes the transactional outbox to Kafka.
//
// Every state change writes its events to the outbox table in its own
// transaction; the relay moves them to Kafka:
//
//  1. claim: in a short transaction, take the oldest pending rows by the
//     database time they were enqueued (FOR UPDATE SKIP LOCKED) and lease
//     them, with each key's earlier pending rows; rows of a key whose
//     earlier rows are in another relay's hands are left alone, so each
//     key stays in its sequence (the aggregate's version) order;
//  2. publish the batch with one WriteMessages call (kafka-go keeps the
//     order of a call's messages within a partition, and the key picks the
//     partition);
//  3. mark the rows sent.
//
// Finding rows never trusts an instance's clock: the relay keeps its
// position in database time (enqueued_at, now() of the inserting
// transaction), claims from there, re-reads a lookback that covers the
// longest transaction (so a row that committed long after its now() is
// found within LookbackEvery), and sweeps the whole outbox every 30 s for
// rows whose lease ended (a relay that died).
//
// A row the broker refuses (message too large, invalid or unknown topic)
// is tried alone; refused for good, or MaxAttempts times, it is set aside
// as dead in the outbox (with its error, counted in
// omsd_outbox_dead_lettered_total and omsd_outbox_dead_rows) and blocks
// nothing behind it; refused for now, it waits a backoff and its key's
// later rows wait with it. A broker out of reach counts no attempt.
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
	ClaimOutboxWindow(ctx context.Context, from time.Time, lookback, lease time.Duration, limit int) ([]oms.OutboxEvent, time.Time, error)
	MarkOutboxSent(ctx context.Context, ids []string, at time.Time) error
	UnclaimOutbox(ctx context.Context, ids []string) (time.Time, error)
	FailOutbox(ctx context.Context, ids []string, reason string, permanent bool, maxAttempts int, retryBase, retryMax time.Duration) ([]string, time.Time, error)
	OutboxBacklog(ctx context.Context) (time.Duration, int64, error)
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
	// LagEvery is how often the lag and dead-row gauges are refreshed;
	// default 1s.
	LagEvery time.Duration
	// Lookback is how far back (database time) the relay re-reads the
	// outbox for rows that committed after its position had passed them.
	// It must cover the longest transaction that writes the outbox;
	// default 15s (the intake batch transaction times out after 10s). A
	// transaction longer than that is published by the 30s sweep.
	Lookback time.Duration
	// LookbackEvery is how often that re-read runs; default 500ms, which
	// bounds the wait of a late commit.
	LookbackEvery time.Duration
	// MaxAttempts is how many times the broker may refuse a row (tried
	// alone) before it is set aside as dead; default 10. A refusal for good
	// (message too large, invalid topic) sets it aside at once.
	MaxAttempts int
	// RetryBase and RetryMax bound the backoff of a refused row (doubling
	// per attempt); defaults 100ms and 5s.
	RetryBase, RetryMax time.Duration
	// Logger; default discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	// Now is the clock of the sent_at stamp and of the relay's own timers;
	// default time.Now. Which rows are found, and in which order, never
	// depends on it.
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
	if c.Lookback <= 0 {
		c.Lookback = 15 * time.Second
	}
	if c.LookbackEvery <= 0 {
		c.LookbackEvery = 500 * time.Millisecond
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 10
	}
	if c.RetryBase <= 0 {
		c.RetryBase = 100 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Second
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
	deadRows  prometheus.Gauge
	published *prometheus.CounterVec
	dead      *prometheus.CounterVec
	refused   *prometheus.CounterVec
	failures  prometheus.Counter

	// The claim's position (database time, see Once) and the times of the
	// last lookback and full sweep (this relay's clock: only intervals
	// matter); a Relay runs one Once at a time.
	from               time.Time
	lastLook, lastFull time.Time
}

// New builds a relay over an outbox and a writer.
func New(cfg Config, outbox Outbox, w Writer) (*Relay, error) {
	if outbox == nil || w == nil {
		return nil, errors.New("relay: an outbox and a writer are required")
	}
	cfg.setDefaults()
	r := &Relay{cfg: cfg, outbox: outbox, w: w}
	r.lag = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "omsd_outbox_lag_seconds", Help: "How long the oldest pending outbox row has waited, by the database clock (0 when none is pending).",
	})
	r.deadRows = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "omsd_outbox_dead_rows", Help: "Outbox rows the relay set aside because the broker refused them (they wait for an operator).",
	})
	r.published = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_outbox_published_total", Help: "Outbox events published to Kafka, by topic (a republication after a crash counts again).",
	}, []string{"topic"})
	r.dead = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_outbox_dead_lettered_total", Help: "Outbox rows set aside as dead because the broker refused them, by reason.",
	}, []string{"reason"})
	r.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_outbox_refused_total", Help: "Times the broker refused one outbox row tried alone, by reason (the row is retried or set aside).",
	}, []string{"reason"})
	r.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "omsd_outbox_publish_failures_total", Help: "Relay passes that failed (claim, publish or mark); the rows are retried.",
	})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.lag, r.deadRows, r.published, r.dead, r.refused, r.failures} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("relay: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// fullScanEvery: the whole outbox is swept this often, for rows whose
// lease ended (their relay died) and rows of transactions longer than the
// lookback.
const fullScanEvery = 30 * time.Second

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
	lag, dead, err := r.outbox.OutboxBacklog(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.cfg.Logger.Warn("oms.relay: outbox lag", "err", err)
		}
		return
	}
	r.lag.Set(lag.Seconds())
	r.deadRows.Set(float64(dead))
}

// Once claims, publishes and marks one batch, and returns how many rows it
// claimed. Rows it could not publish are given back for the next pass.
func (r *Relay) Once(ctx context.Context) (int, error) {
	now := r.cfg.Now()
	// Claim from the position (the newest row claimed, in database time),
	// which skips the dead index entries that sent rows leave behind until
	// VACUUM (or, on CockroachDB, until garbage collection). Every
	// LookbackEvery the claim re-reads the last Lookback instead, for rows
	// that committed after the position passed their enqueued_at (now()
	// of a transaction is its start), and every fullScanEvery it reads
	// everything.
	from, lookback, head := r.from, time.Duration(0), true
	switch {
	case now.Sub(r.lastFull) >= fullScanEvery:
		from, head, r.lastFull, r.lastLook = time.Time{}, false, now, now
	case now.Sub(r.lastLook) >= r.cfg.LookbackEvery:
		from, lookback, head, r.lastLook = time.Time{}, r.cfg.Lookback, false, now
	}
	batch, next, err := r.outbox.ClaimOutboxWindow(ctx, from, lookback, r.cfg.Lease, r.cfg.Batch)
	if err != nil {
		return 0, err
	}
	if head && !next.IsZero() {
		r.from = next
	}
	if len(batch) == 0 {
		return 0, nil
	}
	res := r.publish(ctx, batch)
	if len(res.sent) > 0 {
		if r.cfg.BeforeMark != nil {
			if err := r.cfg.BeforeMark(ctx, res.sent); err != nil {
				return len(batch), errStop{err}
			}
		}
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := r.outbox.MarkOutboxSent(mctx, ids(res.sent), r.cfg.Now())
		cancel()
		if err != nil {
			// Published but not marked: republished after the lease, under
			// the same event ids.
			return len(batch), fmt.Errorf("relay: mark sent: %w", err)
		}
		for _, e := range res.sent {
			r.published.WithLabelValues(e.Topic).Inc()
		}
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, f := range res.refused {
		dead, oldest, err := r.outbox.FailOutbox(bctx, []string{f.ev.ID}, f.err.Error(), f.permanent, r.cfg.MaxAttempts, r.cfg.RetryBase, r.cfg.RetryMax)
		if err != nil {
			// The row waits for its lease, and is tried again then.
			r.cfg.Logger.Warn("oms.relay: record a refused row; it waits for its lease", "event_id", f.ev.ID, "err", err)
			continue
		}
		r.refused.WithLabelValues(f.reason).Inc()
		r.back(oldest)
		if len(dead) > 0 {
			r.dead.WithLabelValues(f.reason).Inc()
			r.cfg.Logger.Error("oms.relay: outbox row set aside as dead: the broker refuses it",
				"event_id", f.ev.ID, "topic", f.ev.Topic, "seq", f.ev.Seq, "reason", f.reason, "err", f.err)
		} else {
			r.cfg.Logger.Warn("oms.relay: the broker refused an outbox row; retried after a backoff",
				"event_id", f.ev.ID, "topic", f.ev.Topic, "reason", f.reason, "err", f.err)
		}
	}
	if len(res.retry) > 0 {
		oldest, err := r.outbox.UnclaimOutbox(bctx, res.retry)
		if err != nil {
			r.cfg.Logger.Warn("oms.relay: unclaim failed rows; they wait for their lease", "err", err)
		}
		r.back(oldest)
	}
	if res.err != nil {
		return len(batch), fmt.Errorf("relay: publish %d of %d events: %w", len(res.retry), len(batch), res.err)
	}
	return len(batch), nil
}

// back moves the position back to a row given back for a retry.
func (r *Relay) back(at time.Time) {
	if !at.IsZero() && at.Before(r.from) {
		r.from = at
	}
}

// refusal is a row the broker refused when tried alone.
type refusal struct {
	ev        oms.OutboxEvent
	err       error
	reason    string
	permanent bool
}

// outcome of one publication.
type outcome struct {
	sent    []oms.OutboxEvent
	refused []refusal
	retry   []string // not published for a reason not their own
	err     error    // that reason
}

func message(e oms.OutboxEvent) kafka.Message {
	return kafka.Message{
		Topic:   e.Topic,
		Key:     []byte(e.Key),
		Value:   e.Payload,
		Time:    e.At,
		Headers: []kafka.Header{{Key: "event_id", Value: []byte(e.ID)}},
	}
}

// publish writes the batch in one call. If the broker refused some of it,
// the rows not known written are tried one by one, in order, to find the
// ones it refuses (kafka-go fails a whole call for one message too large
// or one unknown topic, and the broker fails a whole partition batch).
func (r *Relay) publish(ctx context.Context, batch []oms.OutboxEvent) outcome {
	msgs := make([]kafka.Message, len(batch))
	for i, e := range batch {
		msgs[i] = message(e)
	}
	// Give up well before the lease ends: past it another relay may
	// publish the same rows (harmless, same ids, but wasteful).
	pctx, cancel := context.WithTimeout(ctx, r.cfg.Lease/2)
	defer cancel()
	werr := r.w.WriteMessages(pctx, msgs...)
	if werr == nil {
		return outcome{sent: batch}
	}
	// A cancelled or failed write has an unknown outcome for each message;
	// those reported failed are retried (maybe a duplicate, never a loss),
	// those reported written are marked.
	var res outcome
	var suspects []oms.OutboxEvent
	var we kafka.WriteErrors
	if errors.As(werr, &we) && len(we) == len(batch) {
		for i, e := range batch {
			if we[i] != nil {
				suspects = append(suspects, e)
			} else {
				res.sent = append(res.sent, e)
			}
		}
	} else {
		suspects = batch
	}
	if _, _, refused := classify(werr); !refused {
		// Not the broker's answer (unreachable, timed out): nothing is the
		// rows' fault.
		res.retry, res.err = ids(suspects), werr
		return res
	}
	// Tried alone, in order. A row refused for now holds back the later
	// rows of its key (they are retried with it); a dead one does not.
	held := map[[2]string]bool{}
	for i, e := range suspects {
		k := [2]string{e.Topic, e.Key}
		if held[k] || pctx.Err() != nil {
			res.retry = append(res.retry, e.ID)
			continue
		}
		err := r.w.WriteMessages(pctx, message(e))
		if err == nil {
			res.sent = append(res.sent, e)
			continue
		}
		reason, permanent, refused := classify(err)
		if !refused {
			for _, rest := range suspects[i:] {
				res.retry = append(res.retry, rest.ID)
			}
			res.err = err
			return res
		}
		res.refused = append(res.refused, refusal{ev: e, err: err, reason: reason, permanent: permanent})
		if !permanent {
			held[k] = true
		}
	}
	return res
}

// classify tells whether err is the broker's (or kafka-go's) refusal of the
// messages themselves, as opposed to a broker out of reach; a refusal is
// permanent when no retry can succeed. reason is a metric label.
func classify(err error) (reason string, permanent, refused bool) {
	var tooLarge kafka.MessageTooLargeError
	if errors.As(err, &tooLarge) {
		return "message_too_large", true, true
	}
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil {
				err = e
				break
			}
		}
	}
	var ke kafka.Error
	if !errors.As(err, &ke) {
		return "", false, false
	}
	switch ke {
	case kafka.MessageSizeTooLarge, kafka.RecordListTooLarge:
		return "message_too_large", true, true
	case kafka.InvalidTopic:
		return "invalid_topic", true, true
	case kafka.UnknownTopicOrPartition:
		return "unknown_topic", false, true
	}
	if ke.Temporary() {
		// Leader elections, too few replicas, timeouts: the broker's
		// state, not the message's (kafka-go has retried them already).
		return "", false, false
	}
	return "broker_refused", true, true
}

func ids(evs []oms.OutboxEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}
