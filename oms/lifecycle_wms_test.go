package oms

import (
	"errors"
	"slices"
	"testing"

	"github.com/omsd/omsd/sourcing"
)

// wmsCase is a lifecycle case for a warehouse event on shipment s0.
type wmsCase struct {
	lcCase
	ev        EventType
	tracking  string
	resourced *Resourced
}

// replacement is a re-sourcing that placed every line at node Z.
func replacement() *Resourced {
	return &Resourced{Shipments: []Shipment{{ID: "r0", HoldID: "r0", NodeID: "Z", Status: ShipmentRequested, Lines: []ShipLine{{SKU: "SKU-s0", Qty: 2}}}},
		Plan: &sourcing.Result{Outcome: sourcing.OutcomeFulfilled}}
}

func nothingPlaced(outcome sourcing.Outcome) *Resourced {
	return &Resourced{Plan: &sourcing.Result{Outcome: outcome}}
}

func runWMS(t *testing.T, cases []wmsCase) {
	t.Helper()
	byName := map[string]wmsCase{}
	lc := make([]lcCase, len(cases))
	for i, c := range cases {
		byName[c.name] = c
		lc[i] = c.lcCase
	}
	runCases(t, lc, func(o *Order, c lcCase) (Change, error) {
		w := byName[c.name]
		return ApplyWarehouseEvent(o, WMSEvent{EventID: "e1", Type: w.ev, ShipmentID: "s0", TrackingNumber: w.tracking}, w.resourced, lcNow)
	})
}

func TestApplyWarehouseEventAcknowledged(t *testing.T) {
	cases := []wmsCase{
		{lcCase: lcCase{name: "a requested shipment is acknowledged", order: OrderReleased, paid: true, ships: ss(ShipmentRequested), after: ss(ShipmentAcknowledged)}},
	}
	for _, st := range allShipmentStatuses {
		if st != ShipmentRequested {
			cases = append(cases, wmsCase{lcCase: lcCase{name: "an acknowledgement of a " + string(st) + " shipment is stale", order: OrderReleased, paid: true, ships: ss(st), err: SlugStaleEvent}})
		}
	}
	for i := range cases {
		cases[i].ev = WMSAcknowledged
	}
	runWMS(t, cases)
}

func TestApplyWarehouseEventShipped(t *testing.T) {
	tracked := func(t *testing.T, ch Change) {
		if got := ch.Order.Shipments[0].TrackingNumber; got != "TRK" {
			t.Errorf("got tracking %q, want TRK", got)
		}
	}
	cases := []wmsCase{
		{lcCase: lcCase{name: "a requested shipment ships and the order is shipped", order: OrderReleased, paid: true, ships: ss(ShipmentRequested),
			status: OrderShipped, after: ss(ShipmentShipped), events: evs(StatusEvent(OrderShipped)), commit: 1, check: tracked}},
		{lcCase: lcCase{name: "an acknowledged shipment ships", order: OrderReleased, paid: true, ships: ss(ShipmentAcknowledged),
			status: OrderShipped, after: ss(ShipmentShipped), events: evs(StatusEvent(OrderShipped)), commit: 1}},
		{lcCase: lcCase{name: "one of two shipments ships and the order is partially shipped", order: OrderReleased, paid: true, ships: ss(ShipmentRequested, ShipmentAcknowledged),
			status: OrderPartiallyShipped, after: ss(ShipmentShipped, ShipmentAcknowledged), events: evs(StatusEvent(OrderPartiallyShipped)), commit: 1}},
		{lcCase: lcCase{name: "the last open shipment ships and a partially shipped order is shipped", order: OrderPartiallyShipped, paid: true, ships: ss(ShipmentRequested, ShipmentShipped, ShipmentRejected),
			status: OrderShipped, events: evs(StatusEvent(OrderShipped)), commit: 1}},
		{lcCase: lcCase{name: "a shipment asked to cancel ships anyway and the cancel failed", order: OrderCancelRequested, paid: true, ships: ss(ShipmentCancelRequested),
			status: OrderShipped, after: ss(ShipmentShipped), events: evs(StatusEvent(OrderShipped), EventOrderCancelFailed), commit: 1, flagged: []string{FlagCancelFailed}}},
		{lcCase: lcCase{name: "a second ship report is stale", order: OrderShipped, paid: true, ships: ss(ShipmentShipped), err: SlugStaleEvent}},
		{lcCase: lcCase{name: "a ship report of a cancelled shipment contradicts it", order: OrderCancelled, paid: true, ships: ss(ShipmentCancelled), err: SlugEventConflict}},
		{lcCase: lcCase{name: "a ship report of a rejected shipment contradicts it", order: OrderReleased, paid: true, ships: ss(ShipmentRejected), err: SlugEventConflict}},
		{lcCase: lcCase{name: "a ship report of a pending shipment contradicts it", order: OrderPendingPayment, ships: ss(ShipmentPending), err: SlugEventConflict}},
	}
	for i := range cases {
		cases[i].ev, cases[i].tracking = WMSShipped, "TRK"
	}
	runWMS(t, cases)
}

