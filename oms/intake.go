package oms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/sourcing"
)

// Limits is the per-customer purchase limit store (flash-sale rule).
type Limits interface {
	Take(ctx context.Context, promo, customer, sku, orderID string, qty, limit int64, until time.Time) error
	GiveBack(ctx context.Context, promo, customer, sku, orderID string) error
}

// Promotion limits how many units of a SKU one customer may buy during a
// window.
type Promotion struct {
	ID               string    `json:"id"`
	SKU              string    `json:"sku"`
	PerCustomerLimit int64     `json:"per_customer_limit"`
	StartsAt         time.Time `json:"starts_at"`
	EndsAt           time.Time `json:"ends_at"`
}

// Catalog is the in-memory view of nodes, rules and promotions that
// intake plans with; it is refreshed in the background.
type Catalog interface {
	Node(id string) (Node, bool)
	// Candidates are the nodes sourcing may choose from, in the form
	// sourcing takes (shared, read-only).
	Candidates() []sourcing.Node
	Rules() *sourcing.RuleSet
	// Promotion returns the promotion active for sku at now.
	Promotion(sku string, now time.Time) (Promotion, bool)
}

// OrderReader reads stored orders.
type OrderReader interface {
	// GetOrder returns the order and the hash of the request that created
	// it; ErrNotFound when absent.
	GetOrder(ctx context.Context, id string) (*Order, []byte, error)
}

// IntakeConfig configures order intake. Zero values mean defaults.
type IntakeConfig struct {
	// PaymentTimeout: how long a pending-payment order keeps its stock;
	// default 30 minutes.
	PaymentTimeout time.Duration
	// HoldGrace is added to the Redis deadline of an unpaid reservation, so
	// that the SQL-driven expiry (authoritative) runs first and the Redis
	// sweeper is only the backstop; default 5 minutes.
	HoldGrace time.Duration
	// MaxPlanAttempts bounds planning again after a lost race; default 4.
	MaxPlanAttempts int
	// ResolveTimeout bounds the work after an unclear commit; default 10s.
	ResolveTimeout time.Duration
}

// Intake takes orders: it checks them, plans and reserves their stock,
// and commits them through the group committer.
type Intake struct {
	cfg          IntakeConfig
	Checks       []Check
	ReviewChecks []ReviewCheck
	catalog      Catalog
	placer       *Placer
	limits       Limits
	committer    *Committer
	store        BatchStore
	orders       OrderReader
	log          *slog.Logger
	now          func() time.Time
	flight       singleflight.Group

	outcomes *prometheus.CounterVec
	latency  prometheus.Histogram
	replans  prometheus.Counter
	holds    *prometheus.CounterVec
	plans    *prometheus.CounterVec
	perOrder prometheus.Histogram
}

// IntakeDeps are the collaborators of Intake.
type IntakeDeps struct {
	Catalog   Catalog
	Stock     Stock
	Limits    Limits
	Committer *Committer
	Store     BatchStore
	Orders    OrderReader
	Log       *slog.Logger
	Now       func() time.Time
}

// NewIntake builds an intake with the default checks; append to Checks
// and ReviewChecks to extend them.
func NewIntake(cfg IntakeConfig, d IntakeDeps, reg prometheus.Registerer) *Intake {
	if cfg.PaymentTimeout <= 0 {
		cfg.PaymentTimeout = 30 * time.Minute
	}
	if cfg.HoldGrace <= 0 {
		cfg.HoldGrace = 5 * time.Minute
	}
	if cfg.MaxPlanAttempts <= 0 {
		cfg.MaxPlanAttempts = 4
	}
	if cfg.ResolveTimeout <= 0 {
		cfg.ResolveTimeout = 10 * time.Second
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	in := &Intake{cfg: cfg, Checks: DefaultChecks(), catalog: d.Catalog, placer: &Placer{Stock: d.Stock, Attempts: cfg.MaxPlanAttempts, Timeout: cfg.ResolveTimeout, Log: d.Log}, limits: d.Limits,
		committer: d.Committer, store: d.Store, orders: d.Orders, log: d.Log, now: d.Now}
	in.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_intake_orders_total", Help: "Orders submitted, by channel and outcome.",
	}, []string{"channel", "outcome"})
	in.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "omsd_intake_duration_seconds", Help: "Time to take one order, from decoded request to answer.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
	})
	in.replans = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "omsd_intake_replans_total", Help: "Orders planned again after losing a reservation race.",
	})
	in.holds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_intake_holds_total", Help: "Orders put on hold, by reason.",
	}, []string{"reason"})
	in.plans = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_sourcing_plans_total", Help: "Sourcing plans by outcome.",
	}, []string{"outcome"})
	in.perOrder = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "omsd_sourcing_shipments_per_order", Help: "Shipments per sourced order (split rate).",
		Buckets: []float64{1, 2, 3, 4, 5, 8},
	})
	if reg != nil {
		reg.MustRegister(in.outcomes, in.latency, in.replans, in.holds, in.plans, in.perOrder)
	}
	return in
}

