package oms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/omsd/omsd/sourcing"
)

// The fulfillment pipeline: what happens to an order after intake.
//
// Every change is one SQL transaction on the order (TransitionOrder, or
// ApplyEvent for warehouse events, which also records the event id): the
// order document, its shipments, the stock ledger and the outbox events are
// written together or not at all. SQL is the truth.
//
// Ordering of the Redis side effects. Commit, Release and Confirm of holds
// run AFTER the SQL transaction has committed, never inside it (a
// transaction may be retried, and Redis cannot be rolled back). They are
// idempotent: hold ids are single-use, Commit and Release report true only
// the first time, Confirm of a confirmed hold is a no-op. If omsd dies
// between the SQL commit and Redis, the reconciler (inventory.Reconciler)
// repairs Redis from the ledger: a hold that no open shipment owns is
// released after the grace period (a cancelled, expired or shipped
// shipment), on hand follows the SQL stock table (lowered by shipments in
// the same transaction as the shipped status), and a deadline the ledger no
// longer has is confirmed. The one side effect that runs BEFORE the
// transaction is the reservation of new holds when a rejected shipment is
// sourced again: a shipment must never be stored without its stock. Those
// holds are released if the transaction does not store them; when the
// outcome is unknown (an error at COMMIT) the order is read back to decide,
// and if even that fails the reconciler releases the holds no shipment
// owns after its grace period.

// Order flags set by the fulfillment pipeline.
const (
	// FlagCancelFailed: the buyer cancelled, but (part of) the order shipped
	// anyway; a return is needed. The order is never reported cancelled.
	FlagCancelFailed = "cancel_failed_return_needed"
	// FlagBackordered: a rejected shipment's lines could not be placed at
	// another node; those lines are unfilled (order lines minus the lines
	// of its shipments that are not rejected or cancelled) and hold no
	// stock. A person or a restock resolves it.
	FlagBackordered = "backordered"
)

// ReviewResourcingFailed is recorded when the rules' fallback for a
// re-sourcing that found no node is "hold": the order keeps its status
// (its other shipments may be at warehouses already), gets FlagBackordered,
// and this reason tells the reviewer why.
const ReviewResourcingFailed = "resourcing_failed"

// ErrEventIgnored marks a warehouse event that was recorded as processed
// but changed nothing because it does not fit the shipment's state (late,
// out of order, or contradicting a final state). Stores commit the event
// id when the transition function returns an error wrapping it.
var ErrEventIgnored = errors.New("oms: event does not apply")

// errUnchanged: the request is already satisfied (a second cancel or
// payment); the current order is the answer.
var errUnchanged = errors.New("oms: unchanged")

// errStateMoved: the order changed between the preparation of an event
// (re-sourcing reservations) and its transaction; prepare again.
var errStateMoved = errors.New("oms: order changed during preparation")

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

// FulfillmentConfig configures the pipeline. Zero values mean defaults.
type FulfillmentConfig struct {
	// MaxPlanAttempts bounds planning again after a lost reservation race
	// when re-sourcing; default 4.
	MaxPlanAttempts int
	// SideEffectTimeout bounds the Redis work after a commit; default 10s.
	// It runs on a context detached from the caller's: a client that hangs
	// up must not leave a committed change without its stock movement.
	SideEffectTimeout time.Duration
	// ExpiryBatch is how many orders one ExpireDue pass takes; default 200.
	ExpiryBatch int
}

// FulfillmentService runs the order's life after intake: warehouse events
// (acknowledged, shipped, rejected, cancelled, cancel refused), buyer
// cancellation, payment and the expiry of unpaid orders.
type FulfillmentService struct {
	cfg     FulfillmentConfig
	store   FulfillmentStore
	stock   FulfillmentStock
	catalog PlanCatalog
	log     *slog.Logger
	// Now is the clock; tests replace it.
	Now func() time.Time
	// GiveBack, when set, returns the purchase-limit allowance of an order
	// that expired unpaid or was cancelled before anything was released,
	// after its transition committed. It must be idempotent (the limit
	// store is, per order id).
	GiveBack func(ctx context.Context, o *Order)

	results   *prometheus.CounterVec
	resourced *prometheus.CounterVec
	expired   prometheus.Counter
	stockErrs *prometheus.CounterVec
}

