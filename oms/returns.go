package oms

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"
)

// After-sales: returns, refunds and exchanges, as pure functions over plain
// values like the lifecycle (lifecycle.go). Every function takes the order
// and its returns as they are stored, with the order row locked by the
// caller's transaction, and returns a ReturnChange: the return after the
// move, the order after it (its version one higher: the events of an order
// and of its returns share the order's version as their sequence), the
// outbox events and the stock movements of a receipt. Nothing here reads a
// clock or does I/O; ReturnService (returns_service.go) runs them.

// ReturnStatus is where a return is in its life.
type ReturnStatus string

// Return statuses (the v1 contract).
const (
	ReturnRequested ReturnStatus = "requested"
	ReturnApproved  ReturnStatus = "approved"
	ReturnRejected  ReturnStatus = "rejected"
	ReturnReceived  ReturnStatus = "received"
	ReturnRefunded  ReturnStatus = "refunded"
	// ReturnClosed: nothing more happens (an exchange whose goods came
	// back: the buyer got the exchange order instead of money).
	ReturnClosed ReturnStatus = "closed"
)

// Order statuses of after-sales.
const (
	OrderPartiallyReturned OrderStatus = "partially_returned"
	OrderReturned          OrderStatus = "returned"
)

// returnTransitions is the return state machine.
var returnTransitions = map[ReturnStatus][]ReturnStatus{
	ReturnRequested: {ReturnApproved, ReturnRejected},
	ReturnApproved:  {ReturnReceived, ReturnClosed},
	ReturnReceived:  {ReturnRefunded},
	ReturnRejected:  {},
	ReturnRefunded:  {},
	ReturnClosed:    {},
}

// Return reasons and resolutions.
var (
	ReturnReasons     = []string{"damaged", "wrong_item", "not_as_described", "changed_mind", "other"}
	ReturnResolutions = []string{ResolutionRefund, ResolutionExchange}
)

// Resolutions of a return.
const (
	ResolutionRefund   = "refund"
	ResolutionExchange = "exchange"
)

// Conditions of a received unit.
const (
	ConditionSellable = "sellable"
	ConditionDamaged  = "damaged"
)

// Refund statuses.
const (
	RefundPending   = "pending"   // nothing received yet; Amount is what the return would refund
	RefundRequested = "requested" // received: Amount is fixed, the payment system is asked
	RefundRefunded  = "refunded"
	RefundNone      = "none" // an exchange: nothing is refunded
)

// Exchange refusal recorded on a return whose exchange order could not be
// placed; the return falls back to a refund.
const ExchangeRefusedNoStock = "insufficient_stock"

// Limits of a return request.
const (
	MaxReturnLines     = MaxLines
	MaxReturnText      = 500
	MaxReturnReference = 255
)

// Events of after-sales.
const (
	TopicReturns = "oms.returns" // key = order id

	EventReturnRequested       EventType = "return.requested"
	EventReturnApproved        EventType = "return.approved"
	EventReturnRejected        EventType = "return.rejected"
	EventReturnReceived        EventType = "return.received"
	EventReturnRefundRequested EventType = "return.refund_requested"
	EventReturnRefunded        EventType = "return.refunded"
	// EventReturnExpected goes to the receiving node on oms.shipments.
	EventReturnExpected EventType = "return.expected"
	// EventOrderRefunded (oms.orders): a refund of a return of the order
	// was made; the order's refunded total says how much in all.
	EventOrderRefunded EventType = "order.refunded"

	// Warehouse events of returns on wms.events (key = return id).
	WMSReturnAcknowledged EventType = "return.acknowledged"
	WMSReturnReceived     EventType = "return.received"
)

// ReturnRequest is the body of POST /v1/orders/{id}/returns.
type ReturnRequest struct {
	ExternalID    string     `json:"external_id"`
	Reason        string     `json:"reason"`
	Resolution    string     `json:"resolution"`
	Lines         []ShipLine `json:"lines"`
	ExchangeLines []ShipLine `json:"exchange_lines,omitempty"`
}

// ReceivedLine is a quantity of one SKU received in one condition.
type ReceivedLine struct {
	SKU       string `json:"sku"`
	Qty       int64  `json:"qty"`
	Condition string `json:"condition"`
}

// Refund is the money side of a return.
type Refund struct {
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Status    string `json:"status"`
	Reference string `json:"reference,omitempty"`
}