// Result is the answer to a submission.
type Result struct {
	Order   *Order
	Created bool // 201; false: 200 with the original order
}

type flightResult struct {
	order   *Order
	created bool
}

// Submit takes one order for channel. It returns the stored order and
// whether this call created it. Errors carry a Kind: KindInvalid (422,
// every field at fault), KindConflict (409 insufficient-stock or
// idempotency-conflict), KindUnavailable (503: stock not loaded, commit
// failed; nothing is kept and a retry is safe).
func (in *Intake) Submit(ctx context.Context, channel, idemKey string, req *OrderRequest) (res Result, err error) {
	start := in.now()
	defer func() {
		in.latency.Observe(time.Since(start).Seconds())
		in.outcomes.WithLabelValues(channel, outcomeLabel(res, err)).Inc()
	}()
	now := in.now()
	ci := &CheckInput{Channel: channel, Req: req, Node: in.catalog.Node, Now: now}
	if err := RunChecks(in.Checks, ci); err != nil {
		return res, err
	}
	id := OrderID(channel, req.ExternalID)
	hash := RequestHash(req)

	if len(idemKey) > 255 {
		return res, Invalid("bad Idempotency-Key", FieldError{"Idempotency-Key", "at most 255 characters"})
	}
	// An Idempotency-Key is not looked up first: the group commit inserts
	// it with the order and a key that already belongs to another order
	// turns this one into a 409 (OutcomeIdemTaken), at no extra round trip.
	// Concurrent copies on this instance share one attempt; copies on
	// other instances collide on the order id in SQL.
	leader := false
	v, err, _ := in.flight.Do(id, func() (any, error) {
		leader = true
		o, created, err := in.take(ctx, ci, idemKey, id, hash)
		if err != nil {
			return nil, err
		}
		return flightResult{order: o, created: created}, nil
	})
	if err != nil {
		return res, err
	}
	fr := v.(flightResult)
	if !leader {
		// The leader answered for its own body; a follower with another
		// body for the same external_id is a conflict.
		if _, h, err := in.orders.GetOrder(ctx, id); err != nil || !slices.Equal(h, hash) {
			if err != nil && KindOf(err) != KindNotFound {
				return res, unavailable("order lookup failed", err)
			}
			return res, idemConflict()
		}
		return Result{Order: fr.order}, nil
	}
	return Result{Order: fr.order, Created: fr.created}, nil
}

func idemConflict() error {
	return Errorf(KindConflict, SlugIdempotencyConflict, "this external_id or Idempotency-Key was used for a different order body")
}

func unavailable(detail string, err error) error {
	return &Error{Kind: KindUnavailable, Slug: SlugUnavailable, Detail: detail, Err: err, RetryAfter: time.Second}
}

func outcomeLabel(res Result, err error) string {
	if err == nil {
		switch {
		case res.Created && res.Order.Status == OrderInReview:
			return "held"
		case res.Created:
			return "created"
		default:
			return "duplicate"
		}
	}
	var e *Error
	if errors.As(err, &e) {
		switch e.Slug {
		case SlugInsufficientStock, SlugIdempotencyConflict, SlugValidation, SlugLimitExceeded:
			return string(e.Slug)
		}
		switch e.Kind {
		case KindUnavailable:
			return "unavailable"
		case KindInvalid:
			return "validation"
		}
	}
	return "error"
}

// existing answers a request whose order id is already stored: 200 with
// the order when the request is the same, 409 otherwise.
func (in *Intake) existing(ctx context.Context, id string, hash []byte) (*Order, bool, error) {
	o, h, err := in.orders.GetOrder(ctx, id)
	if err != nil {
		return nil, false, err
	}
	if !slices.Equal(h, hash) {
		return nil, false, idemConflict()
	}
	return o, false, nil
}

