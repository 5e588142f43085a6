// Package wmsevents consumes the warehouse events topic (wms.events) and
// applies each event to its order through the fulfillment pipeline.
//
// Delivery is at least once (kafka-go has no exactly-once): a message is committed
// only after its event was applied, and the pipeline deduplicates by
// event_id in the same transaction as the state change, so a redelivery
// (after a crash, a rebalance, or a duplicate from the warehouse) changes
// nothing.
//
// One bad event never stops the pipeline. A message is decoded strictly
// (valid UTF-8, no unknown fields, no wrong types, no NUL characters, no
// trailing data, at most MaxMessageBytes) and validated
// (oms.ValidateWMSEvent) before anything is applied. A message that fails
// for good (malformed, invalid, unknown shipment, contradicting the
// shipment's state) is written to the dead-letter topic (wms.events.dlq:
// the original key and value, with the dlq.* headers of
// kafkabus.DeadLetter saying why, the source partition and offset and the
// time), counted in omsd_wmsevents_dead_lettered_total{reason}, and
// committed once that write succeeded. Any other error (the database
// unavailable, an internal error) is transient: the event is retried with
// capped backoff, never skipped and never dead-lettered, and counted while
// it waits (omsd_wmsevents_retrying_events, and outcome "retried" of
// omsd_wms_events_total), so a stalled worker is visible.
//
// Several omsd instances share the partitions through one consumer group.
// Within an instance, messages are applied by several workers, each owning
// the shipments whose key hashes to it, so the events of one shipment stay
// in order; offsets are committed per partition only up to the first
// message not yet applied.
package wmsevents

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/kafkabus"
)

// Applier applies one warehouse event (oms.FulfillmentService).
type Applier interface {
	ApplyWMSEvent(ctx context.Context, ev oms.WMSEvent) (*oms.Order, error)
}

// Config configures a consumer. Brokers is required; the zero value of the
// rest means defaults.
type Config struct {
	Brokers []string
	// GroupID is the consumer group shared by every omsd instance of one
	// deployment; default "omsd".
	GroupID string
	// Topic; default wms.events.
	Topic string
	// DeadLetterTopic receives the events that can never apply; default
	// wms.events.dlq.
	DeadLetterTopic string
	// MaxMessageBytes bounds a message's value; a larger one is malformed.
	// Default 64 KiB.
	MaxMessageBytes int
	// Workers apply events concurrently (per shipment in order); default 8.
	Workers int
	// MaxInFlight bounds fetched but uncommitted messages; default 1024.
	MaxInFlight int
	// MinBackoff and MaxBackoff bound the retry delay of a transient error;
	// defaults 50ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// SessionTimeout of the group membership; default 10s.
	SessionTimeout time.Duration
	// LagInterval is how often the group's lag is read from the broker
	// (committed offsets against high watermarks); default 5s.
	LagInterval time.Duration
	// Logger; default discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer

	// AfterApply, if set, runs after an event was applied and before its
	// message is committed; an error stops Run with that error, as a crash
	// at that point would (the message is delivered again). For tests.
	AfterApply func(m kafka.Message) error
}

func (c *Config) setDefaults() {
	if c.GroupID == "" {
		c.GroupID = "omsd"
	}
	if c.Topic == "" {
		c.Topic = oms.TopicWMSEvents
	}
	if c.DeadLetterTopic == "" {
		c.DeadLetterTopic = DeadLetterTopic
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 64 << 10
	}
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1024
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 50 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.LagInterval <= 0 {
		c.LagInterval = 5 * time.Second
	}
}

// DeadLetterTopic is the default dead-letter topic.
const DeadLetterTopic = "wms.events.dlq"

// Consumer applies wms.events to orders.
type Consumer struct {
	cfg Config
	app Applier
	dlq dlqWriter // set by Run

	events   *prometheus.CounterVec
	dead     *prometheus.CounterVec
	retrying prometheus.Gauge
	lag      *prometheus.GaugeVec

	partitionLag *prometheus.GaugeVec
}

type dlqWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// New builds a consumer.
func New(cfg Config, app Applier) (*Consumer, error) {
	if len(cfg.Brokers) == 0 || app == nil {
		return nil, errors.New("wmsevents: brokers and an applier are required")
	}
	cfg.setDefaults()
	c := &Consumer{cfg: cfg, app: app}
	c.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_wms_events_total",
		Help: "Warehouse events consumed, by type and outcome (applied, malformed, unknown_shipment, rejected, retried).",
	}, []string{"type", "outcome"})
	c.dead = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_wmsevents_dead_lettered_total",
		Help: "Warehouse events written to the dead-letter topic because they can never apply, by reason (malformed, invalid, unknown_shipment, conflict).",
	}, []string{"reason"})
	c.retrying = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "omsd_wmsevents_retrying_events",
		Help: "Warehouse events waiting for a retry after a transient error (their worker and partition wait with them).",
	})
	c.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "omsd_consumer_lag_messages",
		Help: "Messages of the topic the consumer group has not committed yet: the partitions' high watermarks less the group's committed offsets, read from the broker.",
	}, []string{"topic"})
	c.lag.WithLabelValues(cfg.Topic).Set(0) // exported from the start
	c.partitionLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "omsd_consumer_partition_lag_messages",
		Help: "omsd_consumer_lag_messages by partition.",
	}, []string{"topic", "partition"})
	if cfg.Registerer != nil {
		for _, col := range []prometheus.Collector{c.events, c.dead, c.retrying, c.lag, c.partitionLag} {
			if err := cfg.Registerer.Register(col); err != nil {
				return nil, fmt.Errorf("wmsevents: register metrics: %w", err)
			}
		}
	}
	return c, nil
}

