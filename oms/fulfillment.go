package oms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/omsd/omsd/sourcing"
)

// The fulfillment pipeline: what happens to an order after intake.
//
// What each operation does to the order is decided by the pure lifecycle
// functions (lifecycle.go, lifecycle_wms.go); this service is the
// orchestration around them. Every change is one SQL transaction on the
// order (TransitionOrder, or ApplyEvent for warehouse events, which also
// records the event id): the order document, its shipments, the stock
// ledger and the outbox events are written together or not at all. SQL is
// the truth.
//
// Ordering of the Redis side effects. The Change's hold effects (Commit,
// Release and Confirm of holds) run AFTER the SQL transaction has
// committed, never inside it (a transaction may be retried, and Redis
// cannot be rolled back). They are idempotent: hold ids are single-use,
// Commit and Release report true only the first time, Confirm of a
// confirmed hold is a no-op. If omsd dies between the SQL commit and
// Redis, the reconciler (inventory.Reconciler) repairs Redis from the
// ledger: a hold that no open shipment owns is released after the grace
// period (a cancelled, expired or shipped shipment), on hand follows the
// SQL stock table (lowered by shipments in the same transaction as the
// shipped status), and a deadline the ledger no longer has is confirmed.
// The one side effect that runs BEFORE the transaction is the reservation
// of new holds when a rejected shipment is sourced again (resourcing.go).

// FulfillmentStore is what the fulfillment pipeline needs of the SQL store.
type FulfillmentStore interface {
	// TransitionOrder runs fn on the locked order and writes what it
	// changed and the events it returns in one transaction.
	TransitionOrder(ctx context.Context, id string, fn func(o *Order) ([]OutboxEvent, error)) (*Order, error)
	// ApplyEvent is TransitionOrder plus the event id recorded as processed
	// in the same transaction (applied false: seen before, fn not called)
	// and the stock ledger of shipments fn ships. An fn error wrapping
	// ErrEventIgnored keeps the event id and returns the current order
	// with that error.
	ApplyEvent(ctx context.Context, eventID, orderID string, fn func(o *Order) ([]OutboxEvent, error)) (*Order, bool, error)
	// ShipmentOrder returns the order id of a shipment; ErrNotFound.
	ShipmentOrder(ctx context.Context, shipmentID string) (string, error)
	// DueForExpiry lists unpaid orders whose deadline is at or before now.
	DueForExpiry(ctx context.Context, now time.Time, limit int) ([]string, error)
	GetOrder(ctx context.Context, id string) (*Order, []byte, error)
}

// FulfillmentStock is what the pipeline needs of the inventory engine.
type FulfillmentStock interface {
	Stock
	Commit(ctx context.Context, node, holdID string) (bool, error)
	Confirm(ctx context.Context, node, holdID string) error
}

// PlanCatalog is the part of the catalog that re-sourcing plans with.
type PlanCatalog interface {
	Candidates() []sourcing.Node
	Rules() *sourcing.RuleSet
}

// FulfillmentConfig configures the pipeline. Zero values mean the
// defaults below; negative ones are refused.
type FulfillmentConfig struct {
	// MaxPlanAttempts bounds planning again after a lost reservation race
	// when re-sourcing; default 4.
	MaxPlanAttempts int
	// SideEffectTimeout bounds the Redis work after a commit; default 10s.
	// It runs on a context detached from the caller's: a client that hangs
	// up must not leave a committed change without its stock movement.
	SideEffectTimeout time.Duration
	// EventBatch bounds how many warehouse events one transaction applies
	// when the store can apply them together (EventBatchStore); default
	// 64; 1 applies each event in a transaction of its own.
	EventBatch int
	// ExpiryBatch is how many orders one ExpireDue pass takes; default 200.
	ExpiryBatch int
	// ExpiryPeriod is how often RunExpiry looks for due orders; default 1s.
	ExpiryPeriod time.Duration
	// Lease names this instance on the holds re-sourcing takes (see
	// Placer.Lease); nil: no owner.
	Lease Lease
	// Logger; default discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
}