func TestApplyWarehouseEventRejectedOrCancelled(t *testing.T) {
	for _, typ := range []EventType{WMSRejected, WMSCancelled} {
		t.Run(string(typ), func(t *testing.T) {
			cases := []wmsCase{
				{resourced: replacement(), lcCase: lcCase{name: "a requested shipment is replaced at another node", order: OrderReleased, paid: true, ships: ss(ShipmentRequested),
					after: ss(ShipmentRejected, ShipmentRequested), events: evs(EventShipmentRequested), release: 1,
					check: func(t *testing.T, ch Change) {
						if !ch.UsedResourced || ch.Order.Shipments[1].ID != "r0" || ch.Order.Shipments[1].NodeID != "Z" {
							t.Errorf("got used %v, shipments %+v, want r0 at Z added", ch.UsedResourced, ch.Order.Shipments)
						}
					}}},
				{resourced: replacement(), lcCase: lcCase{name: "an acknowledged shipment of a partially shipped order is replaced", order: OrderPartiallyShipped, paid: true,
					ships: ss(ShipmentAcknowledged, ShipmentShipped), after: ss(ShipmentRejected, ShipmentShipped, ShipmentRequested), events: evs(EventShipmentRequested), release: 1}},
				{resourced: nothingPlaced(sourcing.OutcomeRejected), lcCase: lcCase{name: "a shipment nothing can replace leaves the order backordered", order: OrderReleased, paid: true,
					ships: ss(ShipmentRequested), after: ss(ShipmentRejected), events: evs(EventOrderBackordered), release: 1, flagged: []string{FlagBackordered}}},
				{resourced: nothingPlaced(sourcing.OutcomeHold), lcCase: lcCase{name: "a backorder under a hold fallback records why for the reviewer", order: OrderReleased, paid: true,
					ships: ss(ShipmentRequested), after: ss(ShipmentRejected), events: evs(EventOrderBackordered), release: 1, flagged: []string{FlagBackordered},
					check: func(t *testing.T, ch Change) {
						if !slices.Contains(ch.Order.ReviewReasons, ReviewResourcingFailed) {
							t.Errorf("got review reasons %v, want %s", ch.Order.ReviewReasons, ReviewResourcingFailed)
						}
					}}},
				{resourced: &Resourced{Shipments: replacement().Shipments, Plan: &sourcing.Result{Outcome: sourcing.OutcomeBackorder}},
					lcCase: lcCase{name: "a partial replacement ships what it can and backorders the rest", order: OrderReleased, paid: true,
						ships: ss(ShipmentRequested), after: ss(ShipmentRejected, ShipmentRequested), events: evs(EventShipmentRequested, EventOrderBackordered), release: 1, flagged: []string{FlagBackordered}}},
				{lcCase: lcCase{name: "a rejection that was not prepared for means the order moved", order: OrderReleased, paid: true, ships: ss(ShipmentRequested), err: stateMoved}},
				{lcCase: lcCase{name: "a shipment asked to cancel is cancelled and the order with it", order: OrderCancelRequested, paid: true, ships: ss(ShipmentCancelRequested),
					status: OrderCancelled, after: ss(ShipmentCancelled), events: evs(StatusEvent(OrderCancelled)), release: 1, giveBack: true}},
				{lcCase: lcCase{name: "one of two shipments asked to cancel is cancelled and the order waits for the other", order: OrderCancelRequested, paid: true,
					ships: ss(ShipmentCancelRequested, ShipmentCancelRequested), after: ss(ShipmentCancelled, ShipmentCancelRequested), release: 1}},
				{lcCase: lcCase{name: "the rest of a partially shipped order is cancelled and the order is shipped", order: OrderCancelRequested, paid: true,
					ships: ss(ShipmentCancelRequested, ShipmentShipped), status: OrderShipped, after: ss(ShipmentCancelled, ShipmentShipped), events: evs(StatusEvent(OrderShipped)), release: 1}},
				{lcCase: lcCase{name: "an order that is not at the warehouses does not source again", order: OrderPendingPayment, ships: ss(ShipmentRequested),
					after: ss(ShipmentRejected), release: 1}},
				{lcCase: lcCase{name: "a cancelled shipment is stale", order: OrderCancelled, ships: ss(ShipmentCancelled), err: SlugStaleEvent}},
				{lcCase: lcCase{name: "a rejected shipment is stale", order: OrderReleased, paid: true, ships: ss(ShipmentRejected), err: SlugStaleEvent}},
				{lcCase: lcCase{name: "a shipped shipment contradicts it", order: OrderShipped, paid: true, ships: ss(ShipmentShipped), err: SlugEventConflict}},
				{lcCase: lcCase{name: "a pending shipment contradicts it", order: OrderPendingPayment, ships: ss(ShipmentPending), err: SlugEventConflict}},
			}
			for i := range cases {
				cases[i].ev = typ
			}
			runWMS(t, cases)
		})
	}
}