// NewFulfillmentService builds the pipeline. reg may be nil (no metrics).
func NewFulfillmentService(cfg FulfillmentConfig, store FulfillmentStore, stock FulfillmentStock, catalog PlanCatalog, log *slog.Logger, reg prometheus.Registerer) *FulfillmentService {
	if cfg.MaxPlanAttempts <= 0 {
		cfg.MaxPlanAttempts = 4
	}
	if cfg.SideEffectTimeout <= 0 {
		cfg.SideEffectTimeout = 10 * time.Second
	}
	if cfg.ExpiryBatch <= 0 {
		cfg.ExpiryBatch = 200
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &FulfillmentService{cfg: cfg, store: store, stock: stock, catalog: catalog, log: log, Now: time.Now}
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
	if reg != nil {
		reg.MustRegister(f.results, f.resourced, f.expired, f.stockErrs)
	}
	return f
}

// holdRef names one hold.
type holdRef struct{ node, hold string }

// effects are the Redis side effects of one transition, run after commit.
type effects struct {
	commit, release, confirm []holdRef
}

func (e *effects) reset() { e.commit, e.release, e.confirm = nil, nil, nil }

func ref(s *Shipment) holdRef {
	h := s.HoldID
	if h == "" {
		h = s.ID
	}
	return holdRef{node: s.NodeID, hold: h}
}

// apply runs the side effects of a committed transition. Failures are
// logged and counted, not returned: the change is committed, and the
// reconciler brings Redis back to the ledger.
func (f *FulfillmentService) apply(ctx context.Context, orderID string, eff effects) {
	if len(eff.commit)+len(eff.release)+len(eff.confirm) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.SideEffectTimeout)
	defer cancel()
	for _, h := range eff.commit {
		if _, err := f.stock.Commit(ctx, h.node, h.hold); err != nil {
			f.stockErrs.WithLabelValues("commit").Inc()
			f.log.Error("commit shipped hold; the reconciler will repair the counters", "order_id", orderID, "node", h.node, "hold_id", h.hold, "err", err)
		}
	}
	for _, h := range eff.release {
		if _, err := f.stock.Release(ctx, h.node, h.hold); err != nil {
			f.stockErrs.WithLabelValues("release").Inc()
			f.log.Error("release hold; the reconciler will release it", "order_id", orderID, "node", h.node, "hold_id", h.hold, "err", err)
		}
	}
	for _, h := range eff.confirm {
		if err := f.stock.Confirm(ctx, h.node, h.hold); err != nil {
			f.stockErrs.WithLabelValues("confirm").Inc()
			f.log.Error("confirm paid hold; the reconciler will confirm it", "order_id", orderID, "node", h.node, "hold_id", h.hold, "err", err)
		}
	}
}

func (f *FulfillmentService) releaseShips(ctx context.Context, ships []Shipment) {
	if len(ships) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.SideEffectTimeout)
	defer cancel()
	for i := range ships {
		h := ref(&ships[i])
		if _, err := f.stock.Release(ctx, h.node, h.hold); err != nil {
			f.stockErrs.WithLabelValues("release").Inc()
			f.log.Error("release unused hold; the reconciler will release it", "node", h.node, "hold_id", h.hold, "err", err)
		}
	}
}

// ---- warehouse events ----

// ValidateWMSEvent checks the fields every warehouse event needs. Errors
// are KindInvalid.
func ValidateWMSEvent(ev WMSEvent) error {
	var fs []FieldError
	if ev.EventID == "" || len(ev.EventID) > 128 || !utf8.ValidString(ev.EventID) {
		fs = append(fs, FieldError{"event_id", "is required (at most 128 characters)"})
	}
	switch ev.Type {
	case WMSAcknowledged, WMSShipped, WMSRejected, WMSCancelled, WMSCancelRefused:
	default:
		fs = append(fs, FieldError{"type", "must be shipment.acknowledged, shipment.shipped, shipment.rejected, shipment.cancelled or shipment.cancel_refused"})
	}
	if _, err := uuid.Parse(ev.ShipmentID); err != nil {
		fs = append(fs, FieldError{"shipment_id", "must be a shipment id"})
	}
	if len(ev.TrackingNumber) > 128 {
		fs = append(fs, FieldError{"tracking_number", "at most 128 characters"})
	}
	if len(ev.Reason) > 500 {
		fs = append(fs, FieldError{"reason", "at most 500 characters"})
	}
	if len(fs) > 0 {
		return Invalid("the warehouse event is not valid", fs...)
	}
	return nil
}