// errStop wraps the AfterApply hook's error: Run ends with it.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }
func (e errStop) Unwrap() error { return e.err }

// Run consumes until ctx ends (returns nil). A reader that fails (lost
// connection, commit refused after a rebalance) is closed and opened again
// after a backoff; uncommitted messages are delivered again.
func (c *Consumer) Run(ctx context.Context) error {
	w, err := kafkabus.NewWriter(kafkabus.WriterConfig{Brokers: c.cfg.Brokers, Topic: c.cfg.DeadLetterTopic})
	if err != nil {
		return err
	}
	defer w.Close()
	c.dlq = w
	lagCtx, stopLag := context.WithCancel(ctx)
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		c.watchLag(lagCtx)
	}()
	defer func() {
		stopLag()
		<-lagDone
	}()
	backoff := time.Duration(0)
	for {
		err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var stop errStop
		if errors.As(err, &stop) {
			return stop.err
		}
		backoff = min(max(2*backoff, 200*time.Millisecond), 5*time.Second)
		c.cfg.Logger.Warn("oms.wmsevents: consumer restarts", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// pending is a fetched message and whether it was applied.
type pending struct {
	m    kafka.Message
	done bool
}

// session runs one reader until an error or the end of ctx.
func (c *Consumer) session(parent context.Context) error {
	r, err := kafkabus.NewReader(kafkabus.ReaderConfig{
		Brokers: c.cfg.Brokers, GroupID: c.cfg.GroupID, Topic: c.cfg.Topic, SessionTimeout: c.cfg.SessionTimeout,
	})
	if err != nil {
		return err
	}
	defer r.Close()
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)

	var (
		mu       sync.Mutex
		inflight = map[int][]*pending{} // partition -> fetched, in offset order
		slots    = make(chan struct{}, c.cfg.MaxInFlight)
		doneC    = make(chan *pending, c.cfg.MaxInFlight)
		wg       sync.WaitGroup
		stopped  atomic.Bool // the AfterApply hook "crashed" the consumer
	)
	work := make([]chan *pending, c.cfg.Workers)
	for i := range work {
		work[i] = make(chan *pending, 64)
		wg.Add(1)
		go func(in chan *pending) {
			defer wg.Done()
			for p := range in {
				if err := c.handle(ctx, p.m); err != nil {
					var stop errStop
					if errors.As(err, &stop) {
						stopped.Store(true)
					}
					cancel(err)
					continue // drain; this message stays uncommitted
				}
				doneC <- p
			}
		}(work[i])
	}

	// The committer commits, per partition, the longest applied prefix. It
	// runs until every worker has finished, so that a graceful stop
	// commits everything applied (fewer redeliveries after a rebalance);
	// after a "crash" (the AfterApply hook) it commits nothing more.
	commitDone := make(chan struct{})
	go func() {
		defer close(commitDone)
		failed := false
		for p := range doneC {
			mu.Lock()
			p.done = true
			q := inflight[p.m.Partition]
			var last *pending
			n := 0
			for n < len(q) && q[n].done {
				last = q[n]
				n++
			}
			inflight[p.m.Partition] = q[n:]
			mu.Unlock()
			if last == nil || failed || stopped.Load() {
				continue
			}
			cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err := r.CommitMessages(cctx, last.m)
			ccancel()
			if err != nil {
				failed = true
				cancel(fmt.Errorf("wmsevents: commit: %w", err))
				continue
			}
			for range n {
				<-slots
			}
		}
	}()

	var fetchErr error
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() == nil {
				fetchErr = fmt.Errorf("wmsevents: fetch: %w", err)
				cancel(fetchErr)
			}
			break
		}
		p := &pending{m: m}
		mu.Lock()
		inflight[m.Partition] = append(inflight[m.Partition], p)
		mu.Unlock()
		h := fnv.New32a()
		h.Write(m.Key)
		select {
		case work[int(h.Sum32()%uint32(len(work)))] <- p:
		case <-ctx.Done():
		}
	}
	for _, w := range work {
		close(w)
	}
	wg.Wait()
	close(doneC)
	<-commitDone
	cancel(nil)
	if parent.Err() != nil {
		return nil
	}
	return context.Cause(ctx)
}

