package oms

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omsd/omsd/sourcing"
)

var (
	allOrderStatuses = []OrderStatus{OrderPendingPayment, OrderInReview, OrderReleased, OrderPartiallyShipped,
		OrderShipped, OrderCancelRequested, OrderCancelled, OrderExpired, OrderPartiallyReturned, OrderReturned}
	allShipmentStatuses = []ShipmentStatus{ShipmentPending, ShipmentRequested, ShipmentAcknowledged, ShipmentShipped,
		ShipmentCancelRequested, ShipmentCancelled, ShipmentRejected}
)

// TestOrderTransitions checks every (from, to) pair of order statuses: the
// allowed ones listed here, every other one forbidden.
func TestOrderTransitions(t *testing.T) {
	allowed := map[[2]OrderStatus]bool{}
	for _, m := range [][2]OrderStatus{
		{OrderPendingPayment, OrderReleased}, {OrderPendingPayment, OrderInReview},
		{OrderPendingPayment, OrderCancelled}, {OrderPendingPayment, OrderExpired},
		{OrderInReview, OrderReleased}, {OrderInReview, OrderPendingPayment},
		{OrderInReview, OrderCancelled}, {OrderInReview, OrderExpired},
		{OrderReleased, OrderPartiallyShipped}, {OrderReleased, OrderShipped},
		{OrderReleased, OrderCancelRequested}, {OrderReleased, OrderCancelled},
		{OrderPartiallyShipped, OrderShipped}, {OrderPartiallyShipped, OrderCancelRequested},
		{OrderCancelRequested, OrderCancelled}, {OrderCancelRequested, OrderReleased},
		{OrderCancelRequested, OrderPartiallyShipped}, {OrderCancelRequested, OrderShipped},
		{OrderShipped, OrderPartiallyReturned}, {OrderShipped, OrderReturned}, {OrderPartiallyReturned, OrderReturned},
	} {
		allowed[m] = true
	}
	for _, from := range allOrderStatuses {
		for _, to := range allOrderStatuses {
			want := allowed[[2]OrderStatus{from, to}]
			if got := CanTransition(from, to); got != want {
				t.Errorf("order %s -> %s: got allowed=%v, want %v", from, to, got, want)
			}
			o := &Order{Status: from}
			err := Transition(o, to)
			if want && (err != nil || o.Status != to) {
				t.Errorf("Transition %s -> %s: got %v (status %s), want the move", from, to, err, o.Status)
			}
			if !want && (err == nil || KindOf(err) != KindConflict || o.Status != from) {
				t.Errorf("Transition %s -> %s: got %v (status %s), want a conflict and no move", from, to, err, o.Status)
			}
		}
	}
	if len(transitions) != len(allOrderStatuses) {
		t.Errorf("got %d statuses in the table, want %d", len(transitions), len(allOrderStatuses))
	}
}

// TestShipmentTransitions checks every (from, to) pair of shipment
// statuses.
func TestShipmentTransitions(t *testing.T) {
	allowed := map[[2]ShipmentStatus]bool{}
	for _, m := range [][2]ShipmentStatus{
		{ShipmentPending, ShipmentRequested}, {ShipmentPending, ShipmentCancelled},
		{ShipmentRequested, ShipmentAcknowledged}, {ShipmentRequested, ShipmentShipped},
		{ShipmentRequested, ShipmentRejected}, {ShipmentRequested, ShipmentCancelRequested},
		{ShipmentAcknowledged, ShipmentShipped}, {ShipmentAcknowledged, ShipmentRejected}, {ShipmentAcknowledged, ShipmentCancelRequested},
		{ShipmentCancelRequested, ShipmentCancelled}, {ShipmentCancelRequested, ShipmentShipped}, {ShipmentCancelRequested, ShipmentAcknowledged},
	} {
		allowed[m] = true
	}
	for _, from := range allShipmentStatuses {
		for _, to := range allShipmentStatuses {
			want := allowed[[2]ShipmentStatus{from, to}]
			if got := CanTransitionShipment(from, to); got != want {
				t.Errorf("shipment %s -> %s: got allowed=%v, want %v", from, to, got, want)
			}
			s := &Shipment{ID: "s", Status: from}
			err := TransitionShipment(s, to)
			if want != (err == nil) || (want && s.Status != to) || (!want && s.Status != from) {
				t.Errorf("TransitionShipment %s -> %s: got %v (status %s)", from, to, err, s.Status)
			}
		}
	}
	if len(shipmentTransitions) != len(allShipmentStatuses) {
		t.Errorf("got %d statuses in the table, want %d", len(shipmentTransitions), len(allShipmentStatuses))
	}
}