func staleEvent(format string, args ...any) error {
	return &Error{Kind: KindConflict, Slug: SlugStaleEvent, Detail: fmt.Sprintf(format, args...), Err: ErrEventIgnored}
}

func conflictingEvent(format string, args ...any) error {
	return &Error{Kind: KindConflict, Slug: SlugEventConflict, Detail: fmt.Sprintf(format, args...), Err: ErrEventIgnored}
}

// ApplyWMSEvent applies one warehouse event exactly once (by event_id, in
// the transaction of the state change). A duplicate returns the current
// order and changes nothing. A late or out-of-order event that the state
// already covers (an acknowledgement after the shipment, a second ship
// report) is recorded and answered with the current order. Errors:
// KindInvalid (malformed event), KindNotFound (unknown shipment),
// KindConflict slug event-conflict (the event contradicts a final state,
// e.g. shipped after cancelled: recorded, logged, nothing changed),
// KindUnavailable or internal errors (transient: retry the event).
func (f *FulfillmentService) ApplyWMSEvent(ctx context.Context, ev WMSEvent) (*Order, error) {
	if err := ValidateWMSEvent(ev); err != nil {
		f.results.WithLabelValues("invalid", "conflict").Inc()
		return nil, err
	}
	orderID, err := f.store.ShipmentOrder(ctx, ev.ShipmentID)
	if err != nil {
		if KindOf(err) == KindNotFound {
			f.results.WithLabelValues(string(ev.Type), "unknown_shipment").Inc()
			return nil, Errorf(KindNotFound, SlugNotFound, "no shipment %s", ev.ShipmentID)
		}
		f.results.WithLabelValues(string(ev.Type), "error").Inc()
		return nil, unavailable("shipment lookup failed", err)
	}
	for attempt := 0; ; attempt++ {
		o, err := f.applyWMS(ctx, orderID, ev)
		if errors.Is(err, errStateMoved) {
			if attempt < 3 {
				continue
			}
			f.results.WithLabelValues(string(ev.Type), "error").Inc()
			return nil, unavailable("the order keeps changing; retry the event", err)
		}
		// The warehouse's confirmation ended a cancellation: the customer's
		// purchase-limit allowance comes back (idempotent per order).
		if err == nil && o != nil && o.Status == OrderCancelled && ev.Type == WMSCancelled && f.GiveBack != nil {
			f.GiveBack(ctx, o)
		}
		return o, err
	}
}

// prepared is the re-sourcing of a rejected shipment, reserved before the
// transaction that records it.
type prepared struct {
	ships []Shipment
	plan  *sourcing.Result
}

func resourcable(o *Order, s *Shipment) bool {
	return (o.Status == OrderReleased || o.Status == OrderPartiallyShipped) &&
		(s.Status == ShipmentRequested || s.Status == ShipmentAcknowledged)
}

func (o *Order) shipment(id string) *Shipment {
	for i := range o.Shipments {
		if o.Shipments[i].ID == id {
			return &o.Shipments[i]
		}
	}
	return nil
}