func (c *FulfillmentConfig) setDefaults() {
	c.MaxPlanAttempts = cmpOr(c.MaxPlanAttempts, 4)
	c.SideEffectTimeout = cmpOr(c.SideEffectTimeout, 10*time.Second)
	c.ExpiryBatch = cmpOr(c.ExpiryBatch, 200)
	c.EventBatch = cmpOr(c.EventBatch, 64)
	c.ExpiryPeriod = cmpOr(c.ExpiryPeriod, time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports settings that cannot work (negative counts or
// durations); run it before setDefaults turns zeros into defaults.
func (c *FulfillmentConfig) Validate() error {
	var errs []error
	if c.MaxPlanAttempts < 0 {
		errs = append(errs, fmt.Errorf("MaxPlanAttempts %d is negative", c.MaxPlanAttempts))
	}
	if c.SideEffectTimeout < 0 {
		errs = append(errs, fmt.Errorf("SideEffectTimeout %s is negative", c.SideEffectTimeout))
	}
	if c.EventBatch < 0 {
		errs = append(errs, fmt.Errorf("EventBatch %d is negative", c.EventBatch))
	}
	if c.ExpiryBatch < 0 {
		errs = append(errs, fmt.Errorf("ExpiryBatch %d is negative", c.ExpiryBatch))
	}
	if c.ExpiryPeriod < 0 {
		errs = append(errs, fmt.Errorf("ExpiryPeriod %s is negative", c.ExpiryPeriod))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("oms: fulfillment config: %w", err)
	}
	return nil
}

// FulfillmentService runs the order's life after intake: warehouse events
// (acknowledged, shipped, rejected, cancelled, cancel refused), buyer
// cancellation, payment and the expiry of unpaid orders.
type FulfillmentService struct {
	cfg     FulfillmentConfig
	store   FulfillmentStore
	stock   FulfillmentStock
	catalog PlanCatalog
	placer  *Placer
	log     *slog.Logger
	// Now is the clock; tests replace it.
	Now func() time.Time
	// GiveBack, when set, returns the purchase-limit allowance of an order
	// whose Change says so (expired unpaid, cancelled before anything was
	// released, cancellation confirmed by the warehouse), after its
	// transition committed. It must be idempotent (the limit store is, per
	// order id).
	GiveBack func(ctx context.Context, o *Order)

	events *combiner[EventApply, EventOutcome] // nil: one transaction per event

	results    *prometheus.CounterVec
	eventBatch prometheus.Histogram
	resourced  *prometheus.CounterVec
	expired    prometheus.Counter
	stockErrs  *prometheus.CounterVec
}

// NewFulfillmentService builds the pipeline. store and stock are
// required; catalog may be nil for an instance that only expires orders
// (it cannot source rejected shipments again). The metrics are registered
// on cfg.Registerer; a registration error is returned.
func NewFulfillmentService(cfg FulfillmentConfig, store FulfillmentStore, stock FulfillmentStock, catalog PlanCatalog) (*FulfillmentService, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil || stock == nil {
		return nil, errors.New("oms: the fulfillment service needs a store and a stock engine")
	}
	cfg.setDefaults()
	f := &FulfillmentService{cfg: cfg, store: store, stock: stock, catalog: catalog, log: cfg.Logger, Now: time.Now,
		placer: &Placer{Stock: stock, Attempts: cfg.MaxPlanAttempts, Timeout: cfg.SideEffectTimeout, Lease: cfg.Lease, Log: cfg.Logger}}
	f.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_fulfillment_operations_total",
		Help: "Fulfillment operations (warehouse event types, cancel, pay, expire) by result: applied, duplicate, ignored, unchanged, conflict, error.",
	}, []string{"op", "result"})
	f.resourced = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_fulfillment_resourcing_total",
		Help: "Rejected shipments sourced again, by outcome: fulfilled, partial (backordered rest), none (backordered).",
	}, []string{"outcome"})
	f.expired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "omsd_fulfillment_expired_orders_total", Help: "Unpaid orders expired after their payment deadline.",
	})
	f.stockErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_fulfillment_stock_side_effect_errors_total",
		Help: "Redis side effects (commit, release, confirm) that failed after the SQL commit; the reconciler repairs them.",
	}, []string{"op"})
	f.eventBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "omsd_fulfillment_event_batch_size",
		Help:    "Warehouse events applied per SQL transaction.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
	})
	if bs, ok := store.(EventBatchStore); ok && cfg.EventBatch > 1 {
		f.events = newCombiner(cfg.EventBatch, func(ctx context.Context, evs []EventApply) []EventOutcome {
			return f.applyBatch(ctx, bs, evs)
		})
	}
	if reg := cfg.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{f.results, f.eventBatch, f.resourced, f.expired, f.stockErrs} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("oms: register fulfillment metrics: %w", err)
			}
		}
	}
	return f, nil
}