// Return is a return as omsd stores and answers it.
type Return struct {
	ID              string         `json:"id"`
	OrderID         string         `json:"order_id"`
	ExternalID      string         `json:"external_id"`
	Channel         string         `json:"channel"`
	Status          ReturnStatus   `json:"status"`
	Reason          string         `json:"reason"`
	Resolution      string         `json:"resolution"`
	Lines           []ShipLine     `json:"lines"`
	ExchangeLines   []ShipLine     `json:"exchange_lines,omitempty"`
	NodeID          string         `json:"node_id"`
	Refund          Refund         `json:"refund"`
	ExchangeOrderID string         `json:"exchange_order_id,omitempty"`
	ExchangeRefused string         `json:"exchange_refused,omitempty"`
	ReceivedLines   []ReceivedLine `json:"received_lines,omitempty"`
	RejectReason    string         `json:"reject_reason,omitempty"`
	AcknowledgedAt  *time.Time     `json:"acknowledged_at,omitempty"`
	Version         int            `json:"version"`
	CreatedAt       time.Time      `json:"created_at"`
	UpdatedAt       time.Time      `json:"updated_at"`

	// RequestHash fingerprints the request that created it (not part of
	// the document).
	RequestHash []byte `json:"-"`
}

var returnNamespace = uuid.MustParse("3d7a1f5c-92e4-5b06-a8c1-4f0e6b2d9a73")

// ReturnID is the deterministic id of (order, external id): copies of one
// return request collide on it.
func ReturnID(orderID, externalID string) string {
	return uuid.NewSHA1(returnNamespace, []byte(orderID+"\x00"+externalID)).String()
}

// RestockID names the stock movement of the sellable units of one SKU of a
// return: one per (return, SKU), so a receipt is booked once.
func RestockID(returnID, sku string) string {
	return uuid.NewSHA1(returnNamespace, []byte(returnID+"\x00restock\x00"+sku)).String()
}

// ReturnRequestHash fingerprints a return request's meaning.
func ReturnRequestHash(req *ReturnRequest) []byte { return hashJSON(req) }

// ReturnEvent is the payload of oms.returns.
type ReturnEvent struct {
	EventID    string    `json:"event_id"`
	Type       EventType `json:"type"`
	ReturnID   string    `json:"return_id"`
	OrderID    string    `json:"order_id"`
	Return     *Return   `json:"return"`
	OccurredAt time.Time `json:"occurred_at"`
}

// ReturnExpectedEvent is the return.expected payload on oms.shipments: the
// receiving node learns what comes back.
type ReturnExpectedEvent struct {
	EventID    string     `json:"event_id"`
	Type       EventType  `json:"type"`
	ReturnID   string     `json:"return_id"`
	OrderID    string     `json:"order_id"`
	NodeID     string     `json:"node_id"`
	Lines      []ShipLine `json:"lines"`
	OccurredAt time.Time  `json:"occurred_at"`
}

// Restock is one stock movement of a receipt: sellable units back into on
// hand (ledger kind 'return'), or damaged units counted apart.
type Restock struct {
	ID      string
	Node    string
	SKU     string
	Qty     int64
	Damaged bool
}

// ReturnChange is the outcome of one after-sales move.
type ReturnChange struct {
	Return *Return
	// Order is the order after the move (version one higher; status
	// changed on a receipt).
	Order  *Order
	Events []OutboxEvent
	// Restocks are the receipt's stock movements, booked in the same
	// transaction; the sellable ones go to the stock engine after it.
	Restocks []Restock
	// Created: the move created the return.
	Created bool
	// RefundedNow is the amount this move refunded (the attribution
	// totals of the order's creation hour net it in the same transaction).
	RefundedNow int64
}