// prepareResource plans and reserves the lines of a shipment the warehouse
// rejects, at other nodes, when the order is in a state to use them.
func (f *FulfillmentService) prepareResource(ctx context.Context, orderID string, ev WMSEvent) (*prepared, error) {
	o, _, err := f.store.GetOrder(ctx, orderID)
	if err != nil {
		return nil, unavailable("order lookup failed", err)
	}
	s := o.shipment(ev.ShipmentID)
	if s == nil || !resourcable(o, s) {
		return nil, nil
	}
	// Never back to a node that rejected lines of this order.
	exclude := map[string]bool{s.NodeID: true}
	for _, sh := range o.Shipments {
		if sh.Status == ShipmentRejected {
			exclude[sh.NodeID] = true
		}
	}
	var cands []sourcing.Node
	for _, n := range f.catalog.Candidates() {
		if !exclude[n.ID] {
			cands = append(cands, n)
		}
	}
	placer := Placer{Stock: f.stock, Attempts: f.cfg.MaxPlanAttempts, Timeout: f.cfg.SideEffectTimeout, Log: f.log}
	placed, err := placer.Place(ctx, Placement{Order: sourcingOrder(o, s.Lines), Candidates: cands, Rules: f.catalog.Rules(),
		Status: ShipmentRequested, Backorder: true})
	if err != nil {
		return nil, err
	}
	return &prepared{ships: placed.Shipments, plan: placed.Plan}, nil
}

func (f *FulfillmentService) applyWMS(ctx context.Context, orderID string, ev WMSEvent) (*Order, error) {
	var prep *prepared
	if ev.Type == WMSRejected || ev.Type == WMSCancelled {
		p, err := f.prepareResource(ctx, orderID, ev)
		if err != nil {
			f.results.WithLabelValues(string(ev.Type), "error").Inc()
			return nil, err
		}
		prep = p
	}
	var eff effects
	used := false
	o, applied, err := f.store.ApplyEvent(ctx, ev.EventID, orderID, guarded(func(o *Order) ([]OutboxEvent, error) {
		eff.reset()
		used = false
		return f.wmsTransition(o, ev, prep, &eff, &used)
	}))
	if prep != nil && len(prep.ships) > 0 && !(err == nil && applied && used) {
		f.dropPrepared(ctx, orderID, prep.ships, err)
	}
	switch {
	case err == nil && !applied:
		f.results.WithLabelValues(string(ev.Type), "duplicate").Inc()
		return o, nil
	case err == nil:
		f.results.WithLabelValues(string(ev.Type), "applied").Inc()
		f.apply(ctx, orderID, eff)
		return o, nil
	case errors.Is(err, ErrEventIgnored):
		var e *Error
		if errors.As(err, &e) && e.Slug == SlugStaleEvent {
			f.results.WithLabelValues(string(ev.Type), "ignored").Inc()
			f.log.Info("warehouse event already covered by the shipment's state", "event_id", ev.EventID, "type", ev.Type, "shipment_id", ev.ShipmentID, "detail", e.Detail)
			return o, nil
		}
		f.results.WithLabelValues(string(ev.Type), "conflict").Inc()
		f.log.Warn("warehouse event contradicts the shipment's state; recorded, nothing changed", "event_id", ev.EventID, "type", ev.Type, "shipment_id", ev.ShipmentID, "err", err)
		return o, err
	case errors.Is(err, errStateMoved):
		return nil, err
	case KindOf(err) == KindConflict || KindOf(err) == KindNotFound:
		f.results.WithLabelValues(string(ev.Type), "conflict").Inc()
		return nil, err
	default:
		f.results.WithLabelValues(string(ev.Type), "error").Inc()
		return nil, unavailable("the warehouse event could not be applied", err)
	}
}

// dropPrepared releases re-sourcing holds that the transaction did not
// store. After an error whose outcome may be a commit (the connection
// died at COMMIT), the order is read back: holds it owns are kept.
func (f *FulfillmentService) dropPrepared(ctx context.Context, orderID string, ships []Shipment, txErr error) {
	clean := txErr == nil || errors.Is(txErr, ErrEventIgnored) || errors.Is(txErr, errStateMoved) ||
		KindOf(txErr) == KindConflict || KindOf(txErr) == KindNotFound
	if !clean {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.SideEffectTimeout)
		defer cancel()
		o, _, err := f.store.GetOrder(rctx, orderID)
		if err != nil {
			f.log.Error("re-sourcing outcome unknown; holds left to the reconciler", "order_id", orderID, "tx_err", txErr, "err", err)
			return
		}
		var unstored []Shipment
		for _, s := range ships {
			if o.shipment(s.ID) == nil {
				unstored = append(unstored, s)
			}
		}
		ships = unstored
	}
	f.releaseShips(ctx, ships)
}

