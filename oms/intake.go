package oms

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/sourcing"
)

// Catalog is the in-memory view of nodes, rules and promotions that
// intake plans with; it is refreshed in the background.
type Catalog interface {
	Node(id string) (Node, bool)
	// Candidates are the nodes sourcing may choose from (shared, read-only).
	Candidates() []sourcing.Node
	Rules() *sourcing.RuleSet
	// Promotion returns the promotion active for sku at now.
	Promotion(sku string, now time.Time) (Promotion, bool)
}

// IntakeConfig configures order intake. Zero values mean the defaults
// written next to each field.
type IntakeConfig struct {
	// PaymentTimeout: how long a pending-payment order keeps its stock;
	// default 30 minutes.
	PaymentTimeout time.Duration
	// HoldGrace is added to the Redis deadline of an unpaid order's holds,
	// so that the SQL-driven expiry (authoritative) runs first and the
	// Redis sweeper is only the backstop; default 5 minutes.
	HoldGrace time.Duration
	// MaxPlanAttempts bounds planning again after a lost race; default 4.
	MaxPlanAttempts int
	// SettleTimeout bounds the work after the commit (settling an unclear
	// outcome, giving back holds and limits); default 10s.
	SettleTimeout time.Duration
	// LatencyBudget is the admission budget: the limit on the orders in
	// progress on this instance shrinks while they take longer than this
	// on average, and grows while they fit in it and the limit is reached.
	// Past the limit an order is answered 503 overloaded at once, before
	// any work, so that accepted orders keep their latency; default 100ms.
	LatencyBudget time.Duration
	// MinInFlight and MaxInFlight bound that limit; defaults 16 and 1024.
	MinInFlight, MaxInFlight int
	// Review tunes the built-in review checks.
	Review ReviewConfig
	// Registerer receives the metrics; nil: none.
	Registerer prometheus.Registerer
	Log        *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *IntakeConfig) setDefaults() {
	c.PaymentTimeout = cmpOr(c.PaymentTimeout, 30*time.Minute)
	c.HoldGrace = cmpOr(c.HoldGrace, 5*time.Minute)
	c.MaxPlanAttempts = cmpOr(c.MaxPlanAttempts, 4)
	c.SettleTimeout = cmpOr(c.SettleTimeout, 10*time.Second)
	c.LatencyBudget = cmpOr(c.LatencyBudget, 100*time.Millisecond)
	c.MinInFlight = cmpOr(c.MinInFlight, 16)
	c.MaxInFlight = cmpOr(c.MaxInFlight, 1024)
	c.Review.setDefaults()
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot work.
func (c IntakeConfig) Validate() error {
	if c.PaymentTimeout < 0 || c.HoldGrace < 0 || c.MaxPlanAttempts < 0 || c.SettleTimeout < 0 || c.MaxInFlight < 0 || c.MinInFlight < 0 || c.LatencyBudget < 0 {
		return errors.New("oms: intake settings must not be negative")
	}
	return nil
}

// IntakeDeps are the collaborators of Intake. Limits and Recent may be
// nil (no purchase limits, no built-in review checks).
type IntakeDeps struct {
	Catalog   Catalog
	Stock     Stock
	Limits    inventory.Limits
	Recent    Recent
	Committer *Committer
	Store     OrderStore
	// Lease names this instance on its holds (see Placer.Lease); give the
	// committer the same one (CommitterConfig.Lease). Nil: no owner.
	Lease Lease
	// View, if set, is the availability intake plans from (see
	// AvailabilityView); nil: levels are read before every plan.
	View *AvailabilityView
	// Customers, if set, matches every order to an omsd customer and
	// decides its attribution (see Customers); nil: orders keep the
	// channel's customer id only and their own attribution.
	Customers *Customers
}

// Intake takes orders: checks, review checks, purchase limits, placement
// (plan and reserve), group commit, and the settling of the outcome.
type Intake struct {
	cfg IntakeConfig
	// Checks validate an order before any work; append to extend them.
	Checks []Check
	// ReviewChecks run after the built-in review checks, in the same step.
	ReviewChecks []ReviewCheck

	catalog   Catalog
	placer    *Placer
	limits    *limitTaker
	recent    Recent
	customers *Customers
	committer *Committer
	store     OrderStore
	log       *slog.Logger
	flight    singleflight.Group
	admit     *admission
	m         intakeMetrics
}

// NewIntake builds an intake with the default checks.
func NewIntake(cfg IntakeConfig, d IntakeDeps) (*Intake, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Catalog == nil || d.Stock == nil || d.Committer == nil || d.Store == nil {
		return nil, errors.New("oms: intake needs a catalog, stock, a committer and a store")
	}
	cfg.setDefaults()
	in := &Intake{cfg: cfg, Checks: DefaultChecks(), catalog: d.Catalog, recent: d.Recent, customers: d.Customers,
		committer: d.Committer, store: d.Store, log: cfg.Log,
		placer: &Placer{Stock: d.Stock, Attempts: cfg.MaxPlanAttempts, Timeout: cfg.SettleTimeout, Lease: d.Lease, View: d.View, Log: cfg.Log},
		limits: &limitTaker{limits: d.Limits, catalog: d.Catalog, log: cfg.Log, timeout: cfg.SettleTimeout},
		admit:  newAdmission(cfg.LatencyBudget, cfg.MinInFlight, cfg.MaxInFlight)}
	var err error
	if in.m, err = newIntakeMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	return in, nil
}

// Result is the answer to a submission.
type Result struct {
	Order   *Order
	Created bool // 201; false: 200 with the stored order
}

// Submit takes one order for channel. It returns the stored order and
// whether this call created it. Errors carry a Kind: KindInvalid (422,
// every field at fault; or the Idempotency-Key), KindConflict (409
// insufficient-stock or idempotency-conflict), KindUnavailable (503:
// overloaded, stock not loaded, commit failed; nothing is kept and a retry
// with the same external_id is safe).
//
// The work does not follow ctx's cancellation once it started: a client
// that hangs up leaves either a stored order with its stock held or
// nothing at all, never a half.
func (in *Intake) Submit(ctx context.Context, channel, idemKey string, req *OrderRequest) (res Result, err error) {
	start := time.Now()
	defer func() {
		in.m.latency.Observe(time.Since(start).Seconds())
		in.m.outcomes.WithLabelValues(channel, outcomeLabel(res, err)).Inc()
	}()
	if !in.admit.enter(start) {
		return res, ErrOverloaded
	}
	defer func() { in.admit.leave(time.Since(start)) }()

	ci := &CheckInput{Channel: channel, Req: req, Node: in.catalog.Node, Now: in.cfg.Now()}
	if err := RunChecks(in.Checks, ci); err != nil {
		return res, err
	}
	if err := CheckIdempotencyKey(idemKey); err != nil {
		return res, err
	}
	id := OrderID(channel, req.ExternalID)
	hash := RequestHash(req)
	// Concurrent copies on this instance share one attempt; copies on
	// other instances collide on the order id in SQL. The attempt runs
	// detached from the leader's cancellation: followers share its answer.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.SettleTimeout+in.committer.cfg.Timeout)
	defer cancel()
	leader := false
	v, err, _ := in.flight.Do(id, func() (any, error) {
		leader = true
		return in.take(wctx, ci, idemKey, id, hash)
	})
	if err != nil {
		return res, err
	}
	res = v.(Result)
	if !leader {
		// The leader answered for its own body; a follower with another
		// body for the same external_id is a conflict.
		if _, h, err := in.store.GetOrder(ctx, id); err != nil || !slices.Equal(h, hash) {
			if err != nil && KindOf(err) != KindNotFound {
				return Result{}, unavailable("order lookup failed", err)
			}
			return Result{}, idemConflict()
		}
		res.Created = false
	}
	return res, nil
}

// Overloaded reports whether an order would be refused 503 overloaded now:
// the HTTP layer asks before it decodes the body, so that a refusal costs
// next to nothing when many more orders are offered than taken.
func (in *Intake) Overloaded() bool { return in.admit.full() }

// take does the work of one order, top to bottom. Nothing is read from
// SQL before the work: a copy of a stored order collides on the order id
// at commit and answers with the stored order.
func (in *Intake) take(ctx context.Context, ci *CheckInput, idemKey, id string, hash []byte) (Result, error) {
	attempt := uuid.NewString()
	var cm *CustomerMatch
	if in.customers != nil {
		var err error
		if cm, err = in.customers.Match(ctx, ci.Channel, ci.Req); err != nil {
			return Result{}, unavailable("customer lookup failed", err)
		}
	}
	ob, err := in.observe(ctx, ci, id, attempt, cm)
	if err != nil {
		return Result{}, err
	}
	o := newOrder(ci, id, ob.reasons, in.cfg.PaymentTimeout)
	if cm != nil {
		o.Customer.OmsdID = cm.ID
		o.Attribution = in.customers.Attribute(cm, id, ci.Req.Attribution, ci.Now)
	}
	taken, err := in.limits.take(ctx, o)
	if err != nil {
		in.forgetAttempt(ctx, ob, attempt)
		return Result{}, err
	}
	var deadline time.Time
	if o.ReservedUntil != nil {
		deadline = o.ReservedUntil.Add(in.cfg.HoldGrace)
	}
	var owner string
	if o.Shipments, owner, err = in.place(ctx, o, deadline); err != nil {
		return in.refused(ctx, o, hash, taken, ob, attempt, err)
	}
	for _, r := range ob.reasons {
		in.m.reviews.WithLabelValues(r).Inc()
	}
	doc, err := json.Marshal(o)
	if err != nil {
		in.placer.Release(ctx, o.Shipments)
		in.limits.giveBack(ctx, o, taken)
		return Result{}, err
	}
	no := &NewOrder{Order: o, RequestHash: hash, IdemKey: idemKey, Doc: doc, Events: creationEvents(o, doc, ci.Now), Owner: owner, Customer: cm}
	if err := in.committer.Commit(no); err != nil {
		return in.settle(ctx, no, taken, ob, attempt, err)
	}
	switch no.Outcome {
	case OutcomeInserted:
		o.encoded = doc
		return Result{Order: o, Created: true}, nil
	case OutcomeIdemTaken:
		in.placer.Release(ctx, o.Shipments)
		in.limits.giveBackUnlessStored(ctx, in.store, o, taken)
		return Result{}, idemConflict()
	default: // a copy committed first: ours is redundant, the slot is its
		in.placer.Release(ctx, o.Shipments)
		return in.existing(ctx, id, hash)
	}
}

// newOrder builds the order a request describes: in review when a review
// check gave a reason, waiting for payment when unpaid, released to
// fulfillment otherwise.
func newOrder(ci *CheckInput, id string, reviews []string, paymentTimeout time.Duration) *Order {
	req, now := ci.Req, ci.Now.UTC()
	o := &Order{ID: id, ExternalID: req.ExternalID, Channel: ci.Channel, PaymentStatus: req.Payment.Status,
		Customer: req.Customer, ShipTo: req.ShipTo, Lines: req.Lines, Currency: req.Currency, Total: req.Value(),
		Fulfillment: req.Fulfillment, Attribution: &Attribution{Source: AttributionNone}, ReviewReasons: reviews, Version: 1,
		CreatedAt: now, UpdatedAt: now}
	if a := req.Attribution; a != nil && (a.Associate != "" || a.Store != "" || a.Distributor != "") {
		o.Attribution = &Attribution{Associate: a.Associate, Store: a.Store, Distributor: a.Distributor, Source: AttributionFromOrder}
	}
	switch {
	case len(reviews) > 0:
		o.Status = OrderInReview
	case req.Payment.Status == PaymentPending:
		o.Status = OrderPendingPayment
	default:
		o.Status = OrderReleased
	}
	if req.Payment.Status == PaymentPending {
		until := now.Add(paymentTimeout).Truncate(time.Millisecond)
		o.ReservedUntil = &until
	}
	return o
}

// place plans and reserves the order's lines; a plan that cannot be
// filled is a 409 insufficient-stock.
func (in *Intake) place(ctx context.Context, o *Order, deadline time.Time) ([]Shipment, string, error) {
	status := ShipmentPending
	if o.Status == OrderReleased {
		status = ShipmentRequested
	}
	placed, err := in.placer.Place(ctx, Placement{Order: sourcingOrder(o, nil), Candidates: in.catalog.Candidates(),
		Rules: in.catalog.Rules(), Status: status, Deadline: deadline})
	in.m.replans.Add(float64(placed.Replans))
	if placed.Plan != nil {
		in.m.plans.WithLabelValues(string(placed.Plan.Outcome)).Inc()
	}
	if err != nil {
		return nil, "", err
	}
	if placed.Filled() {
		in.m.perOrder.Observe(float64(len(placed.Shipments)))
		return placed.Shipments, placed.Owner, nil
	}
	reason := "no plan"
	if placed.Plan != nil {
		reason = placed.Plan.Reason
	}
	return nil, "", Errorf(KindConflict, SlugInsufficientStock, "the stock cannot be reserved under the sourcing rules: %s", reason)
}

// refused answers an order whose stock could not be placed (nothing is
// held). A copy that is stored answers for it, and the purchase-limit slot
// is then the stored order's; a copy still being taken elsewhere turns a
// "no stock" into a retry, never a false 409.
func (in *Intake) refused(ctx context.Context, o *Order, hash []byte, taken []Promotion, ob observation, attempt string, cause error) (Result, error) {
	eo, h, err := in.store.GetOrder(ctx, o.ID)
	switch {
	case err == nil && slices.Equal(h, hash):
		return Result{Order: eo}, nil
	case err == nil:
		return Result{}, idemConflict()
	case KindOf(err) != KindNotFound:
		return Result{}, unavailable("order lookup failed", err)
	case ob.copySeen && KindOf(cause) == KindConflict:
		return Result{}, unavailable("a copy of this order is being taken; retry with the same external_id", cause)
	}
	in.limits.giveBack(ctx, o, taken)
	in.forgetAttempt(ctx, ob, attempt)
	return Result{}, cause
}

// settle decides a commit that returned an error. SettleOrders waits until
// no transaction can still store the order, so "not stored" is final and
// only then is anything given back; when even that fails, everything is
// kept (the reconciler releases holds no stored shipment owns after its
// grace) and the channel's retry finds out.
func (in *Intake) settle(ctx context.Context, no *NewOrder, taken []Promotion, ob observation, attempt string, cause error) (Result, error) {
	o := no.Order
	if errors.Is(cause, ErrOverloaded) || errors.Is(cause, ErrClosed) || errors.Is(cause, ErrLeaseLapsed) {
		in.placer.Release(ctx, o.Shipments) // never reached the store
		in.limits.giveBackUnlessStored(ctx, in.store, o, taken)
		in.forgetAttempt(ctx, ob, attempt)
		return Result{}, cause
	}
	stored, err := in.store.SettleOrders(ctx, []string{o.ID})
	if err != nil {
		in.log.Error("commit outcome unknown; holds left to the reconciler", "order_id", o.ID, "commit_err", cause, "err", err)
		return Result{}, unavailable("the order may not be stored; retry with the same external_id", errors.Join(cause, err))
	}
	if holds, ok := stored[o.ID]; ok {
		if len(o.Shipments) > 0 && slices.Contains(holds, o.Shipments[0].HoldID) {
			o.encoded = no.Doc
			return Result{Order: o, Created: true}, nil
		}
		in.placer.Release(ctx, o.Shipments)
		return in.existing(ctx, o.ID, no.RequestHash)
	}
	in.placer.Release(ctx, o.Shipments)
	in.limits.giveBack(ctx, o, taken)
	in.forgetAttempt(ctx, ob, attempt)
	if errors.Is(cause, ErrOrderData) {
		return Result{}, &Error{Kind: KindInvalid, Slug: SlugValidation, Detail: "the order holds a value the database refuses", Err: cause}
	}
	in.log.Warn("group commit failed; holds released", "order_id", o.ID, "err", cause)
	return Result{}, unavailable("the order could not be stored; nothing was kept, retry with the same external_id", cause)
}

// existing answers with a stored order: 200 when the request is the same,
// 409 otherwise.
func (in *Intake) existing(ctx context.Context, id string, hash []byte) (Result, error) {
	o, h, err := in.store.GetOrder(ctx, id)
	if err != nil {
		return Result{}, unavailable("order lookup failed", err)
	}
	if !slices.Equal(h, hash) {
		return Result{}, idemConflict()
	}
	return Result{Order: o}, nil
}

func idemConflict() error {
	return Errorf(KindConflict, SlugIdempotencyConflict, "this external_id or Idempotency-Key was used for a different order body")
}

func unavailable(detail string, err error) error {
	return &Error{Kind: KindUnavailable, Slug: SlugUnavailable, Detail: detail, Err: err, RetryAfter: time.Second}
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