// take does the work of one order: hold checks, limits, plan and reserve,
// group commit, and the resolution of the outcome.
func (in *Intake) take(ctx context.Context, ci *CheckInput, idemKey, id string, hash []byte) (*Order, bool, error) {
	channel, req, now := ci.Channel, ci.Req, ci.Now
	// No read before the work: a copy of a stored order collides on the
	// order id at commit (ON CONFLICT DO NOTHING), releases what it
	// reserved and answers with the stored order. Skipping a read per order
	// halves the database round trips of the common case.
	var reasons []string
	for _, hc := range in.ReviewChecks {
		reason, err := hc.Fn(ctx, ci)
		if err != nil {
			return nil, false, unavailable("order checks are unavailable", err)
		}
		if reason != "" {
			reasons = append(reasons, reason)
		}
	}

	taken, err := in.takeLimits(ctx, id, req, now)
	if err != nil {
		return nil, false, err
	}
	giveBack := func() {
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.ResolveTimeout)
		defer cancel()
		for _, p := range taken {
			if err := in.limits.GiveBack(gctx, p.ID, req.Customer.ID, p.SKU, id); err != nil {
				in.log.Error("give back purchase limit", "order_id", id, "promotion", p.ID, "err", err)
			}
		}
	}

	o := &Order{
		ID: id, ExternalID: req.ExternalID, Channel: channel,
		PaymentStatus: req.Payment.Status, Customer: req.Customer, ShipTo: req.ShipTo,
		Lines: req.Lines, Currency: req.Currency, Total: req.Value(), Fulfillment: req.Fulfillment,
		Attribution: req.Attribution, ReviewReasons: reasons, Version: 1, CreatedAt: now.UTC(), UpdatedAt: now.UTC(),
	}
	var holdDeadline time.Time
	switch {
	case len(reasons) > 0:
		o.Status = OrderInReview
	case req.Payment.Status == PaymentPending:
		o.Status = OrderPendingPayment
	default:
		o.Status = OrderReleased
	}
	if req.Payment.Status == PaymentPending {
		until := now.Add(in.cfg.PaymentTimeout).UTC().Truncate(time.Millisecond)
		o.ReservedUntil = &until
		holdDeadline = until.Add(in.cfg.HoldGrace)
	}

	shipments, err := in.reserve(ctx, o, holdDeadline)
	if err != nil {
		giveBack()
		if KindOf(err) == KindConflict {
			// A retry of an order committed meanwhile (by another instance)
			// is answered with the order, not with a stock error.
			if eo, _, e2 := in.existing(ctx, id, hash); e2 == nil || KindOf(e2) == KindConflict {
				return eo, false, e2
			}
		}
		return nil, false, err
	}
	o.Shipments = shipments
	for _, r := range reasons {
		in.holds.WithLabelValues(r).Inc()
	}

	doc, err := json.Marshal(o)
	if err != nil {
		in.releaseAll(ctx, o.Shipments)
		giveBack()
		return nil, false, err
	}
	no := &NewOrder{Order: o, RequestHash: hash, IdemKey: idemKey, Doc: doc, Events: creationEvents(o, doc, now)}
	err = in.committer.Commit(ctx, no)
	if err != nil {
		return in.resolve(ctx, no, hash, err, giveBack)
	}
	switch no.Outcome {
	case OutcomeInserted:
		o.encoded = doc
		return o, true, nil
	case OutcomeIdemTaken:
		in.releaseAll(ctx, o.Shipments)
		giveBack()
		return nil, false, idemConflict()
	default: // a copy committed first: ours is redundant
		in.releaseAll(ctx, o.Shipments)
		return in.existing(ctx, id, hash)
	}
}

// resolve settles a commit whose outcome is not known (an error, maybe an
// ambiguous COMMIT): the deterministic id says whether the order is
// stored, and its hold ids whether it is ours.
func (in *Intake) resolve(ctx context.Context, no *NewOrder, hash []byte, cause error, giveBack func()) (*Order, bool, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.ResolveTimeout)
	defer cancel()
	o := no.Order
	stored, err := in.store.OrdersExist(rctx, []string{o.ID})
	if err != nil {
		// We cannot tell; keep the reservation for the reconciler, which
		// releases holds that no stored shipment owns after its grace.
		in.log.Error("commit outcome unknown; reservation left to the reconciler", "order_id", o.ID, "commit_err", cause, "err", err)
		return nil, false, unavailable("the order could not be stored; retry with the same external_id", errors.Join(cause, errCommitUnknown))
	}
	holds, ok := stored[o.ID]
	if ok {
		mine := len(o.Shipments) > 0 && slices.Contains(holds, o.Shipments[0].HoldID)
		if mine {
			return o, true, nil
		}
		in.releaseAll(rctx, o.Shipments)
		return in.existing(rctx, o.ID, hash)
	}
	in.releaseAll(rctx, o.Shipments)
	giveBack()
	in.log.Warn("group commit failed; reservations released", "order_id", o.ID, "err", cause)
	return nil, false, unavailable("the order could not be stored; nothing was kept, retry with the same external_id", cause)
}