// ship marks s shipped with the event's tracking number and books the
// Redis commit of its hold (the SQL ledger is written by the store in the
// same transaction).
func ship(s *Shipment, ev WMSEvent, eff *effects) {
	s.Status = ShipmentShipped
	if ev.TrackingNumber != "" {
		s.TrackingNumber = ev.TrackingNumber
	}
	eff.commit = append(eff.commit, ref(s))
}

func addFlag(o *Order, flag string) bool {
	if slices.Contains(o.Flags, flag) {
		return false
	}
	o.Flags = append(o.Flags, flag)
	return true
}

// wmsTransition is the state change of one warehouse event on the locked
// order. *used reports whether the prepared shipments were stored.
func (f *FulfillmentService) wmsTransition(o *Order, ev WMSEvent, prep *prepared, eff *effects, used *bool) ([]OutboxEvent, error) {
	s := o.shipment(ev.ShipmentID)
	if s == nil {
		return nil, conflictingEvent("shipment %s is not part of order %s", ev.ShipmentID, o.ID)
	}
	now := f.Now().UTC()
	o.Version++
	flagged := map[string]bool{}
	flag := func(fl string) {
		if addFlag(o, fl) {
			flagged[fl] = true
		}
	}
	var evs []OutboxEvent
	var added []Shipment

	switch ev.Type {
	case WMSAcknowledged:
		if s.Status != ShipmentRequested {
			return nil, staleEvent("shipment %s is %s", s.ID, s.Status)
		}
		s.Status = ShipmentAcknowledged

	case WMSShipped:
		switch s.Status {
		case ShipmentRequested, ShipmentAcknowledged:
			ship(s, ev, eff)
		case ShipmentCancelRequested:
			// Shipped before the cancel reached the warehouse.
			flag(FlagCancelFailed)
			ship(s, ev, eff)
		case ShipmentShipped:
			return nil, staleEvent("shipment %s is already shipped", s.ID)
		default:
			return nil, conflictingEvent("shipment %s is %s; the warehouse reports it shipped", s.ID, s.Status)
		}

	case WMSRejected, WMSCancelled:
		switch {
		case s.Status == ShipmentCancelRequested:
			// The warehouse will not ship it: the interception succeeded.
			s.Status = ShipmentCancelled
			eff.release = append(eff.release, ref(s))
		case s.Status == ShipmentRequested || s.Status == ShipmentAcknowledged:
			// Rejected, short-picked, or cancelled by the warehouse on its
			// own: source the lines again elsewhere.
			if !resourcable(o, s) {
				s.Status = ShipmentRejected
				eff.release = append(eff.release, ref(s))
				break
			}
			if prep == nil {
				return nil, errStateMoved // prepared when it was not resourcable
			}
			s.Status = ShipmentRejected
			eff.release = append(eff.release, ref(s))
			added = prep.ships
			*used = true
			if prep.plan == nil || prep.plan.Outcome != sourcing.OutcomeFulfilled || len(prep.ships) == 0 {
				flag(FlagBackordered)
				if prep.plan != nil && prep.plan.Outcome == sourcing.OutcomeHold && !slices.Contains(o.ReviewReasons, ReviewResourcingFailed) {
					o.ReviewReasons = append(o.ReviewReasons, ReviewResourcingFailed)
				}
			}
		case s.Status == ShipmentCancelled || s.Status == ShipmentRejected:
			return nil, staleEvent("shipment %s is already %s", s.ID, s.Status)
		default:
			return nil, conflictingEvent("shipment %s is %s; the warehouse reports %s", s.ID, s.Status, ev.Type)
		}

	case WMSCancelRefused:
		switch s.Status {
		case ShipmentCancelRequested:
			flag(FlagCancelFailed)
			if ev.TrackingNumber != "" {
				ship(s, ev, eff) // refused because it shipped: the report says so
			} else {
				s.Status = ShipmentAcknowledged // it will ship
			}
		case ShipmentShipped, ShipmentRequested, ShipmentAcknowledged:
			if o.CancelReason == "" {
				return nil, staleEvent("no cancel was requested for shipment %s", s.ID)
			}
			flag(FlagCancelFailed)
			if ev.TrackingNumber != "" && s.Status != ShipmentShipped {
				ship(s, ev, eff)
			}
		default:
			return nil, staleEvent("shipment %s is %s", s.ID, s.Status)
		}
	}

	for i := range added {
		added[i].Status = ShipmentRequested
		o.Shipments = append(o.Shipments, added[i])
		evs = append(evs, shipmentEvent(EventShipmentRequested, o, &o.Shipments[len(o.Shipments)-1], now))
	}
	if next := settle(o); next != o.Status {
		if err := Transition(o, next); err != nil {
			return nil, err
		}
		evs = append(evs, orderEvent(StatusEvent(next), o, now))
	}
	if flagged[FlagCancelFailed] {
		evs = append(evs, orderEvent(EventOrderCancelFailed, o, now))
	}
	if flagged[FlagBackordered] {
		evs = append(evs, orderEvent(EventOrderBackordered, o, now))
	}
	return stagger(evs, now), nil
}