// ValidateReturnRequest checks a return request's fields (every field at
// fault, JSON paths as in the body).
func ValidateReturnRequest(req *ReturnRequest) error {
	var fs []FieldError
	add := func(field, format string, args ...any) {
		fs = append(fs, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if req.ExternalID == "" {
		add("external_id", "is required")
	} else if err := textProblem(req.ExternalID, 128); err != "" {
		add("external_id", "%s", err)
	}
	if !slices.Contains(ReturnReasons, req.Reason) {
		add("reason", "must be one of %v", ReturnReasons)
	}
	if !slices.Contains(ReturnResolutions, req.Resolution) {
		add("resolution", "must be one of %v", ReturnResolutions)
	}
	checkLines := func(field string, lines []ShipLine) {
		if len(lines) == 0 {
			add(field, "at least one line is required")
		}
		if len(lines) > MaxReturnLines {
			add(field, "at most %d lines", MaxReturnLines)
			return
		}
		seen := map[string]bool{}
		for i, l := range lines {
			p := fmt.Sprintf("%s[%d]", field, i)
			if l.SKU == "" {
				add(p+".sku", "is required")
			} else if err := textProblem(l.SKU, 128); err != "" {
				add(p+".sku", "%s", err)
			} else if seen[l.SKU] {
				add(p+".sku", "repeats an earlier line's SKU")
			}
			seen[l.SKU] = true
			if l.Qty < 1 || l.Qty > MaxQty {
				add(p+".qty", "must be between 1 and %d", MaxQty)
			}
		}
	}
	checkLines("lines", req.Lines)
	switch {
	case req.Resolution == ResolutionExchange:
		checkLines("exchange_lines", req.ExchangeLines)
	case len(req.ExchangeLines) > 0:
		add("exchange_lines", "only an exchange has exchange lines")
	}
	if len(fs) > 0 {
		return Invalid("the return request is not valid", fs...)
	}
	return nil
}

// ShippedUnits is what an order's shipped shipments carried, per SKU.
func ShippedUnits(o *Order) map[string]int64 {
	out := map[string]int64{}
	for _, s := range o.Shipments {
		if s.Status == ShipmentShipped {
			for _, l := range s.Lines {
				out[l.SKU] += l.Qty
			}
		}
	}
	return out
}

// ReturnedUnits is what the order's returns claim, per SKU: every return
// but a rejected one counts its requested lines (a return received short
// keeps its claim: the rest may still arrive under it).
func ReturnedUnits(rets []*Return) map[string]int64 {
	out := map[string]int64{}
	for _, r := range rets {
		if r.Status == ReturnRejected {
			continue
		}
		for _, l := range r.Lines {
			out[l.SKU] += l.Qty
		}
	}
	return out
}

// unitPrice is the price of one unit of sku in o (the first line of that
// SKU; a SKU repeated at another price refunds at the first line's).
func unitPrice(o *Order, sku string) int64 {
	for _, l := range o.Lines {
		if l.SKU == sku {
			return l.UnitPrice
		}
	}
	return 0
}

func refundFor(o *Order, lines []ShipLine) int64 {
	var v int64
	for _, l := range lines {
		v += unitPrice(o, l.SKU) * l.Qty
	}
	return v
}

// NewReturn opens a return of o for channel ("" = an operator). rets are
// the order's returns; node is where the goods go back (ReturnNode).
// Errors: KindNotFound (another channel's order), KindInvalid naming the
// line (a SKU not shipped, more than shipped less already returned),
// KindConflict idempotency-conflict (the external id was used with another
// body). A repeat with the same body returns the stored return and no
// change (Created false, Order nil).
func NewReturn(o *Order, rets []*Return, channel string, req *ReturnRequest, hash []byte, node string, now time.Time) (ReturnChange, error) {
	if channel != "" && o.Channel != channel {
		return ReturnChange{}, notYours()
	}
	id := ReturnID(o.ID, req.ExternalID)
	for _, r := range rets {
		if r.ID == id {
			if !slices.Equal(r.RequestHash, hash) {
				return ReturnChange{}, Errorf(KindConflict, SlugIdempotencyConflict, "return %s was requested with another body", req.ExternalID)
			}
			return ReturnChange{Return: r}, nil
		}
	}
	shipped := ShippedUnits(o)
	claimed := ReturnedUnits(rets)
	var fs []FieldError
	for i, l := range req.Lines {
		left := shipped[l.SKU] - claimed[l.SKU]
		switch {
		case shipped[l.SKU] == 0:
			fs = append(fs, FieldError{Field: fmt.Sprintf("lines[%d].sku", i), Message: "no unit of this SKU has shipped on the order"})
		case l.Qty > left:
			fs = append(fs, FieldError{Field: fmt.Sprintf("lines[%d].qty", i),
				Message: fmt.Sprintf("at most %d can be returned (%d shipped, %d in other returns)", max(left, 0), shipped[l.SKU], claimed[l.SKU])})
		}
	}
	if len(fs) > 0 {
		return ReturnChange{}, Invalid("the return asks for more than shipped", fs...)
	}
	r := &Return{ID: id, OrderID: o.ID, ExternalID: req.ExternalID, Channel: o.Channel, Status: ReturnRequested,
		Reason: req.Reason, Resolution: req.Resolution, Lines: sortLines(req.Lines), ExchangeLines: sortLines(req.ExchangeLines),
		NodeID: node, Version: 1, CreatedAt: now, UpdatedAt: now, RequestHash: hash}
	r.Refund = Refund{Currency: o.Currency, Status: RefundPending, Amount: refundFor(o, r.Lines)}
	if r.Resolution == ResolutionExchange {
		r.Refund = Refund{Currency: o.Currency, Status: RefundNone}
	}
	n := o.deepCopy()
	n.Version++
	n.UpdatedAt = now
	ch := ReturnChange{Return: r, Order: n, Created: true}
	ch.Events = []OutboxEvent{returnEvent(EventReturnRequested, r, n, now)}
	return ch, nil
}

// ApproveReturn approves a requested return. For an exchange, exchangeID
// is the exchange order intake stored, or "" with refused set when intake
// refused it for stock: the return then falls back to a refund, recorded
// in ExchangeRefused. Approval asks the receiving node to expect the goods
// (return.expected on oms.shipments). A return approved already is
// errUnchanged.
func ApproveReturn(o *Order, r *Return, channel, exchangeID, refused string, now time.Time) (ReturnChange, error) {
	if channel != "" && r.Channel != channel {
		return ReturnChange{}, notYours()
	}
	if r.Status == ReturnApproved || r.Status == ReturnReceived || r.Status == ReturnRefunded || r.Status == ReturnClosed {
		return ReturnChange{}, errUnchanged
	}
	n, o2, err := moveReturn(o, r, ReturnApproved, now)
	if err != nil {
		return ReturnChange{}, err
	}
	if n.Resolution == ResolutionExchange {
		switch {
		case exchangeID != "":
			n.ExchangeOrderID = exchangeID
		default:
			n.ExchangeRefused = refused
			if refused == "" {
				n.ExchangeRefused = ExchangeRefusedNoStock
			}
			n.Refund = Refund{Currency: o.Currency, Status: RefundPending, Amount: refundFor(o, n.Lines)}
		}
	}
	ch := ReturnChange{Return: n, Order: o2}
	ch.Events = stagger([]OutboxEvent{returnEvent(EventReturnApproved, n, o2, now), returnExpectedEvent(n, o2, now)}, now)
	return ch, nil
}

// RejectReturn rejects a requested return with a reason.
func RejectReturn(o *Order, r *Return, channel, reason string, now time.Time) (ReturnChange, error) {
	if channel != "" && r.Channel != channel {
		return ReturnChange{}, notYours()
	}
	if e := textProblem(reason, MaxReturnText); e != "" {
		return ReturnChange{}, Invalid("the reason is not valid", FieldError{Field: "reason", Message: e})
	}
	if r.Status == ReturnRejected {
		return ReturnChange{}, errUnchanged
	}
	n, o2, err := moveReturn(o, r, ReturnRejected, now)
	if err != nil {
		return ReturnChange{}, err
	}
	n.RejectReason = reason
	n.Refund.Amount, n.Refund.Status = 0, RefundNone
	return ReturnChange{Return: n, Order: o2, Events: []OutboxEvent{returnEvent(EventReturnRejected, n, o2, now)}}, nil
}

// AcknowledgeReturn records that the receiving warehouse expects the goods
// (no status change). A second acknowledgement is errUnchanged.
func AcknowledgeReturn(o *Order, r *Return, now time.Time) (ReturnChange, error) {
	if r.AcknowledgedAt != nil {
		return ReturnChange{}, errUnchanged
	}
	n := r.copy()
	n.AcknowledgedAt = &now
	n.Version++
	n.UpdatedAt = now
	o2 := o.deepCopy()
	o2.Version++
	o2.UpdatedAt = now
	return ReturnChange{Return: n, Order: o2}, nil
}

// ReceiveReturn books the receipt of an approved return: the received
// lines (at most the return's lines per SKU, in either condition) go back
// to the receiving node, sellable units into on hand, damaged units apart.
// The refund amount is fixed from what was received (unit price x qty) and
// return.refund_requested is emitted; an exchange is closed instead (its
// buyer has the exchange order). The order becomes partially_returned or
// returned once every shipment is settled. Errors: KindInvalid (a line the
// return does not have, more than it has, a bad condition), KindConflict
// (the return is not approved).
func ReceiveReturn(o *Order, rets []*Return, r *Return, lines []ReceivedLine, now time.Time) (ReturnChange, error) {
	if err := validReceipt(r, lines); err != nil {
		return ReturnChange{}, err
	}
	if r.Status == ReturnReceived || r.Status == ReturnRefunded || r.Status == ReturnClosed {
		return ReturnChange{}, errUnchanged
	}
	if r.Status != ReturnApproved {
		return ReturnChange{}, Errorf(KindConflict, SlugInvalidTransition, "return %s is %s; only an approved return can be received", r.ID, r.Status)
	}
	refund := r.Resolution == ResolutionRefund || r.ExchangeRefused != ""
	to := ReturnReceived
	if !refund {
		to = ReturnClosed
	}
	n, o2, err := moveReturn(o, r, to, now)
	if err != nil {
		return ReturnChange{}, err
	}
	n.ReceivedLines = mergeReceived(lines)
	var got []ShipLine
	ch := ReturnChange{Return: n, Order: o2}
	for _, l := range n.ReceivedLines {
		got = append(got, ShipLine{SKU: l.SKU, Qty: l.Qty})
		rs := Restock{ID: RestockID(r.ID, l.SKU), Node: r.NodeID, SKU: l.SKU, Qty: l.Qty, Damaged: l.Condition == ConditionDamaged}
		if rs.Damaged {
			rs.ID = RestockID(r.ID, l.SKU+"\x00damaged")
		}
		ch.Restocks = append(ch.Restocks, rs)
	}
	if refund {
		n.Refund = Refund{Currency: o.Currency, Status: RefundRequested, Amount: refundFor(o, got)}
	}
	// The order's status: returned once everything that shipped is back
	// and nothing is still on its way out.
	if o2.Status == OrderShipped || o2.Status == OrderPartiallyReturned {
		back := receivedUnits(rets, n)
		to := OrderReturned
		for sku, q := range ShippedUnits(o2) {
			if back[sku] < q {
				to = OrderPartiallyReturned
			}
		}
		if to != o2.Status {
			if err := Transition(o2, to); err != nil {
				return ReturnChange{}, err
			}
		}
	}
	ch.Events = append(ch.Events, returnEvent(EventReturnReceived, n, o2, now))
	if refund {
		ch.Events = append(ch.Events, returnEvent(EventReturnRefundRequested, n, o2, now))
	}
	if o2.Status != o.Status {
		ch.Events = append(ch.Events, orderEvent(StatusEvent(o2.Status), o2, now))
	}
	ch.Events = stagger(ch.Events, now)
	return ch, nil
}

// RefundReturn records the payment system's refund of a received return.
// The order's refunded total grows by the amount (attribution nets it).
func RefundReturn(o *Order, r *Return, channel, reference string, now time.Time) (ReturnChange, error) {
	if channel != "" && r.Channel != channel {
		return ReturnChange{}, notYours()
	}
	if e := textProblem(reference, MaxReturnReference); e != "" {
		return ReturnChange{}, Invalid("the reference is not valid", FieldError{Field: "reference", Message: e})
	}
	if r.Status == ReturnRefunded {
		return ReturnChange{}, errUnchanged
	}
	if r.Status != ReturnReceived {
		return ReturnChange{}, Errorf(KindConflict, SlugInvalidTransition, "return %s is %s; only a received return is refunded", r.ID, r.Status)
	}
	n, o2, err := moveReturn(o, r, ReturnRefunded, now)
	if err != nil {
		return ReturnChange{}, err
	}
	n.Refund.Status, n.Refund.Reference = RefundRefunded, reference
	o2.Refunded += n.Refund.Amount
	ch := ReturnChange{Return: n, Order: o2, RefundedNow: n.Refund.Amount}
	ch.Events = stagger([]OutboxEvent{returnEvent(EventReturnRefunded, n, o2, now), orderEvent(EventOrderRefunded, o2, now)}, now)
	return ch, nil
}

// moveReturn copies r and o, moves the copy of r to status to through the
// state table, and bumps both versions.
func moveReturn(o *Order, r *Return, to ReturnStatus, now time.Time) (*Return, *Order, error) {
	if !slices.Contains(returnTransitions[r.Status], to) {
		return nil, nil, Errorf(KindConflict, SlugInvalidTransition, "a return cannot go from %s to %s", r.Status, to)
	}
	n := r.copy()
	n.Status = to
	n.Version++
	n.UpdatedAt = now
	o2 := o.deepCopy()
	o2.Version++
	o2.UpdatedAt = now
	return n, o2, nil
}

func validReceipt(r *Return, lines []ReceivedLine) error {
	want := map[string]int64{}
	for _, l := range r.Lines {
		want[l.SKU] += l.Qty
	}
	got := map[string]int64{}
	var fs []FieldError
	if len(lines) == 0 || len(lines) > 2*MaxReturnLines {
		fs = append(fs, FieldError{Field: "lines", Message: fmt.Sprintf("between 1 and %d lines", 2*MaxReturnLines)})
	}
	for i, l := range lines {
		p := fmt.Sprintf("lines[%d]", i)
		switch {
		case want[l.SKU] == 0:
			fs = append(fs, FieldError{Field: p + ".sku", Message: "the return has no such SKU"})
		case l.Qty < 1 || l.Qty > MaxQty:
			fs = append(fs, FieldError{Field: p + ".qty", Message: fmt.Sprintf("must be between 1 and %d", MaxQty)})
		default:
			got[l.SKU] += l.Qty
			if got[l.SKU] > want[l.SKU] {
				fs = append(fs, FieldError{Field: p + ".qty", Message: fmt.Sprintf("more than the %d the return has", want[l.SKU])})
			}
		}
		if l.Condition != ConditionSellable && l.Condition != ConditionDamaged {
			fs = append(fs, FieldError{Field: p + ".condition", Message: `must be "sellable" or "damaged"`})
		}
	}
	if len(fs) > 0 {
		return Invalid("the receipt is not valid", fs...)
	}
	return nil
}

// mergeReceived adds up lines of one (SKU, condition), sorted.
func mergeReceived(lines []ReceivedLine) []ReceivedLine {
	type k struct{ sku, cond string }
	sum := map[k]int64{}
	for _, l := range lines {
		sum[k{l.SKU, l.Condition}] += l.Qty
	}
	out := make([]ReceivedLine, 0, len(sum))
	for key, q := range sum {
		out = append(out, ReceivedLine{SKU: key.sku, Qty: q, Condition: key.cond})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].SKU != out[j].SKU {
			return out[i].SKU < out[j].SKU
		}
		return out[i].Condition < out[j].Condition
	})
	return out
}