func (in *Intake) releaseAll(ctx context.Context, ships []Shipment) { in.placer.Release(ctx, ships) }

// takeLimits takes the per-customer purchase limits of promoted SKUs,
// before the stock; a refusal is a 422 naming the line.
func (in *Intake) takeLimits(ctx context.Context, id string, req *OrderRequest, now time.Time) ([]Promotion, error) {
	if in.limits == nil {
		return nil, nil
	}
	var taken []Promotion
	for i, l := range req.Lines {
		p, ok := in.catalog.Promotion(l.SKU, now)
		if !ok {
			continue
		}
		err := in.limits.Take(ctx, p.ID, req.Customer.ID, l.SKU, id, l.Qty, p.PerCustomerLimit, p.EndsAt)
		if err == nil {
			taken = append(taken, p)
			continue
		}
		for _, t := range taken {
			_ = in.limits.GiveBack(context.WithoutCancel(ctx), t.ID, req.Customer.ID, t.SKU, id)
		}
		if errors.Is(err, inventory.ErrLimitExceeded) {
			e := Invalid("a purchase limit is exceeded", FieldError{fmt.Sprintf("lines[%d].qty", i),
				fmt.Sprintf("exceeds the limit of %d units per customer of promotion %s", p.PerCustomerLimit, p.ID)})
			e.Slug = SlugLimitExceeded
			return nil, e
		}
		return nil, unavailable("purchase limits are unavailable", err)
	}
	return taken, nil
}

// reserve places the order's lines; a plan that cannot be filled is a
// 409 insufficient-stock.
func (in *Intake) reserve(ctx context.Context, o *Order, deadline time.Time) ([]Shipment, error) {
	status := ShipmentPending
	if o.Status == OrderReleased {
		status = ShipmentRequested
	}
	placed, err := in.placer.Place(ctx, Placement{Order: sourcingOrder(o, nil), Candidates: in.catalog.Candidates(),
		Rules: in.catalog.Rules(), Status: status, Deadline: deadline})
	in.replans.Add(float64(placed.Replans))
	if placed.Plan != nil {
		in.plans.WithLabelValues(string(placed.Plan.Outcome)).Inc()
	}
	if err != nil {
		return nil, err
	}
	if placed.Filled() {
		in.perOrder.Observe(float64(len(placed.Shipments)))
		return placed.Shipments, nil
	}
	reason := "no plan"
	if placed.Plan != nil {
		reason = placed.Plan.Reason
	}
	return nil, Errorf(KindConflict, SlugInsufficientStock, "the stock cannot be reserved under the sourcing rules: %s", reason)
}

// creationEvents are the outbox rows of a new order: order.created, and
// shipment.requested for each shipment of an order released at once.
func creationEvents(o *Order, doc []byte, now time.Time) []OutboxEvent {
	evs := []OutboxEvent{orderEventDoc(EventOrderCreated, o, doc, now)}
	if o.Status == OrderReleased {
		for i := range o.Shipments {
			evs = append(evs, shipmentEvent(EventShipmentRequested, o, &o.Shipments[i], now))
		}
	}
	return evs
}

// GiveBackLimits returns a function that gives back the purchase-limit
// allowance an order took for its promoted SKUs (the promotion active when
// the order was created), for orders that expire unpaid or are cancelled.
// Errors are logged: the allowance only ever errs on the customer's side.
func GiveBackLimits(limits Limits, catalog Catalog, log *slog.Logger) func(ctx context.Context, o *Order) {
	return func(ctx context.Context, o *Order) {
		if limits == nil || o == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		for _, l := range o.Lines {
			p, ok := catalog.Promotion(l.SKU, o.CreatedAt)
			if !ok {
				continue
			}
			if err := limits.GiveBack(ctx, p.ID, o.Customer.ID, l.SKU, o.ID); err != nil {
				log.Error("give back purchase limit", "order_id", o.ID, "promotion", p.ID, "err", err)
			}
		}
	}
}
