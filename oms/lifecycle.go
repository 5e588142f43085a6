package oms

import (
	"errors"
	"slices"
	"time"
	"unicode/utf8"
)

// The order's life after intake, as pure functions over plain values.
//
// Each lifecycle function takes the current order and the clock reading
// (now: no clock is read here, there is no context and no I/O) and returns
// a Change: the order after the move, the outbox events reporting it, the
// stock effects to run after the commit, and whether the order's purchase
// limits come back. The input order is never modified; the Change holds a
// deep copy. Every move of an order or of a shipment goes through the
// state machines of state.go (Transition, TransitionShipment): a lifecycle
// function cannot produce a move the tables forbid.
//
// The fulfillment service (fulfillment.go) runs them inside the store's
// transaction on the locked order, then runs Change.Holds and gives the
// purchase limits back; warehouse events are in lifecycle_wms.go.

// Order flags set by the lifecycle.
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

// MaxCancelReason bounds the reason of a cancellation.
const MaxCancelReason = 500

// errUnchanged: the request is already satisfied (a second cancel or
// payment, an order paid or cancelled before its expiry); the current
// order is the answer and nothing is written.
var errUnchanged = errors.New("oms: unchanged")

// errStateMoved: the order changed between the preparation of an event
// (re-sourcing reservations) and its transaction; prepare again.
var errStateMoved = errors.New("oms: order changed during preparation")

// HoldRef names one stock hold.
type HoldRef struct {
	Node, Hold string
}

func holdOf(s *Shipment) HoldRef { return HoldRef{Node: s.NodeID, Hold: s.holdID()} }

// HoldEffects are the stock (Redis) effects of a move, run after the SQL
// commit, never inside the transaction. Each is idempotent.
type HoldEffects struct {
	Commit  []HoldRef // shipped: the held units leave on hand
	Release []HoldRef // cancelled, expired or rejected: the units come back
	Confirm []HoldRef // paid: the hold loses its deadline
}

// Empty reports whether there is nothing to run.
func (h HoldEffects) Empty() bool { return len(h.Commit)+len(h.Release)+len(h.Confirm) == 0 }

// Change is the outcome of one lifecycle move.
type Change struct {
	// Order is the order after the move, a deep copy of the input with the
	// move applied (its Version is one higher).
	Order *Order
	// Events are the outbox events of the move, in the order they were
	// built, with distinct increasing creation times (see stagger).
	Events []OutboxEvent
	// Holds are the stock effects to run once the move is committed.
	Holds HoldEffects
	// GiveBackLimits: the order's purchase-limit allowance comes back (it
	// expired unpaid, was cancelled before anything was released, or the
	// warehouse confirmed its cancellation).
	GiveBackLimits bool
	// UsedResourced: the re-sourced shipments handed to
	// ApplyWarehouseEvent were added to the order (otherwise their holds
	// must be released).
	UsedResourced bool
}

