package oms

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// The lifecycle functions are tested as values in, values out: a case
// names the order (status, payment, shipment statuses, flags) and the
// expected Change, or the error slug (unchanged and stateMoved stand for
// the two sentinels).

const (
	unchanged  Slug = "(unchanged)"
	stateMoved Slug = "(state moved)"
)

var lcNow = time.Date(2026, 11, 11, 12, 0, 0, 0, time.UTC)

// lcOrder is an order of channel web with one shipment per status, ids
// s0, s1, ... at nodes A, B, ...; an unpaid one has a deadline 30 minutes
// after lcNow.
func lcOrder(status OrderStatus, paid bool, ships ...ShipmentStatus) *Order {
	lat, lon := 30.2, 120.1
	o := &Order{ID: "00000000-0000-4000-8000-000000000001", Channel: "web", Status: status, PaymentStatus: PaymentPending,
		Version: 3, Currency: "CNY", ShipTo: &Address{Region: "CN-ZJ", Lat: &lat, Lon: &lon},
		Attribution: &Attribution{Store: "S1"}, ReviewReasons: []string{"high_value"}}
	if paid {
		o.PaymentStatus = PaymentPaid
	} else {
		until := lcNow.Add(30 * time.Minute)
		o.ReservedUntil = &until
	}
	for i, st := range ships {
		id := "s" + string(rune('0'+i))
		o.Shipments = append(o.Shipments, Shipment{ID: id, HoldID: "h-" + id, NodeID: string(rune('A' + i)), Status: st,
			Lines: []ShipLine{{SKU: "SKU-" + id, Qty: 2}}})
		o.Lines = append(o.Lines, Line{SKU: "SKU-" + id, Qty: 2, UnitPrice: 100})
	}
	return o
}

// lcCase is one row: the order before, and what the Change must be.
type lcCase struct {
	name         string
	order        OrderStatus
	paid         bool
	ships        []ShipmentStatus
	flags        []string
	cancelReason string
	pastDeadline bool // the payment deadline is before lcNow

	err      Slug
	status   OrderStatus // want; "" = unchanged status
	after    []ShipmentStatus
	events   []EventType
	release  int
	commit   int
	confirm  int
	giveBack bool
	flagged  []string
	check    func(t *testing.T, ch Change)
}

func (c lcCase) input() *Order {
	o := lcOrder(c.order, c.paid, c.ships...)
	o.Flags = slices.Clone(c.flags)
	o.CancelReason = c.cancelReason
	if c.pastDeadline {
		until := lcNow.Add(-time.Minute)
		o.ReservedUntil = &until
	}
	return o
}

func ss(st ...ShipmentStatus) []ShipmentStatus { return st }
func evs(ts ...EventType) []EventType          { return ts }

// runCases runs every case through move and checks the Change against it.
func runCases(t *testing.T, cases []lcCase, move func(o *Order, c lcCase) (Change, error)) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.input()
			before := snapshot(in)
			ch, err := move(in, c)
			if got := snapshot(in); got != before {
				t.Fatalf("the input order was modified:\ngot  %s\nwant %s", got, before)
			}
			if c.err != "" {
				if got := slugOf(err); got != c.err {
					t.Fatalf("got error %v (slug %q), want slug %q", err, got, c.err)
				}
				if ch.Order != nil || ch.Events != nil || !ch.Holds.Empty() {
					t.Fatalf("got a change %+v with the error, want none", ch)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want the move", err)
			}
			want := c.status
			if want == "" {
				want = c.order
			}
			if ch.Order.Status != want {
				t.Errorf("got order status %s, want %s", ch.Order.Status, want)
			}
			if c.after != nil && !slices.Equal(shipStatuses(ch.Order), c.after) {
				t.Errorf("got shipments %v, want %v", shipStatuses(ch.Order), c.after)
			}
			if got := eventTypes(t, ch.Events); !slices.Equal(got, c.events) {
				t.Errorf("got events %v, want %v", got, c.events)
			}
			if ch.Order.Version != in.Version+1 {
				t.Errorf("got version %d, want %d", ch.Order.Version, in.Version+1)
			}
			if len(ch.Holds.Release) != c.release || len(ch.Holds.Commit) != c.commit || len(ch.Holds.Confirm) != c.confirm {
				t.Errorf("got holds release %v commit %v confirm %v, want %d, %d and %d", ch.Holds.Release, ch.Holds.Commit, ch.Holds.Confirm, c.release, c.commit, c.confirm)
			}
			if ch.GiveBackLimits != c.giveBack {
				t.Errorf("got limits given back %v, want %v", ch.GiveBackLimits, c.giveBack)
			}
			for _, fl := range c.flagged {
				if !slices.Contains(ch.Order.Flags, fl) {
					t.Errorf("got flags %v, want %s among them", ch.Order.Flags, fl)
				}
			}
			if c.check != nil {
				c.check(t, ch)
			}
		})
	}
}

