package oms

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func shippedOrder() *Order {
	return &Order{ID: "11111111-1111-1111-1111-111111111111", Channel: "web", Status: OrderShipped, Currency: "CNY", Version: 3,
		Lines: []Line{{SKU: "A", Qty: 3, UnitPrice: 100}, {SKU: "B", Qty: 1, UnitPrice: 250}},
		Shipments: []Shipment{
			{ID: "s1", NodeID: "N1", Status: ShipmentShipped, Lines: []ShipLine{{SKU: "A", Qty: 2}}},
			{ID: "s2", NodeID: "N2", Status: ShipmentShipped, Lines: []ShipLine{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}},
			{ID: "s3", NodeID: "N3", Status: ShipmentCancelled, Lines: []ShipLine{{SKU: "C", Qty: 5}}},
		}}
}

func refundReq(ext string, lines ...ShipLine) *ReturnRequest {
	return &ReturnRequest{ExternalID: ext, Reason: "changed_mind", Resolution: ResolutionRefund, Lines: lines}
}

func TestValidateReturnRequestNamesEveryField(t *testing.T) {
	err := ValidateReturnRequest(&ReturnRequest{Reason: "bored", Resolution: "credit",
		Lines: []ShipLine{{SKU: "A", Qty: 0}, {SKU: "A", Qty: 1}, {SKU: "x\x00", Qty: 1}}, ExchangeLines: []ShipLine{{SKU: "B", Qty: 1}}})
	e, ok := err.(*Error)
	if !ok || e.Kind != KindInvalid {
		t.Fatalf("got %v", err)
	}
	want := []string{"external_id", "reason", "resolution", "lines[0].qty", "lines[1].sku", "lines[2].sku", "exchange_lines"}
	var got []string
	for _, f := range e.Fields {
		got = append(got, f.Field)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got fields %v, want %v", got, want)
	}
	if err := ValidateReturnRequest(&ReturnRequest{ExternalID: "R", Reason: "other", Resolution: ResolutionExchange, Lines: []ShipLine{{SKU: "A", Qty: 1}}}); err == nil {
		t.Error("an exchange without exchange lines was accepted")
	}
}

func TestNewReturnNeverPassesWhatShippedLessReturned(t *testing.T) {
	o := shippedOrder()
	now := time.Unix(1000, 0).UTC()
	ch, err := NewReturn(o, nil, "web", refundReq("R1", ShipLine{SKU: "A", Qty: 2}), []byte("h1"), "N1", now)
	if err != nil || !ch.Created || ch.Return.Refund.Amount != 200 || ch.Order.Version != 4 || o.Version != 3 {
		t.Fatalf("got %+v %v", ch, err)
	}
	if ch.Events[0].Topic != TopicReturns || ch.Events[0].Key != o.ID || ch.Events[0].Seq != 4 {
		t.Errorf("got event %+v, want oms.returns keyed by the order at its new version", ch.Events[0])
	}
	rets := []*Return{ch.Return}
	for _, tc := range []struct {
		name  string
		lines []ShipLine
		field string
	}{
		{"more than left of A", []ShipLine{{SKU: "A", Qty: 2}}, "lines[0].qty"},
		{"a SKU that never shipped", []ShipLine{{SKU: "B", Qty: 1}, {SKU: "C", Qty: 1}}, "lines[1].sku"},
		{"a SKU not on the order", []ShipLine{{SKU: "Z", Qty: 1}}, "lines[0].sku"},
	} {
		_, err := NewReturn(o, rets, "web", refundReq("R2", tc.lines...), []byte("h2"), "N1", now)
		e, ok := err.(*Error)
		if !ok || e.Kind != KindInvalid || len(e.Fields) != 1 || e.Fields[0].Field != tc.field {
			t.Errorf("%s: got %v, want 422 naming %s", tc.name, err, tc.field)
		}
	}
	if _, err := NewReturn(o, rets, "web", refundReq("R2", ShipLine{SKU: "A", Qty: 1}), []byte("h2"), "N1", now); err != nil {
		t.Errorf("the last unit of A: %v", err)
	}
	// A rejected return gives its units back to what can be returned.
	rej := ch.Return.copy()
	rej.Status = ReturnRejected
	if _, err := NewReturn(o, []*Return{rej}, "web", refundReq("R3", ShipLine{SKU: "A", Qty: 3}), []byte("h3"), "N1", now); err != nil {
		t.Errorf("after a rejection: %v", err)
	}
	// Repeats and conflicts by external id; another channel sees nothing.
	if again, err := NewReturn(o, rets, "web", refundReq("R1", ShipLine{SKU: "A", Qty: 2}), []byte("h1"), "N1", now); err != nil || again.Created || again.Order != nil {
		t.Errorf("repeat: got %+v %v", again, err)
	}
	if _, err := NewReturn(o, rets, "web", refundReq("R1", ShipLine{SKU: "A", Qty: 1}), []byte("other"), "N1", now); KindOf(err) != KindConflict {
		t.Errorf("same external id, other body: got %v", err)
	}
	if _, err := NewReturn(o, nil, "app", refundReq("R9", ShipLine{SKU: "A", Qty: 1}), []byte("h"), "N1", now); KindOf(err) != KindNotFound {
		t.Errorf("another channel: got %v", err)
	}
}