// Cancel cancels o for channel ("" = any channel, for operators).
// Shipments not yet released to a warehouse (pending) are cancelled at once
// and their holds released; released ones (requested, acknowledged) get a
// shipment.cancel_requested event and wait for the warehouse's answer. The
// order is cancelled when nothing had been released, cancel_requested
// otherwise. A partially shipped order has the rest cancelled and is
// flagged cancel_failed_return_needed.
// Errors: errUnchanged (cancelled or cancel_requested already), KindInvalid
// (reason too long), KindNotFound (another channel's order), KindConflict
// already-shipped (every shipment shipped, or a warehouse refused an
// earlier cancel of the order) or order-expired.
func Cancel(o *Order, channel, reason string, now time.Time) (Change, error) {
	if err := validCancelReason(reason); err != nil {
		return Change{}, err
	}
	if channel != "" && o.Channel != channel {
		return Change{}, notYours()
	}
	switch o.Status {
	case OrderCancelled, OrderCancelRequested:
		return Change{}, errUnchanged
	case OrderExpired:
		return Change{}, Errorf(KindConflict, SlugOrderExpired, "the order expired unpaid; there is nothing to cancel")
	case OrderShipped, OrderPartiallyReturned, OrderReturned:
		return Change{}, Errorf(KindConflict, SlugAlreadyShipped, "every shipment of the order has shipped; too late to cancel")
	}
	if slices.Contains(o.Flags, FlagCancelFailed) {
		// A warehouse refused an earlier cancel: the goods are on their
		// way, and the cancel request of a shipment is one event (its id
		// is derived from the shipment), never sent twice.
		return Change{}, Errorf(KindConflict, SlugAlreadyShipped, "an earlier cancel was refused by the warehouse; the order ships and needs a return")
	}
	n := o.deepCopy()
	n.Version++
	var ch Change
	var evs []OutboxEvent
	asked, shipped := 0, 0
	for i := range n.Shipments {
		s := &n.Shipments[i]
		switch s.Status {
		case ShipmentPending:
			if err := TransitionShipment(s, ShipmentCancelled); err != nil {
				return Change{}, err
			}
			ch.Holds.Release = append(ch.Holds.Release, holdOf(s))
		case ShipmentRequested, ShipmentAcknowledged:
			if err := TransitionShipment(s, ShipmentCancelRequested); err != nil {
				return Change{}, err
			}
			evs = append(evs, shipmentEvent(EventShipmentCancelRequested, n, s, now))
			asked++
		case ShipmentShipped:
			shipped++
		}
	}
	if asked == 0 && shipped > 0 {
		return Change{}, Errorf(KindConflict, SlugAlreadyShipped, "every open shipment of the order has shipped; too late to cancel")
	}
	n.CancelReason = reason
	cancelFailed := shipped > 0 && addFlag(n, FlagCancelFailed)
	next := OrderCancelled
	if asked > 0 {
		next = OrderCancelRequested
	}
	if err := Transition(n, next); err != nil {
		return Change{}, err
	}
	evs = append(evs, orderEvent(StatusEvent(next), n, now))
	if cancelFailed {
		evs = append(evs, orderEvent(EventOrderCancelFailed, n, now))
	}
	ch.Order, ch.Events, ch.GiveBackLimits = n, stagger(evs, now), next == OrderCancelled
	return ch, nil
}

// Pay records the payment of o for channel ("" = any). A pending payment
// order is released: its shipments are requested from their warehouses,
// order.paid is published, and the holds lose their deadline (Confirm). An
// in-review unpaid order records the payment and stays in review (an
// operator clears it). Errors: errUnchanged (paid already), KindNotFound
// (another channel's order), KindConflict expired (the payment deadline is
// before now, or the order expired) or order-cancelled.
func Pay(o *Order, channel string, now time.Time) (Change, error) {
	if channel != "" && o.Channel != channel {
		return Change{}, notYours()
	}
	switch o.Status {
	case OrderExpired:
		return Change{}, Errorf(KindConflict, SlugPaymentExpired, "the payment deadline passed; the order expired and its stock was released")
	case OrderCancelled, OrderCancelRequested:
		return Change{}, Errorf(KindConflict, SlugOrderCancelled, "the order is cancelled")
	case OrderPendingPayment, OrderInReview:
	default:
		return Change{}, errUnchanged // released or later: paid already
	}
	if o.PaymentStatus == PaymentPaid {
		return Change{}, errUnchanged
	}
	if o.ReservedUntil != nil && now.After(*o.ReservedUntil) {
		// The expiry worker expires it (and releases the stock); the
		// Redis hold may already be gone past its grace.
		return Change{}, Errorf(KindConflict, SlugPaymentExpired, "the payment deadline %s passed", o.ReservedUntil.Format(time.RFC3339))
	}
	n := o.deepCopy()
	n.Version++
	n.PaymentStatus = PaymentPaid
	n.ReservedUntil = nil
	var ch Change
	var evs []OutboxEvent
	for i := range n.Shipments {
		if s := &n.Shipments[i]; s.Status == ShipmentPending {
			ch.Holds.Confirm = append(ch.Holds.Confirm, holdOf(s))
		}
	}
	if n.Status == OrderPendingPayment {
		if err := Transition(n, OrderReleased); err != nil {
			return Change{}, err
		}
		var err error
		if evs, err = requestPending(n, evs, now); err != nil {
			return Change{}, err
		}
	}
	evs = append(evs, orderEvent(EventOrderPaid, n, now))
	ch.Order, ch.Events = n, stagger(evs, now)
	return ch, nil
}