// step adapts a lifecycle function to the store's transition closure: the
// order of the Change replaces the locked one, its events go to the
// outbox, and *ch keeps the Change for after the commit (the zero Change
// after an error; the closure may run more than once).
func step(ch *Change, move func(o *Order) (Change, error)) func(o *Order) ([]OutboxEvent, error) {
	return func(o *Order) ([]OutboxEvent, error) {
		c, err := move(o)
		*ch = c
		if err != nil {
			return nil, err
		}
		*o = *c.Order
		return c.Events, nil
	}
}

// committed runs what follows a committed Change: its hold effects, then
// the purchase limits given back.
func (f *FulfillmentService) committed(ctx context.Context, o *Order, ch Change) {
	f.apply(ctx, o.ID, ch.Holds)
	if ch.GiveBackLimits {
		f.giveBack(ctx, o)
	}
}

func (f *FulfillmentService) giveBack(ctx context.Context, o *Order) {
	if f.GiveBack != nil && o != nil {
		f.GiveBack(ctx, o)
	}
}

// apply runs the hold effects of a committed transition. Failures are
// logged and counted, not returned: the change is committed, and the
// reconciler brings Redis back to the ledger.
func (f *FulfillmentService) apply(ctx context.Context, orderID string, h HoldEffects) {
	if h.Empty() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.SideEffectTimeout)
	defer cancel()
	for _, r := range h.Commit {
		if _, err := f.stock.Commit(ctx, r.Node, r.Hold); err != nil {
			f.stockErrs.WithLabelValues("commit").Inc()
			f.log.Error("commit shipped hold; the reconciler will repair the counters", "order_id", orderID, "node", r.Node, "hold_id", r.Hold, "err", err)
		}
	}
	for _, r := range h.Release {
		if _, err := f.stock.Release(ctx, r.Node, r.Hold); err != nil {
			f.stockErrs.WithLabelValues("release").Inc()
			f.log.Error("release hold; the reconciler will release it", "order_id", orderID, "node", r.Node, "hold_id", r.Hold, "err", err)
		}
	}
	for _, r := range h.Confirm {
		if err := f.stock.Confirm(ctx, r.Node, r.Hold); err != nil {
			f.stockErrs.WithLabelValues("confirm").Inc()
			f.log.Error("confirm paid hold; the reconciler will confirm it", "order_id", orderID, "node", r.Node, "hold_id", r.Hold, "err", err)
		}
	}
}

// ---- buyer operations ----

func validOrderID(id string) error {
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return Errorf(KindNotFound, SlugNotFound, "no such order")
	}
	return nil
}

// Cancel cancels an order of channel ("" = any channel, for operators);
// see the lifecycle function Cancel for what it does. Cancelling a
// cancelled (or cancel_requested) order returns it unchanged.
// Errors: KindNotFound (no such order, or another channel's), KindInvalid
// (reason too long), KindConflict already-shipped or order-expired.
func (f *FulfillmentService) Cancel(ctx context.Context, channel, id, reason string) (*Order, error) {
	if err := validOrderID(id); err != nil {
		return nil, err
	}
	if err := validCancelReason(reason); err != nil {
		return nil, err
	}
	var ch Change
	o, err := f.store.TransitionOrder(ctx, id, step(&ch, func(o *Order) (Change, error) {
		return Cancel(o, channel, reason, f.Now().UTC())
	}))
	return f.answer(ctx, "cancel", channel, id, o, ch, err)
}