// settle derives the order's status from its shipments after a warehouse
// event. Rejected shipments were replaced (or backordered) and count for
// nothing; cancelled ones count for nothing either.
func settle(o *Order) OrderStatus {
	var open, cancelling, shipped int
	for _, s := range o.Shipments {
		switch s.Status {
		case ShipmentPending, ShipmentRequested, ShipmentAcknowledged:
			open++
		case ShipmentCancelRequested:
			cancelling++
		case ShipmentShipped:
			shipped++
		}
	}
	switch o.Status {
	case OrderCancelRequested:
		if cancelling > 0 {
			return o.Status // answers still due
		}
		switch {
		case open == 0 && shipped == 0:
			return OrderCancelled
		case open == 0:
			return OrderShipped // what shipped went out; the rest is cancelled
		case shipped > 0:
			return OrderPartiallyShipped
		default:
			return OrderReleased
		}
	case OrderReleased, OrderPartiallyShipped:
		switch {
		case shipped > 0 && open == 0 && cancelling == 0:
			return OrderShipped
		case shipped > 0:
			return OrderPartiallyShipped
		}
	}
	return o.Status
}

// guarded runs a transition function and checks every shipment status it
// changed against the shipment state machine (state.go): a move the table
// does not allow aborts the transaction as a bug.
func guarded(fn func(o *Order) ([]OutboxEvent, error)) func(o *Order) ([]OutboxEvent, error) {
	return func(o *Order) ([]OutboxEvent, error) {
		before := make(map[string]ShipmentStatus, len(o.Shipments))
		for _, s := range o.Shipments {
			before[s.ID] = s.Status
		}
		evs, err := fn(o)
		if err != nil {
			return nil, err
		}
		for _, s := range o.Shipments {
			if b, ok := before[s.ID]; ok && b != s.Status && !CanTransitionShipment(b, s.Status) {
				return nil, &Error{Kind: KindInternal, Slug: SlugInvalidTransition,
					Detail: fmt.Sprintf("shipment %s cannot go from %s to %s", s.ID, b, s.Status)}
			}
		}
		return evs, nil
	}
}

// stagger gives the events of one transition distinct, increasing
// creation times, so that the relay's (created_at, seq) order keeps them
// in the order they were built (their seq, the order version, is shared).
func stagger(evs []OutboxEvent, now time.Time) []OutboxEvent {
	for i := range evs {
		evs[i].At = now.Add(time.Duration(i) * time.Microsecond)
	}
	return evs
}

// ---- buyer operations ----

func validOrderID(id string) error {
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return Errorf(KindNotFound, SlugNotFound, "no such order")
	}
	return nil
}

func notYours() error { return Errorf(KindNotFound, SlugNotFound, "no such order") }

// current returns the order for channel ("" = any) after errUnchanged.
func (f *FulfillmentService) current(ctx context.Context, channel, id string) (*Order, error) {
	o, _, err := f.store.GetOrder(ctx, id)
	if err != nil {
		return nil, err
	}
	if channel != "" && o.Channel != channel {
		return nil, notYours()
	}
	return o, nil
}

// MaxCancelReason bounds the reason of a cancellation.
const MaxCancelReason = 500