// TestNoLifecycleMoveLeavesTheStateMachines tries every lifecycle function
// (and every warehouse event, with and without a tracking number or a
// re-sourcing) on every order status, paid or not, flagged or not, with no
// shipment, one, or two shipments in every pair of statuses. Whatever it
// answers, the input is untouched; when it moves, every order and
// shipment move is one the tables above allow, a shipment never
// disappears, only a re-sourcing adds one, each shipment that reaches
// shipped commits its hold and each that reaches cancelled or rejected
// releases it; when it refuses, the error is a typed one.
func TestNoLifecycleMoveLeavesTheStateMachines(t *testing.T) {
	type move struct {
		name    string
		fn      func(o *Order) (Change, error)
		flagged bool // also tried on an order flagged cancel_failed
	}
	moves := []move{
		{"Cancel", func(o *Order) (Change, error) { return Cancel(o, "", "changed my mind", lcNow) }, true},
		{"Pay", func(o *Order) (Change, error) { return Pay(o, "", lcNow) }, false},
		{"Pay late", func(o *Order) (Change, error) { return Pay(o, "", lcNow.Add(time.Hour)) }, false},
		{"Expire", func(o *Order) (Change, error) { return Expire(o, lcNow.Add(time.Hour), lcNow) }, false},
		{"ClearReview", func(o *Order) (Change, error) { return ClearReview(o, lcNow) }, false},
	}
	type wmsVariant struct {
		typ       EventType
		tracking  string
		resourced func() *Resourced
	}
	none := func() *Resourced { return nil }
	for _, v := range []wmsVariant{
		{WMSAcknowledged, "", none}, {WMSShipped, "", none}, {WMSShipped, "T", none},
		{WMSRejected, "", none}, {WMSRejected, "", replacement}, {WMSRejected, "", func() *Resourced { return nothingPlaced(sourcing.OutcomeHold) }},
		{WMSCancelled, "", none}, {WMSCancelled, "", replacement},
		{WMSCancelRefused, "", none}, {WMSCancelRefused, "T", none},
	} {
		for _, sid := range []string{"s0", "s1"} {
			moves = append(moves, move{string(v.typ) + "/" + v.tracking + " on " + sid, func(o *Order) (Change, error) {
				return ApplyWarehouseEvent(o, WMSEvent{EventID: "e", Type: v.typ, ShipmentID: sid, TrackingNumber: v.tracking}, v.resourced(), lcNow)
			}, v.typ == WMSCancelRefused || v.typ == WMSShipped})
		}
	}
	shipSets := [][]ShipmentStatus{nil}
	for _, a := range allShipmentStatuses {
		shipSets = append(shipSets, []ShipmentStatus{a})
		for _, b := range allShipmentStatuses {
			shipSets = append(shipSets, []ShipmentStatus{a, b})
		}
	}
	moved, refused := 0, 0
	for _, st := range allOrderStatuses {
		for _, paid := range []bool{false, true} {
			for _, marks := range []struct{ flags []string }{{nil}, {[]string{FlagCancelFailed}}} {
				for _, ships := range shipSets {
					// One input for every move, and its twin to compare it
					// with: a move that modified it fails at once.
					o, twin := lcOrder(st, paid, ships...), lcOrder(st, paid, ships...)
					if marks.flags != nil {
						o.Flags, twin.Flags = slices.Clone(marks.flags), slices.Clone(marks.flags)
						o.CancelReason, twin.CancelReason = "earlier", "earlier"
					}
					for _, m := range moves {
						if marks.flags != nil && !m.flagged {
							continue // only a cancel and a warehouse's refusal read the flag
						}
						where := func() string {
							return m.name + " on " + string(st) + " " + fmtShips(ships) + " paid=" + fmtBool(paid) + " flags=" + fmtBool(marks.flags != nil)
						}
						ch, err := m.fn(o)
						if !reflect.DeepEqual(o, twin) {
							t.Fatalf("%s: got the input modified, want it untouched", where())
						}
						if err != nil {
							refused++
							if s := slugOf(err); s == "" || strings.HasPrefix(string(s), "untyped") {
								t.Fatalf("%s: got an untyped error %v, want a slug or a sentinel", where(), err)
							}
							continue
						}
						moved++
						if msg := checkChange(o, ch); msg != "" {
							t.Fatalf("%s: %s", where(), msg)
						}
						// The change shares nothing with the input.
						n := ch.Order
						n.Flags = append(n.Flags, "x")
						n.ReviewReasons = append(n.ReviewReasons[:0:0], "y")
						*n.ShipTo.Lat = 0
						n.Attribution.Store = "other"
						for i := range n.Shipments {
							n.Shipments[i].Lines[0].Qty = 99
						}
						if !reflect.DeepEqual(o, twin) {
							t.Fatalf("%s: got the input changed through the change's order, want a deep copy", where())
						}
					}
				}
			}
		}
	}
	if moved < 1000 || refused < 1000 {
		t.Errorf("got %d moves and %d refusals, want many of each (the sweep is not exercising the functions)", moved, refused)
	}
	t.Logf("%d moves checked against the tables, %d refusals", moved, refused)
}