// Pay records the payment of an order of channel ("" = any); see the
// lifecycle function Pay. The holds lose their deadline (Redis Confirm)
// after the commit. Paying again returns the order unchanged. Errors:
// KindNotFound, KindConflict expired (the payment deadline passed, or the
// order expired) or order-cancelled.
func (f *FulfillmentService) Pay(ctx context.Context, channel, id string) (*Order, error) {
	if err := validOrderID(id); err != nil {
		return nil, err
	}
	var ch Change
	o, err := f.store.TransitionOrder(ctx, id, step(&ch, func(o *Order) (Change, error) {
		return Pay(o, channel, f.Now().UTC())
	}))
	return f.answer(ctx, "pay", channel, id, o, ch, err)
}

// answer finishes a buyer operation: the current order when nothing was
// to do, the error, or the committed change's effects and its order.
func (f *FulfillmentService) answer(ctx context.Context, op, channel, id string, o *Order, ch Change, err error) (*Order, error) {
	switch {
	case errors.Is(err, errUnchanged):
		f.results.WithLabelValues(op, "unchanged").Inc()
		cur, _, err := f.store.GetOrder(ctx, id)
		if err != nil {
			return nil, err
		}
		if channel != "" && cur.Channel != channel {
			return nil, notYours()
		}
		return cur, nil
	case err != nil:
		f.results.WithLabelValues(op, resultOf(err)).Inc()
		return nil, err
	}
	f.results.WithLabelValues(op, "applied").Inc()
	f.committed(ctx, o, ch)
	return o, nil
}

func resultOf(err error) string {
	switch KindOf(err) {
	case KindConflict, KindNotFound, KindInvalid:
		return "conflict"
	}
	return "error"
}

// ---- expiry ----

// ExpireDue expires up to limit (<= 0: the configured batch) unpaid orders
// whose payment deadline is at or before now, each in its own transaction
// with an order.expired event, and releases their holds once, after the
// commit. It returns how many it expired. Several instances may run it at
// once: the status is checked again under the order's row lock, so an
// order expires (and its holds are released by this path) once. The Redis
// sweeper is only the backstop: it releases holds past deadline + grace,
// and Release is exactly-once, so the two never release a hold twice.
func (f *FulfillmentService) ExpireDue(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit <= 0 {
		limit = f.cfg.ExpiryBatch
	}
	ids, err := f.store.DueForExpiry(ctx, now, limit)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		var ch Change
		o, err := f.store.TransitionOrder(ctx, id, step(&ch, func(o *Order) (Change, error) {
			return Expire(o, now, f.Now().UTC())
		}))
		switch {
		case errors.Is(err, errUnchanged):
			f.results.WithLabelValues("expire", "unchanged").Inc()
		case err != nil:
			f.results.WithLabelValues("expire", "error").Inc()
			errs = append(errs, fmt.Errorf("expire %s: %w", id, err))
		default:
			n++
			f.expired.Inc()
			f.results.WithLabelValues("expire", "applied").Inc()
			f.committed(ctx, o, ch)
		}
	}
	return n, errors.Join(errs...)
}

// RunExpiry expires due orders every ExpiryPeriod until ctx ends; a full
// batch is followed at once by the next. It returns nil at the end.
func (f *FulfillmentService) RunExpiry(ctx context.Context) error {
	t := time.NewTicker(f.cfg.ExpiryPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for ctx.Err() == nil {
			n, err := f.ExpireDue(ctx, f.Now(), 0)
			if err != nil && ctx.Err() == nil {
				f.log.Warn("expire unpaid orders", "err", err)
			}
			if n < f.cfg.ExpiryBatch || err != nil {
				break
			}
		}
	}
}
