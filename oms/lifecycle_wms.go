package oms

import (
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/omsd/omsd/sourcing"
)

// ErrEventIgnored marks a warehouse event that was recorded as processed
// but changed nothing because it does not fit the shipment's state (late,
// out of order, or contradicting a final state). Stores commit the event
// id when the transition function returns an error wrapping it.
var ErrEventIgnored = errors.New("oms: event does not apply")

// ValidateWMSEvent checks the fields every warehouse event needs. Errors
// are KindInvalid.
func ValidateWMSEvent(ev WMSEvent) error {
	var fs []FieldError
	if ev.EventID == "" || len(ev.EventID) > 128 || !utf8.ValidString(ev.EventID) {
		fs = append(fs, FieldError{"event_id", "is required (at most 128 characters)"})
	}
	switch ev.Type {
	case WMSAcknowledged, WMSShipped, WMSRejected, WMSCancelled, WMSCancelRefused:
		if _, err := uuid.Parse(ev.ShipmentID); err != nil {
			fs = append(fs, FieldError{"shipment_id", "must be a shipment id"})
		}
		if ev.ReturnID != "" || len(ev.Lines) > 0 {
			fs = append(fs, FieldError{"return_id", "only return events have return_id and lines"})
		}
	case WMSReturnAcknowledged, WMSReturnReceived:
		if _, err := uuid.Parse(ev.ReturnID); err != nil {
			fs = append(fs, FieldError{"return_id", "must be a return id"})
		}
		if ev.ShipmentID != "" {
			fs = append(fs, FieldError{"shipment_id", "a return event names no shipment"})
		}
		switch {
		case ev.Type == WMSReturnReceived && (len(ev.Lines) == 0 || len(ev.Lines) > 2*MaxReturnLines):
			fs = append(fs, FieldError{"lines", fmt.Sprintf("a receipt has between 1 and %d lines", 2*MaxReturnLines)})
		case ev.Type == WMSReturnAcknowledged && len(ev.Lines) > 0:
			fs = append(fs, FieldError{"lines", "an acknowledgement has no lines"})
		}
		for i, l := range ev.Lines {
			if msg := textProblem(l.SKU, 128); msg != "" || l.SKU == "" {
				fs = append(fs, FieldError{fmt.Sprintf("lines[%d].sku", i), "is required: at most 128 bytes, no control characters"})
			}
			if l.Qty < 1 || l.Qty > MaxQty {
				fs = append(fs, FieldError{fmt.Sprintf("lines[%d].qty", i), fmt.Sprintf("must be between 1 and %d", MaxQty)})
			}
			if l.Condition != ConditionSellable && l.Condition != ConditionDamaged {
				fs = append(fs, FieldError{fmt.Sprintf("lines[%d].condition", i), `must be "sellable" or "damaged"`})
			}
		}
	default:
		fs = append(fs, FieldError{"type", "must be shipment.acknowledged, shipment.shipped, shipment.rejected, shipment.cancelled, shipment.cancel_refused, return.acknowledged or return.received"})
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

// Resourced is the re-sourcing of a shipment the warehouse rejects: the
// shipments reserved at other nodes before the transaction (each holding
// its lines), and the plan they come from (nil: nothing could be planned).
type Resourced struct {
	Shipments []Shipment
	Plan      *sourcing.Result
}

// Resourcable reports whether a rejection of s is answered by sourcing its
// lines again: the order is at the warehouses and s is still open there.
func Resourcable(o *Order, s *Shipment) bool {
	return (o.Status == OrderReleased || o.Status == OrderPartiallyShipped) &&
		(s.Status == ShipmentRequested || s.Status == ShipmentAcknowledged)
}

// CancelConfirmed reports whether ev, applied to an order that is now o,
// is the warehouse's confirmation of the order's cancellation (the answer
// of a duplicate or late delivery included): its purchase limits come back.
func CancelConfirmed(o *Order, ev WMSEvent) bool {
	return o.Status == OrderCancelled && (ev.Type == WMSCancelled || ev.Type == WMSRejected)
}

// ApplyWarehouseEvent is the state change of one warehouse event on o.
// A rejection (or a cancellation by the warehouse on its own) of an open
// shipment of a released order uses resourced, reserved beforehand: its
// shipments are added (requested), and when they do not cover the lines
// the order is flagged backordered. When such a rejection finds resourced
// nil, the order changed since the preparation: errStateMoved.
// Errors wrapping ErrEventIgnored (the event is recorded, nothing
// changes): KindConflict stale-event (the shipment's state already covers
// it) or event-conflict (it contradicts the shipment's state).
func ApplyWarehouseEvent(o *Order, ev WMSEvent, resourced *Resourced, now time.Time) (Change, error) {
	if o.shipment(ev.ShipmentID) == nil {
		return Change{}, conflictingEvent("shipment %s is not part of order %s", ev.ShipmentID, o.ID)
	}
	n := o.deepCopy()
	n.Version++
	s := n.shipment(ev.ShipmentID)
	var ch Change
	flagged := map[string]bool{}
	flag := func(fl string) {
		if addFlag(n, fl) {
			flagged[fl] = true
		}
	}
	var added []Shipment

	switch ev.Type {
	case WMSAcknowledged:
		if s.Status != ShipmentRequested {
			return Change{}, staleEvent("shipment %s is %s", s.ID, s.Status)
		}
		if err := TransitionShipment(s, ShipmentAcknowledged); err != nil {
			return Change{}, err
		}

	case WMSShipped:
		switch s.Status {
		case ShipmentRequested, ShipmentAcknowledged:
		case ShipmentCancelRequested:
			flag(FlagCancelFailed) // shipped before the cancel reached the warehouse
		case ShipmentShipped:
			return Change{}, staleEvent("shipment %s is already shipped", s.ID)
		default:
			return Change{}, conflictingEvent("shipment %s is %s; the warehouse reports it shipped", s.ID, s.Status)
		}
		if err := ship(s, ev, &ch.Holds); err != nil {
			return Change{}, err
		}

	case WMSRejected, WMSCancelled:
		switch s.Status {
		case ShipmentCancelRequested:
			// The warehouse will not ship it: the interception succeeded.
		case ShipmentRequested, ShipmentAcknowledged:
			// Rejected, short-picked, or cancelled by the warehouse on its
			// own: source the lines again elsewhere when the order is at
			// the warehouses.
			if Resourcable(n, s) {
				if resourced == nil {
					return Change{}, errStateMoved // prepared when it was not resourcable
				}
				added, ch.UsedResourced = resourced.Shipments, true
				p := resourced.Plan
				if p == nil || p.Outcome != sourcing.OutcomeFulfilled || len(added) == 0 {
					flag(FlagBackordered)
					if p != nil && p.Outcome == sourcing.OutcomeHold && !slices.Contains(n.ReviewReasons, ReviewResourcingFailed) {
						n.ReviewReasons = append(n.ReviewReasons, ReviewResourcingFailed)
					}
				}
			}
		case ShipmentCancelled, ShipmentRejected:
			return Change{}, staleEvent("shipment %s is already %s", s.ID, s.Status)
		default:
			return Change{}, conflictingEvent("shipment %s is %s; the warehouse reports %s", s.ID, s.Status, ev.Type)
		}
		to := ShipmentRejected
		if s.Status == ShipmentCancelRequested {
			to = ShipmentCancelled
		}
		if err := TransitionShipment(s, to); err != nil {
			return Change{}, err
		}
		ch.Holds.Release = append(ch.Holds.Release, holdOf(s))

	case WMSCancelRefused:
		switch s.Status {
		case ShipmentCancelRequested:
			flag(FlagCancelFailed)
			var err error
			if ev.TrackingNumber != "" {
				err = ship(s, ev, &ch.Holds) // refused because it shipped: the report says so
			} else {
				err = TransitionShipment(s, ShipmentAcknowledged) // it will ship
			}
			if err != nil {
				return Change{}, err
			}
		case ShipmentShipped, ShipmentRequested, ShipmentAcknowledged:
			if n.CancelReason == "" {
				return Change{}, staleEvent("no cancel was requested for shipment %s", s.ID)
			}
			flag(FlagCancelFailed)
			if ev.TrackingNumber != "" && s.Status != ShipmentShipped {
				if err := ship(s, ev, &ch.Holds); err != nil {
					return Change{}, err
				}
			}
		default:
			return Change{}, staleEvent("shipment %s is %s", s.ID, s.Status)
		}

	default:
		return Change{}, Invalid("the warehouse event is not valid", FieldError{"type", "is not a warehouse event"})
	}

	var evs []OutboxEvent
	for _, a := range copyShipments(added) {
		a.Status = ShipmentRequested
		n.Shipments = append(n.Shipments, a)
		evs = append(evs, shipmentEvent(EventShipmentRequested, n, &n.Shipments[len(n.Shipments)-1], now))
	}
	if next := Settle(n); next != n.Status {
		if err := Transition(n, next); err != nil {
			return Change{}, err
		}
		evs = append(evs, orderEvent(StatusEvent(next), n, now))
	}
	if flagged[FlagCancelFailed] {
		evs = append(evs, orderEvent(EventOrderCancelFailed, n, now))
	}
	if flagged[FlagBackordered] {
		evs = append(evs, orderEvent(EventOrderBackordered, n, now))
	}
	ch.Order, ch.Events = n, stagger(evs, now)
	ch.GiveBackLimits = n.Status == OrderCancelled && o.Status != OrderCancelled
	return ch, nil
}

// ship marks s shipped with the event's tracking number and books the
// commit of its hold (the SQL ledger is written by the store in the same
// transaction).
func ship(s *Shipment, ev WMSEvent, h *HoldEffects) error {
	if err := TransitionShipment(s, ShipmentShipped); err != nil {
		return err
	}
	if ev.TrackingNumber != "" {
		s.TrackingNumber = ev.TrackingNumber
	}
	h.Commit = append(h.Commit, holdOf(s))
	return nil
}

// Settle derives the order's status from its shipments after a warehouse
// event. Rejected shipments were replaced (or backordered) and count for
// nothing; cancelled ones count for nothing either. Statuses the
// warehouses do not move (unpaid, in review, final) are kept.
func Settle(o *Order) OrderStatus {
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