// snapshot is an encoding of everything in o, hold ids and pointers'
// targets included, to see whether a lifecycle function changed it.
func snapshot(o *Order) string {
	b, _ := json.Marshal(o)
	s := string(b)
	for _, sh := range o.Shipments {
		s += "|" + sh.ID + "=" + sh.HoldID
	}
	return s
}

func slugOf(err error) Slug {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, errUnchanged):
		return unchanged
	case errors.Is(err, errStateMoved):
		return stateMoved
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Slug
	}
	return Slug("untyped: " + err.Error())
}

func shipStatuses(o *Order) []ShipmentStatus {
	out := make([]ShipmentStatus, len(o.Shipments))
	for i, s := range o.Shipments {
		out[i] = s.Status
	}
	return out
}

func eventTypes(t *testing.T, es []OutboxEvent) []EventType {
	t.Helper()
	var out []EventType
	for i, e := range es {
		var p struct {
			Type EventType `json:"type"`
		}
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		out = append(out, p.Type)
	}
	return out
}

func TestCancel(t *testing.T) {
	cases := []lcCase{
		{name: "an unpaid order is cancelled at once and its holds released", order: OrderPendingPayment, ships: ss(ShipmentPending),
			status: OrderCancelled, after: ss(ShipmentCancelled), events: evs(StatusEvent(OrderCancelled)), release: 1, giveBack: true},
		{name: "an order in review is cancelled at once", order: OrderInReview, ships: ss(ShipmentPending, ShipmentPending),
			status: OrderCancelled, after: ss(ShipmentCancelled, ShipmentCancelled), events: evs(StatusEvent(OrderCancelled)), release: 2, giveBack: true},
		{name: "a paid order in review is cancelled at once", order: OrderInReview, paid: true, ships: ss(ShipmentPending),
			status: OrderCancelled, after: ss(ShipmentCancelled), events: evs(StatusEvent(OrderCancelled)), release: 1, giveBack: true},
		{name: "a released order asks its warehouses to cancel", order: OrderReleased, paid: true, ships: ss(ShipmentRequested, ShipmentAcknowledged),
			status: OrderCancelRequested, after: ss(ShipmentCancelRequested, ShipmentCancelRequested),
			events: evs(EventShipmentCancelRequested, EventShipmentCancelRequested, StatusEvent(OrderCancelRequested)),
			check: func(t *testing.T, ch Change) {
				if ch.Order.CancelReason != "changed my mind" {
					t.Errorf("got reason %q, want it recorded", ch.Order.CancelReason)
				}
			}},
		{name: "a rejected shipment of a released order is left as it is", order: OrderReleased, paid: true, ships: ss(ShipmentRejected, ShipmentRequested),
			status: OrderCancelRequested, after: ss(ShipmentRejected, ShipmentCancelRequested),
			events: evs(EventShipmentCancelRequested, StatusEvent(OrderCancelRequested))},
		{name: "a backordered released order with nothing open is cancelled at once", order: OrderReleased, paid: true, ships: ss(ShipmentRejected),
			status: OrderCancelled, after: ss(ShipmentRejected), events: evs(StatusEvent(OrderCancelled)), giveBack: true},
		{name: "a partially shipped order cancels the rest and is flagged for a return", order: OrderPartiallyShipped, paid: true, ships: ss(ShipmentShipped, ShipmentRequested),
			status: OrderCancelRequested, after: ss(ShipmentShipped, ShipmentCancelRequested), flagged: []string{FlagCancelFailed},
			events: evs(EventShipmentCancelRequested, StatusEvent(OrderCancelRequested), EventOrderCancelFailed)},
		{name: "a partially shipped order with nothing open left is too late", order: OrderPartiallyShipped, paid: true, ships: ss(ShipmentShipped, ShipmentRejected), err: SlugAlreadyShipped},
		{name: "a released order whose shipments all shipped is too late", order: OrderReleased, paid: true, ships: ss(ShipmentShipped), err: SlugAlreadyShipped},
		{name: "a shipped order is too late", order: OrderShipped, paid: true, ships: ss(ShipmentShipped), err: SlugAlreadyShipped},
		{name: "an order whose earlier cancel was refused is too late", order: OrderReleased, paid: true, ships: ss(ShipmentAcknowledged), flags: []string{FlagCancelFailed}, err: SlugAlreadyShipped},
		{name: "a cancel_requested order is unchanged", order: OrderCancelRequested, paid: true, ships: ss(ShipmentCancelRequested), err: unchanged},
		{name: "a cancelled order is unchanged", order: OrderCancelled, ships: ss(ShipmentCancelled), err: unchanged},
		{name: "an expired order has nothing to cancel", order: OrderExpired, ships: ss(ShipmentCancelled), err: SlugOrderExpired},
	}
	runCases(t, cases, func(o *Order, c lcCase) (Change, error) { return Cancel(o, "web", "changed my mind", lcNow) })

	o := lcOrder(OrderPendingPayment, false, ShipmentPending)
	if _, err := Cancel(o, "other", "", lcNow); slugOf(err) != SlugNotFound {
		t.Errorf("another channel's order: got %v, want not-found", err)
	}
	if _, err := Cancel(o, "", "", lcNow); err != nil {
		t.Errorf("an operator (any channel): got %v, want the cancel", err)
	}
	if _, err := Cancel(o, "web", strings.Repeat("x", MaxCancelReason+1), lcNow); slugOf(err) != SlugValidation {
		t.Errorf("a reason too long: got %v, want validation", err)
	}
}