func TestReturnLifeAndOrderStatus(t *testing.T) {
	o := shippedOrder()
	now := time.Unix(2000, 0).UTC()
	ch, _ := NewReturn(o, nil, "", refundReq("R1", ShipLine{SKU: "A", Qty: 3}, ShipLine{SKU: "B", Qty: 1}), []byte("h"), "N1", now)
	r, o := ch.Return, ch.Order
	if _, err := ReceiveReturn(o, []*Return{r}, r, []ReceivedLine{{SKU: "A", Qty: 1, Condition: ConditionSellable}}, now); KindOf(err) != KindConflict {
		t.Fatalf("receipt before approval: got %v", err)
	}
	if _, err := RefundReturn(o, r, "", "P", now); KindOf(err) != KindConflict {
		t.Fatalf("refund before receipt: got %v", err)
	}
	ap, err := ApproveReturn(o, r, "", "", "", now)
	if err != nil || ap.Return.Status != ReturnApproved || len(ap.Events) != 2 || ap.Events[1].Topic != TopicShipments || ap.Events[1].Key != "N1" {
		t.Fatalf("approve: %+v %v", ap, err)
	}
	if _, err := ApproveReturn(ap.Order, ap.Return, "", "", "", now); err != errUnchanged {
		t.Errorf("second approval: got %v, want unchanged", err)
	}
	r, o = ap.Return, ap.Order
	for _, bad := range [][]ReceivedLine{
		{{SKU: "A", Qty: 4, Condition: ConditionSellable}},
		{{SKU: "A", Qty: 2, Condition: ConditionSellable}, {SKU: "A", Qty: 2, Condition: ConditionDamaged}},
		{{SKU: "C", Qty: 1, Condition: ConditionSellable}},
		{{SKU: "A", Qty: 1, Condition: "wet"}},
		nil,
	} {
		if _, err := ReceiveReturn(o, []*Return{r}, r, bad, now); KindOf(err) != KindInvalid {
			t.Errorf("receipt %+v: got %v, want invalid", bad, err)
		}
	}
	// Received short: partially returned; amount from what came back.
	rc, err := ReceiveReturn(o, []*Return{r}, r, []ReceivedLine{{SKU: "A", Qty: 2, Condition: ConditionSellable}, {SKU: "A", Qty: 1, Condition: ConditionDamaged}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Return.Status != ReturnReceived || rc.Return.Refund.Amount != 300 || rc.Return.Refund.Status != RefundRequested || rc.Order.Status != OrderPartiallyReturned {
		t.Errorf("got %+v order %s", rc.Return, rc.Order.Status)
	}
	if len(rc.Restocks) != 2 || rc.Restocks[0].Damaged == rc.Restocks[1].Damaged || rc.Restocks[0].ID == rc.Restocks[1].ID {
		t.Errorf("got restocks %+v, want one sellable and one damaged with their own ids", rc.Restocks)
	}
	var types []EventType
	for _, e := range rc.Events {
		types = append(types, eventType(t, e))
	}
	if !reflect.DeepEqual(types, []EventType{EventReturnReceived, EventReturnRefundRequested, StatusEvent(OrderPartiallyReturned)}) {
		t.Errorf("got events %v", types)
	}
	if r.Status != ReturnApproved || o.Status != OrderShipped {
		t.Error("the inputs were modified")
	}
	rf, err := RefundReturn(rc.Order, rc.Return, "", "PSP-1", now)
	if err != nil || rf.Return.Status != ReturnRefunded || rf.Order.Refunded != 300 {
		t.Fatalf("refund: %+v %v", rf, err)
	}
	if _, err := RefundReturn(rf.Order, rf.Return, "", "PSP-1", now); err != errUnchanged {
		t.Errorf("second refund: got %v", err)
	}
	// A second return of B completes the order.
	ch2, err := NewReturn(rf.Order, []*Return{rf.Return}, "", refundReq("R2", ShipLine{SKU: "B", Qty: 1}), []byte("h2"), "N2", now)
	if KindOf(err) != KindInvalid {
		t.Fatalf("B is claimed by the first return: got %v %+v", err, ch2)
	}
}

func TestEveryOrderReturnedCompletesIt(t *testing.T) {
	o := shippedOrder()
	now := time.Unix(3000, 0).UTC()
	ch, _ := NewReturn(o, nil, "", refundReq("R1", ShipLine{SKU: "A", Qty: 3}, ShipLine{SKU: "B", Qty: 1}), []byte("h"), "N1", now)
	ap, _ := ApproveReturn(ch.Order, ch.Return, "", "", "", now)
	rc, err := ReceiveReturn(ap.Order, []*Return{ap.Return}, ap.Return, []ReceivedLine{{SKU: "A", Qty: 3, Condition: ConditionSellable}, {SKU: "B", Qty: 1, Condition: ConditionSellable}}, now)
	if err != nil || rc.Order.Status != OrderReturned {
		t.Fatalf("got %v %v", err, rc.Order)
	}
}

func TestExchangeApprovalAndFallback(t *testing.T) {
	o := shippedOrder()
	now := time.Unix(4000, 0).UTC()
	req := &ReturnRequest{ExternalID: "X1", Reason: "wrong_item", Resolution: ResolutionExchange, Lines: []ShipLine{{SKU: "A", Qty: 1}}, ExchangeLines: []ShipLine{{SKU: "D", Qty: 1}}}
	ch, _ := NewReturn(o, nil, "", req, []byte("h"), "N1", now)
	if ch.Return.Refund.Status != RefundNone || ch.Return.Refund.Amount != 0 {
		t.Errorf("an exchange refunds nothing: %+v", ch.Return.Refund)
	}
	ok, _ := ApproveReturn(ch.Order, ch.Return, "", "ex-1", "", now)
	if ok.Return.ExchangeOrderID != "ex-1" || ok.Return.ExchangeRefused != "" {
		t.Errorf("got %+v", ok.Return)
	}
	rc, err := ReceiveReturn(ok.Order, []*Return{ok.Return}, ok.Return, []ReceivedLine{{SKU: "A", Qty: 1, Condition: ConditionSellable}}, now)
	if err != nil || rc.Return.Status != ReturnClosed || rc.Return.Refund.Amount != 0 {
		t.Errorf("exchange received: %+v %v", rc.Return, err)
	}
	fb, _ := ApproveReturn(ch.Order, ch.Return, "", "", ExchangeRefusedNoStock, now)
	if fb.Return.ExchangeRefused != ExchangeRefusedNoStock || fb.Return.Refund.Amount != 100 || fb.Return.Refund.Status != RefundPending {
		t.Errorf("fallback: %+v", fb.Return)
	}
	rc, err = ReceiveReturn(fb.Order, []*Return{fb.Return}, fb.Return, []ReceivedLine{{SKU: "A", Qty: 1, Condition: ConditionSellable}}, now)
	if err != nil || rc.Return.Status != ReturnReceived || rc.Return.Refund.Status != RefundRequested {
		t.Errorf("fallback received: %+v %v", rc.Return, err)
	}
}

func TestReturnTransitionsTable(t *testing.T) {
	all := []ReturnStatus{ReturnRequested, ReturnApproved, ReturnRejected, ReturnReceived, ReturnRefunded, ReturnClosed}
	if len(returnTransitions) != len(all) {
		t.Fatalf("got %d statuses in the table, want %d", len(returnTransitions), len(all))
	}
	for _, to := range returnTransitions[ReturnRefunded] {
		t.Errorf("refunded is final, got a move to %s", to)
	}
}

func eventType(t *testing.T, e OutboxEvent) EventType {
	t.Helper()
	var v struct {
		Type EventType `json:"type"`
	}
	if err := json.Unmarshal(e.Payload, &v); err != nil {
		t.Fatal(err)
	}
	return v.Type
}