func TestApplyWarehouseEventCancelRefused(t *testing.T) {
	cases := []wmsCase{
		{lcCase: lcCase{name: "a refusal before shipping puts the shipment back and flags the order", order: OrderCancelRequested, paid: true, ships: ss(ShipmentCancelRequested),
			status: OrderReleased, after: ss(ShipmentAcknowledged), events: evs(StatusEvent(OrderReleased), EventOrderCancelFailed), flagged: []string{FlagCancelFailed}}},
		{tracking: "TRK", lcCase: lcCase{name: "a refusal with a tracking number ships the shipment", order: OrderCancelRequested, paid: true, ships: ss(ShipmentCancelRequested),
			status: OrderShipped, after: ss(ShipmentShipped), events: evs(StatusEvent(OrderShipped), EventOrderCancelFailed), commit: 1, flagged: []string{FlagCancelFailed}}},
		{lcCase: lcCase{name: "a refusal after the ship report only flags the order", order: OrderShipped, paid: true, ships: ss(ShipmentShipped), cancelReason: "late",
			after: ss(ShipmentShipped), events: evs(EventOrderCancelFailed), flagged: []string{FlagCancelFailed}}},
		{tracking: "TRK", lcCase: lcCase{name: "a refusal with a tracking number of an acknowledged shipment ships it", order: OrderReleased, paid: true, ships: ss(ShipmentAcknowledged), cancelReason: "late",
			status: OrderShipped, after: ss(ShipmentShipped), events: evs(StatusEvent(OrderShipped), EventOrderCancelFailed), commit: 1}},
		{lcCase: lcCase{name: "a refusal of a flagged order changes nothing more", order: OrderShipped, paid: true, ships: ss(ShipmentShipped), cancelReason: "late", flags: []string{FlagCancelFailed},
			after: ss(ShipmentShipped)}},
		{lcCase: lcCase{name: "a refusal when no cancel was requested is stale", order: OrderReleased, paid: true, ships: ss(ShipmentRequested), err: SlugStaleEvent}},
		{lcCase: lcCase{name: "a refusal of a cancelled shipment is stale", order: OrderCancelled, paid: true, ships: ss(ShipmentCancelled), cancelReason: "r", err: SlugStaleEvent}},
		{lcCase: lcCase{name: "a refusal of a rejected shipment is stale", order: OrderReleased, paid: true, ships: ss(ShipmentRejected), cancelReason: "r", err: SlugStaleEvent}},
		{lcCase: lcCase{name: "a refusal of a pending shipment is stale", order: OrderPendingPayment, ships: ss(ShipmentPending), cancelReason: "r", err: SlugStaleEvent}},
	}
	for i := range cases {
		cases[i].ev = WMSCancelRefused
	}
	runWMS(t, cases)
}

func TestApplyWarehouseEventOfAnotherOrdersShipmentIsAConflict(t *testing.T) {
	o := lcOrder(OrderReleased, true, ShipmentRequested)
	_, err := ApplyWarehouseEvent(o, WMSEvent{EventID: "e", Type: WMSShipped, ShipmentID: "elsewhere"}, nil, lcNow)
	if slugOf(err) != SlugEventConflict || !errors.Is(err, ErrEventIgnored) {
		t.Fatalf("got %v, want an ignored event-conflict", err)
	}
}

func TestCancelConfirmed(t *testing.T) {
	for _, tc := range []struct {
		status OrderStatus
		ev     EventType
		want   bool
	}{
		{OrderCancelled, WMSCancelled, true},
		{OrderCancelled, WMSRejected, true},
		{OrderCancelled, WMSShipped, false},
		{OrderCancelRequested, WMSCancelled, false},
		{OrderShipped, WMSCancelled, false},
	} {
		if got := CancelConfirmed(&Order{Status: tc.status}, WMSEvent{Type: tc.ev}); got != tc.want {
			t.Errorf("order %s after %s: got confirmed %v, want %v", tc.status, tc.ev, got, tc.want)
		}
	}
}
