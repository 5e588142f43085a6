package loadtest

import (
	"fmt"
	"testing"
)

func returnAudit(current int64, received []ReceivedLine, refunded bool, events []ReturnEvent) AuditResult {
	status := "received"
	if refunded {
		status = "refunded"
	}
	rec := ReturnRecord{OrderID: "o1", Channel: "c", Shipped: map[string]int64{"S": 3},
		Return: ReturnView{ID: "r1", OrderID: "o1", Status: status, NodeID: "N", Lines: []Line{{SKU: "S", Qty: 3}}, ReceivedLines: received}}
	return Audit(AuditInput{
		Initial:          []StockLevel{{NodeID: "N", SKU: "S", OnHand: 10, Available: 10}},
		Current:          []StockLevel{{NodeID: "N", SKU: "S", OnHand: current, Available: current}},
		Orders:           []AuditOrder{{ID: "o1", Lines: []Line{{SKU: "S", Qty: 3}}, Checked: true, Found: true, Status: "returned"}},
		Returns:          []ReturnRecord{rec},
		ReturnEvents:     events,
		ReturnEventsRead: events != nil,
	})
}

func TestAuditCountsEverySellableReturnedUnitBackOnce(t *testing.T) {
	got := []ReceivedLine{{SKU: "S", Qty: 2, Condition: "sellable"}, {SKU: "S", Qty: 1, Condition: "damaged"}}
	// Shipped 3 (10 -> 7), two came back sellable: 9 on hand.
	if a := returnAudit(9, got, true, nil); !a.Clean() || a.Returns != 1 || a.ReturnedUnits != 3 {
		t.Errorf("restocked once: got %+v", a)
	}
	if a := returnAudit(11, got, true, nil); a.LeakedUnits != 2 {
		t.Errorf("restocked twice: got leaked %d, want 2", a.LeakedUnits)
	}
	if a := returnAudit(7, got, true, nil); a.LeakedUnits != 2 {
		t.Errorf("never restocked: got leaked %d, want 2", a.LeakedUnits)
	}
}

func TestAuditLetsReturnedUnitsBeSoldAgain(t *testing.T) {
	got := []ReceivedLine{{SKU: "S", Qty: 3, Condition: "sellable"}}
	in := AuditInput{
		Initial: []StockLevel{{NodeID: "N", SKU: "S", OnHand: 3, Available: 3}},
		Current: []StockLevel{{NodeID: "N", SKU: "S", OnHand: 0, Available: 0}},
		Orders: []AuditOrder{{ID: "o1", Lines: []Line{{SKU: "S", Qty: 3}}, Status: "returned"},
			{ID: "o2", Lines: []Line{{SKU: "S", Qty: 3}}, Status: "shipped"}},
		Returns: []ReturnRecord{{OrderID: "o1", Shipped: map[string]int64{"S": 3},
			Return: ReturnView{ID: "r1", Status: "refunded", Lines: []Line{{SKU: "S", Qty: 3}}, ReceivedLines: got}}},
	}
	if a := Audit(in); !a.Clean() {
		t.Errorf("three units sold, returned and sold again: got %+v", a)
	}
}

func TestAuditFindsRefundsWithoutReceiptReturnsPastShippedAndDoubleEvents(t *testing.T) {
	got := []ReceivedLine{{SKU: "S", Qty: 2, Condition: "sellable"}}
	if a := returnAudit(7, nil, true, nil); a.RefundsWithoutReceipt != 1 || a.Clean() {
		t.Errorf("refunded with nothing received: got %+v", a)
	}
	ev := func(id, typ string) ReturnEvent {
		return ReturnEvent{EventID: id, Type: typ, ReturnID: "r1", OrderID: "o1"}
	}
	inOrder := []ReturnEvent{ev("e1", "return.requested"), ev("e2", "return.received"), ev("e2", "return.received"), ev("e3", "return.refunded")}
	if a := returnAudit(9, got, true, inOrder); !a.Clean() || a.ReturnEvents != 4 {
		t.Errorf("in order, one redelivery: got %+v", a)
	}
	early := []ReturnEvent{ev("e1", "return.requested"), ev("e3", "return.refunded"), ev("e2", "return.received")}
	if a := returnAudit(9, got, true, early); a.RefundsWithoutReceipt != 1 {
		t.Errorf("refunded before received on the topic: got %+v", a)
	}
	twice := []ReturnEvent{ev("e2", "return.received"), ev("e9", "return.received")}
	if a := returnAudit(9, got, false, twice); a.DuplicateReturnEvents != 1 {
		t.Errorf("received under two ids: got %+v", a)
	}
	in := AuditInput{Returns: []ReturnRecord{{OrderID: "o1", Shipped: map[string]int64{"S": 1},
		Return: ReturnView{ID: "r1", Status: "requested", Lines: []Line{{SKU: "S", Qty: 2}}}}}}
	if a := Audit(in); a.ReturnsPastShipped != 1 || a.Clean() {
		t.Errorf("two returned of one shipped: got %+v", a)
	}
}

func TestReturnSelectionIsReproducibleAndNearTheShare(t *testing.T) {
	n := 0
	for i := range 10000 {
		id := fmt.Sprintf("order-%d", i)
		if returnSelected(5, 0.1, id) != returnSelected(5, 0.1, id) {
			t.Fatal("two answers for one seed")
		}
		if returnSelected(5, 0.1, id) {
			n++
		}
		if returnSelected(5, 0, id) {
			t.Fatal("share 0 selected")
		}
	}
	if n < 850 || n > 1150 {
		t.Errorf("got %d of 10000 at share 0.1", n)
	}
}