// receivedUnits is what came back of the order, per SKU: the received
// lines of every return, with n in place of its stored version.
func receivedUnits(rets []*Return, n *Return) map[string]int64 {
	out := map[string]int64{}
	add := func(r *Return) {
		for _, l := range r.ReceivedLines {
			out[l.SKU] += l.Qty
		}
	}
	add(n)
	for _, r := range rets {
		if r.ID != n.ID {
			add(r)
		}
	}
	return out
}

func sortLines(lines []ShipLine) []ShipLine {
	if lines == nil {
		return nil
	}
	out := slices.Clone(lines)
	sort.Slice(out, func(i, j int) bool { return out[i].SKU < out[j].SKU })
	return out
}

func (r *Return) copy() *Return {
	n := *r
	n.Lines = slices.Clone(r.Lines)
	n.ExchangeLines = slices.Clone(r.ExchangeLines)
	n.ReceivedLines = slices.Clone(r.ReceivedLines)
	n.RequestHash = slices.Clone(r.RequestHash)
	if r.AcknowledgedAt != nil {
		t := *r.AcknowledgedAt
		n.AcknowledgedAt = &t
	}
	return &n
}

// returnEvent builds the oms.returns event of the return's current version;
// its sequence is the order's version (the events of all returns of an
// order share the key).
func returnEvent(typ EventType, r *Return, o *Order, now time.Time) OutboxEvent {
	id := EventID(r.ID, string(typ), itoa64(int64(r.Version)))
	b, _ := json.Marshal(ReturnEvent{EventID: id, Type: typ, ReturnID: r.ID, OrderID: r.OrderID, Return: r, OccurredAt: now})
	return OutboxEvent{ID: id, Topic: TopicReturns, Key: r.OrderID, Seq: int64(o.Version), Payload: b, At: now}
}

func returnExpectedEvent(r *Return, o *Order, now time.Time) OutboxEvent {
	id := EventID(r.ID, string(EventReturnExpected))
	b, _ := json.Marshal(ReturnExpectedEvent{EventID: id, Type: EventReturnExpected, ReturnID: r.ID, OrderID: r.OrderID,
		NodeID: r.NodeID, Lines: r.Lines, OccurredAt: now})
	return OutboxEvent{ID: id, Topic: TopicShipments, Key: r.NodeID, Seq: int64(o.Version), Payload: b, At: now}
}