// errMalformed marks a message that is not a warehouse event.
var errMalformed = errors.New("wmsevents: malformed message")

// Decode reads a warehouse event strictly: the value must be valid UTF-8,
// at most maxBytes, one JSON object with only the known fields, each of
// its type, no NUL character in any string, nothing after it; and the
// event must pass oms.ValidateWMSEvent. A decoding failure wraps
// errMalformed; a validation failure is oms.KindInvalid.
func Decode(value []byte, maxBytes int) (oms.WMSEvent, error) {
	var ev oms.WMSEvent
	switch {
	case maxBytes > 0 && len(value) > maxBytes:
		return ev, fmt.Errorf("%w: %d bytes, at most %d", errMalformed, len(value), maxBytes)
	case !utf8.Valid(value):
		return ev, fmt.Errorf("%w: not valid UTF-8", errMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return oms.WMSEvent{}, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return oms.WMSEvent{}, fmt.Errorf("%w: data after the event", errMalformed)
	}
	fields := []string{ev.EventID, string(ev.Type), ev.ShipmentID, ev.TrackingNumber, ev.Reason, ev.ReturnID}
	for _, l := range ev.Lines {
		fields = append(fields, l.SKU, l.Condition)
	}
	for _, f := range fields {
		if strings.ContainsRune(f, 0) {
			return oms.WMSEvent{}, fmt.Errorf("%w: a NUL character in a string", errMalformed)
		}
	}
	if err := oms.ValidateWMSEvent(ev); err != nil {
		return oms.WMSEvent{}, err
	}
	return ev, nil
}

// handle applies one message, retrying transient errors until they pass
// or ctx ends; a message that can never apply is dead-lettered. It returns
// an error only to stop the session (ctx ended or the AfterApply hook).
func (c *Consumer) handle(ctx context.Context, m kafka.Message) error {
	ev, err := Decode(m.Value, c.cfg.MaxMessageBytes)
	if err != nil {
		c.events.WithLabelValues("unknown", "malformed").Inc()
		reason := "invalid"
		if errors.Is(err, errMalformed) {
			reason = "malformed"
		}
		c.cfg.Logger.Warn("oms.wmsevents: malformed event dead-lettered", "partition", m.Partition, "offset", m.Offset, "err", err)
		return c.finish(ctx, m, reason, err)
	}
	typ := ev.Type
	backoff := c.cfg.MinBackoff
	retrying := false
	defer func() {
		if retrying {
			c.retrying.Dec()
		}
	}()
	for {
		_, err := c.app.ApplyWMSEvent(ctx, ev)
		outcome, reason := "", ""
		switch oms.KindOf(err) {
		case oms.KindInternal, oms.KindUnavailable, oms.KindRateLimited:
			if err == nil {
				outcome = "applied"
			}
		case oms.KindNotFound:
			outcome, reason = "unknown_shipment", "unknown_shipment"
			c.cfg.Logger.Warn("oms.wmsevents: event for an unknown shipment dead-lettered", "event_id", ev.EventID, "shipment_id", ev.ShipmentID)
		case oms.KindConflict:
			// Recorded by the pipeline as processed; nothing to retry.
			outcome, reason = "rejected", "conflict"
		default: // KindInvalid, KindBadRequest, KindTooLarge, KindUnauthorized
			outcome, reason = "malformed", "invalid"
			c.cfg.Logger.Warn("oms.wmsevents: invalid event dead-lettered", "event_id", ev.EventID, "err", err)
		}
		if outcome != "" {
			if retrying {
				retrying = false
				c.retrying.Dec()
			}
			c.events.WithLabelValues(string(typ), outcome).Inc()
			return c.finish(ctx, m, reason, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !retrying {
			retrying = true
			c.retrying.Inc()
		}
		c.events.WithLabelValues(string(typ), "retried").Inc()
		c.cfg.Logger.Warn("oms.wmsevents: transient error, retrying", "event_id", ev.EventID, "err", err, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

// finish ends a message: dead-letters it first when reason is set
// (retrying that write until it succeeds or ctx ends: the message is
// committed only after it), then runs the AfterApply hook.
func (c *Consumer) finish(ctx context.Context, m kafka.Message, reason string, cause error) error {
	if reason != "" {
		backoff := c.cfg.MinBackoff
		for {
			dl := kafkabus.DeadLetter(m, reason, cause, time.Now())
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := c.dlq.WriteMessages(wctx, dl)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.cfg.Logger.Warn("oms.wmsevents: dead-letter write failed, retrying", "partition", m.Partition, "offset", m.Offset, "err", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return ctx.Err()
			}
			backoff = min(2*backoff, c.cfg.MaxBackoff)
		}
		c.dead.WithLabelValues(reason).Inc()
	}
	if c.cfg.AfterApply != nil {
		if herr := c.cfg.AfterApply(m); herr != nil {
			return errStop{herr}
		}
	}
	return nil
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
