// Package wmsevents consumes the warehouse events topic (wms.events) and
// applies each event to its order through the fulfillment pipeline.
//
// Delivery is at least once (kafka-go has no exactly-once): a message is committed
// only after its event was applied, and the pipeline deduplicates by
// event_id in the same transaction as the state change, so a redelivery
// (after a crash, a rebalance, or a duplicate from the warehouse) changes
// nothing. Malformed messages and events that cannot apply (unknown
// shipment, contradicting a final state) are logged and committed; any
// other error is transient and the event is retried with backoff, never
// skipped.
//
// Several omsd instances share the partitions through one consumer group.
// Within an instance, messages are applied by several workers, each owning
// the shipments whose key hashes to it, so the events of one shipment stay
// in order; offsets are committed per partition only up to the first
// message not yet applied.
package wmsevents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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
	// Workers apply events concurrently (per shipment in order); default 8.
	Workers int
	// MaxInFlight bounds fetched but uncommitted messages; default 1024.
	MaxInFlight int
	// MinBackoff and MaxBackoff bound the retry delay of a transient error;
	// defaults 50ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// SessionTimeout of the group membership; default 10s.
	SessionTimeout time.Duration
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
}

// Consumer applies wms.events to orders.
type Consumer struct {
	cfg Config
	app Applier

	events *prometheus.CounterVec
	lag    *prometheus.GaugeVec
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
	c.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "omsd_consumer_lag_messages", Help: "Messages behind the end of the topic, as the consumer last saw it.",
	}, []string{"topic"})
	c.lag.WithLabelValues(cfg.Topic).Set(0) // exported from the start
	if cfg.Registerer != nil {
		for _, col := range []prometheus.Collector{c.events, c.lag} {
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

	// Lag gauge.
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.lag.WithLabelValues(c.cfg.Topic).Set(float64(r.Stats().Lag))
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

// handle applies one message, retrying transient errors until they pass
// or ctx ends. It returns an error only to stop the session (ctx ended or
// the AfterApply hook).
func (c *Consumer) handle(ctx context.Context, m kafka.Message) error {
	var ev oms.WMSEvent
	if err := json.Unmarshal(m.Value, &ev); err != nil {
		c.events.WithLabelValues("unknown", "malformed").Inc()
		c.cfg.Logger.Warn("oms.wmsevents: malformed message skipped", "partition", m.Partition, "offset", m.Offset, "err", err)
		return nil
	}
	typ := ev.Type
	if err := oms.ValidateWMSEvent(ev); err != nil {
		c.events.WithLabelValues("unknown", "malformed").Inc()
		c.cfg.Logger.Warn("oms.wmsevents: invalid event skipped", "partition", m.Partition, "offset", m.Offset, "event_id", ev.EventID, "err", err)
		return nil
	}
	backoff := c.cfg.MinBackoff
	for {
		_, err := c.app.ApplyWMSEvent(ctx, ev)
		outcome := ""
		switch oms.KindOf(err) {
		case oms.KindInternal, oms.KindUnavailable:
			if err == nil {
				outcome = "applied"
			}
		case oms.KindNotFound:
			outcome = "unknown_shipment"
			c.cfg.Logger.Warn("oms.wmsevents: event for an unknown shipment skipped", "event_id", ev.EventID, "shipment_id", ev.ShipmentID)
		case oms.KindInvalid, oms.KindBadRequest:
			outcome = "malformed"
			c.cfg.Logger.Warn("oms.wmsevents: invalid event skipped", "event_id", ev.EventID, "err", err)
		default: // KindConflict: recorded by the pipeline, nothing to retry
			outcome = "rejected"
		}
		if outcome != "" {
			c.events.WithLabelValues(string(typ), outcome).Inc()
			if c.cfg.AfterApply != nil {
				if herr := c.cfg.AfterApply(m); herr != nil {
					return errStop{herr}
				}
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.events.WithLabelValues(string(typ), "retried").Inc()
		c.cfg.Logger.Warn("oms.wmsevents: transient error, retrying", "event_id", ev.EventID, "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}