// Cancel cancels an order of channel ("" = any channel, for operators).
// Shipments not yet released to a warehouse (pending) are cancelled at once
// and their holds released; released ones (requested, acknowledged) get a
// shipment.cancel_requested event and wait for the warehouse's answer. The
// order is cancelled when nothing had been released, cancel_requested
// otherwise. A partially shipped order has the rest cancelled and is
// flagged cancel_failed_return_needed. Cancelling a cancelled (or
// cancel_requested) order returns it unchanged.
// Errors: KindNotFound (no such order, or another channel's), KindInvalid
// (reason too long), KindConflict already-shipped (every shipment shipped,
// or a warehouse refused an earlier cancel of the order) or order-expired.
func (f *FulfillmentService) Cancel(ctx context.Context, channel, id, reason string) (*Order, error) {
	if err := validOrderID(id); err != nil {
		return nil, err
	}
	if len(reason) > MaxCancelReason || !utf8.ValidString(reason) {
		return nil, Invalid("the cancellation is not valid", FieldError{"reason", "at most 500 characters"})
	}
	var eff effects
	o, err := f.store.TransitionOrder(ctx, id, guarded(func(o *Order) ([]OutboxEvent, error) {
		eff.reset()
		if channel != "" && o.Channel != channel {
			return nil, notYours()
		}
		switch o.Status {
		case OrderCancelled, OrderCancelRequested:
			return nil, errUnchanged
		case OrderExpired:
			return nil, Errorf(KindConflict, SlugOrderExpired, "the order expired unpaid; there is nothing to cancel")
		case OrderShipped:
			return nil, Errorf(KindConflict, SlugAlreadyShipped, "every shipment of the order has shipped; too late to cancel")
		}
		if slices.Contains(o.Flags, FlagCancelFailed) {
			// A warehouse refused an earlier cancel: the goods are on their
			// way, and the cancel request of a shipment is one event (its id
			// is derived from the shipment), never sent twice.
			return nil, Errorf(KindConflict, SlugAlreadyShipped, "an earlier cancel was refused by the warehouse; the order ships and needs a return")
		}
		now := f.Now().UTC()
		o.Version++
		var evs []OutboxEvent
		asked, shipped := 0, 0
		for i := range o.Shipments {
			s := &o.Shipments[i]
			switch s.Status {
			case ShipmentPending:
				s.Status = ShipmentCancelled
				eff.release = append(eff.release, ref(s))
			case ShipmentRequested, ShipmentAcknowledged:
				s.Status = ShipmentCancelRequested
				evs = append(evs, shipmentEvent(EventShipmentCancelRequested, o, s, now))
				asked++
			case ShipmentShipped:
				shipped++
			}
		}
		if asked == 0 && shipped > 0 {
			return nil, Errorf(KindConflict, SlugAlreadyShipped, "every open shipment of the order has shipped; too late to cancel")
		}
		o.CancelReason = reason
		cancelFailed := shipped > 0 && addFlag(o, FlagCancelFailed)
		next := OrderCancelled
		if asked > 0 {
			next = OrderCancelRequested
		}
		if err := Transition(o, next); err != nil {
			return nil, err
		}
		evs = append(evs, orderEvent(StatusEvent(next), o, now))
		if cancelFailed {
			evs = append(evs, orderEvent(EventOrderCancelFailed, o, now))
		}
		return stagger(evs, now), nil
	}))
	switch {
	case errors.Is(err, errUnchanged):
		f.results.WithLabelValues("cancel", "unchanged").Inc()
		return f.current(ctx, channel, id)
	case err != nil:
		f.results.WithLabelValues("cancel", resultOf(err)).Inc()
		return nil, err
	}
	f.results.WithLabelValues("cancel", "applied").Inc()
	f.apply(ctx, id, eff)
	if o.Status == OrderCancelled && f.GiveBack != nil {
		f.GiveBack(ctx, o)
	}
	return o, nil
}