func TestPay(t *testing.T) {
	cases := []lcCase{
		{name: "an unpaid order is released and its holds confirmed", order: OrderPendingPayment, ships: ss(ShipmentPending, ShipmentPending),
			status: OrderReleased, after: ss(ShipmentRequested, ShipmentRequested),
			events: evs(EventShipmentRequested, EventShipmentRequested, EventOrderPaid), confirm: 2,
			check: func(t *testing.T, ch Change) {
				if ch.Order.PaymentStatus != PaymentPaid || ch.Order.ReservedUntil != nil {
					t.Errorf("got %s until %v, want paid without a deadline", ch.Order.PaymentStatus, ch.Order.ReservedUntil)
				}
			}},
		{name: "an unpaid order in review records the payment and stays in review", order: OrderInReview, ships: ss(ShipmentPending),
			after: ss(ShipmentPending), events: evs(EventOrderPaid), confirm: 1},
		{name: "an unpaid order past its deadline is expired", order: OrderPendingPayment, ships: ss(ShipmentPending), pastDeadline: true, err: SlugPaymentExpired},
		{name: "a paid order in review is unchanged", order: OrderInReview, paid: true, ships: ss(ShipmentPending), err: unchanged},
		{name: "a released order is unchanged", order: OrderReleased, paid: true, ships: ss(ShipmentRequested), err: unchanged},
		{name: "a partially shipped order is unchanged", order: OrderPartiallyShipped, paid: true, ships: ss(ShipmentShipped, ShipmentRequested), err: unchanged},
		{name: "a shipped order is unchanged", order: OrderShipped, paid: true, ships: ss(ShipmentShipped), err: unchanged},
		{name: "a cancel_requested order is cancelled", order: OrderCancelRequested, paid: true, ships: ss(ShipmentCancelRequested), err: SlugOrderCancelled},
		{name: "a cancelled order is cancelled", order: OrderCancelled, ships: ss(ShipmentCancelled), err: SlugOrderCancelled},
		{name: "an expired order is expired", order: OrderExpired, ships: ss(ShipmentCancelled), err: SlugPaymentExpired},
	}
	runCases(t, cases, func(o *Order, c lcCase) (Change, error) { return Pay(o, "web", lcNow) })

	if _, err := Pay(lcOrder(OrderPendingPayment, false, ShipmentPending), "other", lcNow); slugOf(err) != SlugNotFound {
		t.Errorf("another channel's order: got %v, want not-found", err)
	}
}