// Expire expires o, unpaid (pending payment or in review) with a payment
// deadline at or before asOf: its pending shipments are cancelled, their
// holds released, order.expired is published (at now) and the purchase
// limits come back. Anything else (paid, cancelled or expired meanwhile,
// a later deadline) is errUnchanged.
func Expire(o *Order, asOf, now time.Time) (Change, error) {
	if (o.Status != OrderPendingPayment && o.Status != OrderInReview) || o.PaymentStatus == PaymentPaid ||
		o.ReservedUntil == nil || o.ReservedUntil.After(asOf) {
		return Change{}, errUnchanged
	}
	n := o.deepCopy()
	n.Version++
	if err := Transition(n, OrderExpired); err != nil {
		return Change{}, err
	}
	var ch Change
	for i := range n.Shipments {
		if s := &n.Shipments[i]; s.Status == ShipmentPending {
			if err := TransitionShipment(s, ShipmentCancelled); err != nil {
				return Change{}, err
			}
			ch.Holds.Release = append(ch.Holds.Release, holdOf(s))
		}
	}
	ch.Order, ch.GiveBackLimits = n, true
	ch.Events = stagger([]OutboxEvent{orderEvent(EventOrderExpired, n, now)}, now)
	return ch, nil
}

// ClearReview ends the review of an in-review (on_hold) order: its review
// reasons are cleared; a paid order is released to fulfillment (its
// pending shipments requested, shipment.requested for each, then
// order.released), an unpaid one goes back to pending payment
// (order.hold_cleared). Errors: KindConflict not-on-hold.
func ClearReview(o *Order, now time.Time) (Change, error) {
	if o.Status != OrderInReview {
		return Change{}, Errorf(KindConflict, SlugNotInReview, "order is %s, not on_hold", o.Status)
	}
	n := o.deepCopy()
	n.ReviewReasons = nil
	n.Version++
	var evs []OutboxEvent
	if n.PaymentStatus == PaymentPaid {
		if err := Transition(n, OrderReleased); err != nil {
			return Change{}, err
		}
		var err error
		if evs, err = requestPending(n, evs, now); err != nil {
			return Change{}, err
		}
		evs = append(evs, orderEvent(EventOrderReleased, n, now))
	} else {
		if err := Transition(n, OrderPendingPayment); err != nil {
			return Change{}, err
		}
		evs = append(evs, orderEvent(EventOrderReviewCleared, n, now))
	}
	return Change{Order: n, Events: stagger(evs, now)}, nil
}

// requestPending requests every pending shipment of o from its warehouse.
func requestPending(o *Order, evs []OutboxEvent, now time.Time) ([]OutboxEvent, error) {
	for i := range o.Shipments {
		if s := &o.Shipments[i]; s.Status == ShipmentPending {
			if err := TransitionShipment(s, ShipmentRequested); err != nil {
				return nil, err
			}
			evs = append(evs, shipmentEvent(EventShipmentRequested, o, s, now))
		}
	}
	return evs, nil
}

func validCancelReason(reason string) error {
	if len(reason) > MaxCancelReason || !utf8.ValidString(reason) {
		return Invalid("the cancellation is not valid", FieldError{"reason", "at most 500 characters"})
	}
	return nil
}

func notYours() error { return Errorf(KindNotFound, SlugNotFound, "no such order") }

func addFlag(o *Order, flag string) bool {
	if slices.Contains(o.Flags, flag) {
		return false
	}
	o.Flags = append(o.Flags, flag)
	return true
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

func (o *Order) shipment(id string) *Shipment {
	for i := range o.Shipments {
		if o.Shipments[i].ID == id {
			return &o.Shipments[i]
		}
	}
	return nil
}

// deepCopy copies o so that no change of the copy reaches o: its
// shipments and their lines, lines, flags, review reasons and the values
// behind its pointers. The stored encoding is not carried over.
func (o *Order) deepCopy() *Order {
	c := *o
	c.encoded = nil
	if o.ReservedUntil != nil {
		t := *o.ReservedUntil
		c.ReservedUntil = &t
	}
	if o.ShipTo != nil {
		a := *o.ShipTo
		if a.Lat != nil {
			v := *a.Lat
			a.Lat = &v
		}
		if a.Lon != nil {
			v := *a.Lon
			a.Lon = &v
		}
		c.ShipTo = &a
	}
	if o.Attribution != nil {
		a := *o.Attribution
		c.Attribution = &a
	}
	c.Lines = slices.Clone(o.Lines)
	c.ReviewReasons = slices.Clone(o.ReviewReasons)
	c.Flags = slices.Clone(o.Flags)
	c.Shipments = copyShipments(o.Shipments)
	return &c
}

func copyShipments(ships []Shipment) []Shipment {
	out := slices.Clone(ships)
	for i := range out {
		out[i].Lines = slices.Clone(out[i].Lines)
	}
	return out
}