// Pay records the payment of an order of channel ("" = any). A pending
// payment order is released: its shipments are requested from their
// warehouses, order.paid is published, and the holds lose their deadline
// (Redis Confirm, after the commit). An on-hold unpaid order records the
// payment and stays on hold (an operator releases it). Paying again returns
// the order unchanged. Errors: KindNotFound, KindConflict expired (the
// payment deadline passed, or the order expired) or order-cancelled.
func (f *FulfillmentService) Pay(ctx context.Context, channel, id string) (*Order, error) {
	if err := validOrderID(id); err != nil {
		return nil, err
	}
	var eff effects
	o, err := f.store.TransitionOrder(ctx, id, guarded(func(o *Order) ([]OutboxEvent, error) {
		eff.reset()
		if channel != "" && o.Channel != channel {
			return nil, notYours()
		}
		now := f.Now().UTC()
		switch o.Status {
		case OrderExpired:
			return nil, Errorf(KindConflict, SlugPaymentExpired, "the payment deadline passed; the order expired and its stock was released")
		case OrderCancelled, OrderCancelRequested:
			return nil, Errorf(KindConflict, SlugOrderCancelled, "the order is cancelled")
		case OrderPendingPayment, OrderInReview:
		default:
			return nil, errUnchanged // released or later: paid already
		}
		if o.PaymentStatus == PaymentPaid {
			return nil, errUnchanged
		}
		if o.ReservedUntil != nil && now.After(*o.ReservedUntil) {
			// The expiry worker expires it (and releases the stock); the
			// Redis hold may already be gone past its grace.
			return nil, Errorf(KindConflict, SlugPaymentExpired, "the payment deadline %s passed", o.ReservedUntil.Format(time.RFC3339))
		}
		o.Version++
		o.PaymentStatus = PaymentPaid
		o.ReservedUntil = nil
		var evs []OutboxEvent
		for i := range o.Shipments {
			s := &o.Shipments[i]
			if s.Status == ShipmentPending {
				eff.confirm = append(eff.confirm, ref(s))
			}
		}
		if o.Status == OrderPendingPayment {
			if err := Transition(o, OrderReleased); err != nil {
				return nil, err
			}
			for i := range o.Shipments {
				s := &o.Shipments[i]
				if s.Status == ShipmentPending {
					s.Status = ShipmentRequested
					evs = append(evs, shipmentEvent(EventShipmentRequested, o, s, now))
				}
			}
		}
		evs = append(evs, orderEvent(EventOrderPaid, o, now))
		return stagger(evs, now), nil
	}))
	switch {
	case errors.Is(err, errUnchanged):
		f.results.WithLabelValues("pay", "unchanged").Inc()
		return f.current(ctx, channel, id)
	case err != nil:
		f.results.WithLabelValues("pay", resultOf(err)).Inc()
		return nil, err
	}
	f.results.WithLabelValues("pay", "applied").Inc()
	f.apply(ctx, id, eff)
	return o, nil
}

func resultOf(err error) string {
	switch KindOf(err) {
	case KindConflict, KindNotFound, KindInvalid:
		return "conflict"
	}
	return "error"
}

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
		var eff effects
		expired, err := f.store.TransitionOrder(ctx, id, guarded(func(o *Order) ([]OutboxEvent, error) {
			eff.reset()
			if (o.Status != OrderPendingPayment && o.Status != OrderInReview) || o.PaymentStatus == PaymentPaid ||
				o.ReservedUntil == nil || o.ReservedUntil.After(now) {
				return nil, errUnchanged // paid, cancelled or expired meanwhile
			}
			o.Version++
			if err := Transition(o, OrderExpired); err != nil {
				return nil, err
			}
			for i := range o.Shipments {
				s := &o.Shipments[i]
				if s.Status == ShipmentPending {
					s.Status = ShipmentCancelled
					eff.release = append(eff.release, ref(s))
				}
			}
			return []OutboxEvent{orderEvent(EventOrderExpired, o, f.Now().UTC())}, nil
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
			f.apply(ctx, id, eff)
			if f.GiveBack != nil {
				f.GiveBack(ctx, expired)
			}
		}
	}
	return n, errors.Join(errs...)
}

// RunExpiry expires due orders every period (default 1s) until ctx ends;
// a full batch is followed at once by the next. It returns nil at the end.
func (f *FulfillmentService) RunExpiry(ctx context.Context, period time.Duration) error {
	if period <= 0 {
		period = time.Second
	}
	t := time.NewTicker(period)
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