func TestExpire(t *testing.T) {
	cases := []lcCase{
		{name: "an unpaid order past its deadline expires and its holds are released", order: OrderPendingPayment, ships: ss(ShipmentPending), pastDeadline: true,
			status: OrderExpired, after: ss(ShipmentCancelled), events: evs(EventOrderExpired), release: 1, giveBack: true},
		{name: "an unpaid order in review past its deadline expires", order: OrderInReview, ships: ss(ShipmentPending, ShipmentPending), pastDeadline: true,
			status: OrderExpired, after: ss(ShipmentCancelled, ShipmentCancelled), events: evs(EventOrderExpired), release: 2, giveBack: true},
		{name: "an unpaid order before its deadline is unchanged", order: OrderPendingPayment, ships: ss(ShipmentPending), err: unchanged},
		{name: "a paid order in review is unchanged", order: OrderInReview, paid: true, ships: ss(ShipmentPending), err: unchanged},
		{name: "a released order is unchanged", order: OrderReleased, ships: ss(ShipmentRequested), pastDeadline: true, err: unchanged},
		{name: "a partially shipped order is unchanged", order: OrderPartiallyShipped, ships: ss(ShipmentShipped), pastDeadline: true, err: unchanged},
		{name: "a shipped order is unchanged", order: OrderShipped, ships: ss(ShipmentShipped), pastDeadline: true, err: unchanged},
		{name: "a cancel_requested order is unchanged", order: OrderCancelRequested, ships: ss(ShipmentCancelRequested), pastDeadline: true, err: unchanged},
		{name: "a cancelled order is unchanged", order: OrderCancelled, ships: ss(ShipmentCancelled), pastDeadline: true, err: unchanged},
		{name: "an expired order is unchanged", order: OrderExpired, ships: ss(ShipmentCancelled), pastDeadline: true, err: unchanged},
	}
	runCases(t, cases, func(o *Order, c lcCase) (Change, error) { return Expire(o, lcNow, lcNow) })

	o := lcOrder(OrderPendingPayment, false, ShipmentPending)
	if _, err := Expire(o, *o.ReservedUntil, lcNow); err != nil {
		t.Errorf("a deadline exactly at the expiry time: got %v, want the expiry", err)
	}
	o.ReservedUntil = nil
	if _, err := Expire(o, lcNow.Add(time.Hour), lcNow); !errors.Is(err, errUnchanged) {
		t.Errorf("an unpaid order without a deadline: got %v, want unchanged", err)
	}
}

func TestClearReview(t *testing.T) {
	noReasons := func(t *testing.T, ch Change) {
		if ch.Order.ReviewReasons != nil {
			t.Errorf("got review reasons %v, want none", ch.Order.ReviewReasons)
		}
	}
	cases := []lcCase{
		{name: "a paid order is released and its shipments requested", order: OrderInReview, paid: true, ships: ss(ShipmentPending, ShipmentPending),
			status: OrderReleased, after: ss(ShipmentRequested, ShipmentRequested),
			events: evs(EventShipmentRequested, EventShipmentRequested, EventOrderReleased), check: noReasons},
		{name: "an unpaid order goes back to waiting for its payment", order: OrderInReview, ships: ss(ShipmentPending),
			status: OrderPendingPayment, after: ss(ShipmentPending), events: evs(EventOrderReviewCleared), check: noReasons},
		{name: "only pending shipments are requested, a cancelled one stays cancelled", order: OrderInReview, paid: true, ships: ss(ShipmentCancelled, ShipmentPending),
			status: OrderReleased, after: ss(ShipmentCancelled, ShipmentRequested), events: evs(EventShipmentRequested, EventOrderReleased)},
	}
	for _, st := range allOrderStatuses {
		if st != OrderInReview {
			cases = append(cases, lcCase{name: "an order " + string(st) + " is not in review", order: st, paid: true, ships: ss(ShipmentRequested), err: SlugNotInReview})
		}
	}
	runCases(t, cases, func(o *Order, c lcCase) (Change, error) { return ClearReview(o, lcNow) })
}

// TestEventsOfOneMoveAreStaggered: the events of one move carry the new
// version and distinct increasing creation times from now on, so that the
// relay publishes them in the order they were built.
func TestEventsOfOneMoveAreStaggered(t *testing.T) {
	ch, err := Pay(lcOrder(OrderPendingPayment, false, ShipmentPending, ShipmentPending), "web", lcNow)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range ch.Events {
		if want := lcNow.Add(time.Duration(i) * time.Microsecond); !e.At.Equal(want) {
			t.Errorf("event %d: got created at %s, want %s", i, e.At, want)
		}
		if e.Seq != int64(ch.Order.Version) {
			t.Errorf("event %d: got seq %d, want the new version %d", i, e.Seq, ch.Order.Version)
		}
	}
}