// checkChange returns what is wrong with ch as the move of o ("" if
// nothing).
func checkChange(o *Order, ch Change) string {
	n := ch.Order
	if n == nil {
		return "got no order in the change"
	}
	if n.Status != o.Status && !CanTransition(o.Status, n.Status) {
		return "got the order moved " + string(o.Status) + " -> " + string(n.Status) + ", which the table forbids"
	}
	if n.Version != o.Version+1 {
		return "got the version not increased by one"
	}
	if len(n.Shipments) < len(o.Shipments) {
		return "got a shipment dropped"
	}
	if len(n.Shipments) > len(o.Shipments) && !ch.UsedResourced {
		return "got a shipment added without a re-sourcing"
	}
	holds := map[string]string{}
	for _, r := range ch.Holds.Commit {
		holds[r.Hold] += "c"
	}
	for _, r := range ch.Holds.Release {
		holds[r.Hold] += "r"
	}
	for _, r := range ch.Holds.Confirm {
		holds[r.Hold] += "f"
	}
	for i, s := range n.Shipments {
		if i >= len(o.Shipments) {
			if s.Status != ShipmentRequested {
				return "got an added shipment " + string(s.Status) + ", want requested"
			}
			continue
		}
		was := o.Shipments[i]
		if s.ID != was.ID {
			return "got the shipments reordered"
		}
		if s.Status != was.Status && !CanTransitionShipment(was.Status, s.Status) {
			return "got shipment " + s.ID + " moved " + string(was.Status) + " -> " + string(s.Status) + ", which the table forbids"
		}
		want := ""
		switch {
		case s.Status == was.Status:
		case s.Status == ShipmentShipped:
			want = "c"
		case s.Status == ShipmentCancelled || s.Status == ShipmentRejected:
			want = "r"
		}
		if was.Status == ShipmentPending && n.PaymentStatus == PaymentPaid && o.PaymentStatus != PaymentPaid {
			want += "f"
		}
		if got := holds[s.HoldID]; got != want {
			return "got hold effects " + got + " for shipment " + s.ID + " (" + string(was.Status) + " -> " + string(s.Status) + "), want " + want
		}
		delete(holds, s.HoldID)
	}
	for h := range holds {
		if h != "r0" {
			return "got a hold effect for " + h + ", which is no shipment of the order"
		}
	}
	for i, e := range ch.Events {
		if e.Seq != int64(n.Version) || (i > 0 && !e.At.After(ch.Events[i-1].At)) {
			return "got events out of order or off the new version"
		}
	}
	if ch.GiveBackLimits && !((n.Status == OrderCancelled || n.Status == OrderExpired) && n.Status != o.Status) {
		return "got purchase limits given back by a move to " + string(n.Status)
	}
	return ""
}

func fmtShips(ships []ShipmentStatus) string {
	s := "["
	for i, st := range ships {
		if i > 0 {
			s += " "
		}
		s += string(st)
	}
	return s + "]"
}

func fmtBool(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
