package loadtest

import (
	"encoding/json"
	"strings"
	"testing"
)

// cleanLedger is a consistent little world: two nodes hold SKU-A and
// SKU-B; four orders were accepted (one shipped, one released and
// reserved, one pending payment and reserved, one expired and released).
func cleanLedger() AuditInput {
	lvl := func(node, sku string, onHand, reserved int64) StockLevel {
		return StockLevel{NodeID: node, SKU: sku, OnHand: onHand, Reserved: reserved, Available: onHand - reserved}
	}
	return AuditInput{
		Initial: []StockLevel{lvl("WH-HZ", "SKU-A", 10, 0), lvl("ST-SH-01", "SKU-A", 2, 0), lvl("WH-HZ", "SKU-B", 5, 0)},
		// o1 shipped 3 A from WH-HZ; o2 reserves 2 A at ST-SH-01 and 1 B;
		// o3 (pending) reserves 1 A at WH-HZ; o4 expired, released.
		Current: []StockLevel{lvl("WH-HZ", "SKU-A", 7, 1), lvl("ST-SH-01", "SKU-A", 2, 2), lvl("WH-HZ", "SKU-B", 5, 1)},
		Orders: []AuditOrder{
			{ID: "o1", Lines: []Line{{"SKU-A", 3}}, Checked: true, Found: true, Status: "shipped"},
			{ID: "o2", Lines: []Line{{"SKU-A", 2}, {"SKU-B", 1}}, Checked: true, Found: true, Status: "released"},
			{ID: "o3", Lines: []Line{{"SKU-A", 1}}, Pending: true, Checked: true, Found: true, Status: "pending_payment"},
			{ID: "o4", Lines: []Line{{"SKU-B", 4}}, Pending: true, Checked: true, Found: true, Status: "expired"},
		},
		Shipments: []ShipmentEvent{
			{EventID: "e1", Type: "shipment.requested", ShipmentID: "s1", OrderID: "o1", NodeID: "WH-HZ"},
			{EventID: "e1", Type: "shipment.requested", ShipmentID: "s1", OrderID: "o1", NodeID: "WH-HZ"}, // redelivery
			{EventID: "e2", Type: "shipment.requested", ShipmentID: "s2", OrderID: "o2", NodeID: "ST-SH-01"},
			{EventID: "e3", Type: "shipment.cancel_requested", ShipmentID: "s2", OrderID: "o2", NodeID: "ST-SH-01"},
			{EventID: "e9", Type: "shipment.requested", ShipmentID: "s9", OrderID: "someone-else", NodeID: "WH-HZ"},
		},
		ShipmentsRead: true,
	}
}

func TestAuditOfACleanLedgerFindsNothing(t *testing.T) {
	res := Audit(cleanLedger())
	if !res.Clean() || res.OversoldUnits != 0 || res.MissingOrders != 0 || res.DuplicateShipments != 0 || res.LeakedUnits != 0 || res.UnpaidShipments != 0 {
		t.Fatalf("got %+v, want all zeros", res)
	}
	if len(res.Findings) != 0 {
		t.Errorf("got findings %+v, want none", res.Findings)
	}
	if res.OrdersAccepted != 4 || res.OrdersChecked != 4 || res.Sampled {
		t.Errorf("got accepted %d checked %d sampled %v, want 4, 4, false", res.OrdersAccepted, res.OrdersChecked, res.Sampled)
	}
	if res.ShipmentEvents != 3 || res.ForeignShipmentEvents != 1 {
		t.Errorf("got %d shipment events and %d foreign, want 3 and 1", res.ShipmentEvents, res.ForeignShipmentEvents)
	}
}

func TestAuditFindsEachCorruption(t *testing.T) {
	tests := []struct {
		scenario string
		corrupt  func(in *AuditInput)
		want     AuditResult // only the five counters are compared
		check    string      // a finding of this check must be reported
	}{
		{
			scenario: "an extra reserved unit is a leak",
			corrupt:  func(in *AuditInput) { in.Current[2].Reserved++; in.Current[2].Available-- },
			want:     AuditResult{LeakedUnits: 1},
			check:    "leaked_units",
		},
		{
			scenario: "a node with negative available is oversold by the excess",
			corrupt: func(in *AuditInput) {
				// ST-SH-01 shows 4 reserved of 2 on hand: two units too many,
				// which also shows as held units no order accounts for.
				in.Current[1].Reserved, in.Current[1].Available = 4, -2
			},
			want:  AuditResult{OversoldUnits: 2, LeakedUnits: 2},
			check: "oversold_units",
		},
		{
			scenario: "safety stock eaten by reservations counts as oversold",
			corrupt: func(in *AuditInput) {
				in.Current[0].SafetyStock, in.Current[0].Available = 8, 7-1-8
			},
			want:  AuditResult{OversoldUnits: 2},
			check: "oversold_units",
		},
		{
			scenario: "selling more than there was at the start is oversold even when every node looks sane",
			corrupt: func(in *AuditInput) {
				in.Orders = append(in.Orders, AuditOrder{ID: "o5", Lines: []Line{{"SKU-B", 5}}, Checked: true, Found: true, Status: "released"})
				in.Current[2].Reserved, in.Current[2].Available = 5, 0
				in.Current = append(in.Current, StockLevel{NodeID: "WH-BJ", SKU: "SKU-B", OnHand: 1, Reserved: 1})
				// 6 units of B live, 5 were there at the start: 1 oversold. The
				// new WH-BJ row came with its on-hand, so the ledger holds 5 for
				// 6 live units: the same unit shows as a leak.
			},
			want:  AuditResult{OversoldUnits: 1, LeakedUnits: 1},
			check: "oversold_units",
		},
		{
			scenario: "an accepted order the API cannot find is missing",
			corrupt:  func(in *AuditInput) { in.Orders[1].Found = false },
			want:     AuditResult{MissingOrders: 1},
			check:    "missing_orders",
		},
		{
			scenario: "the same shipment requested under two event ids is a duplicate",
			corrupt: func(in *AuditInput) {
				in.Shipments = append(in.Shipments, ShipmentEvent{EventID: "e2-again", Type: "shipment.requested", ShipmentID: "s2", OrderID: "o2", NodeID: "ST-SH-01"})
			},
			want:  AuditResult{DuplicateShipments: 1},
			check: "duplicate_shipments",
		},
		{
			scenario: "a cancelled order whose stock was not released is a leak",
			corrupt: func(in *AuditInput) {
				in.Orders[2].Status = "cancelled" // o3's unit of A is still reserved
			},
			want:  AuditResult{LeakedUnits: 1},
			check: "leaked_units",
		},
		{
			scenario: "a reservation released twice is a leak the other way",
			corrupt:  func(in *AuditInput) { in.Current[1].Reserved = 1; in.Current[1].Available = 1 },
			want:     AuditResult{LeakedUnits: 1},
			check:    "leaked_units",
		},
		{
			scenario: "a shipment requested for an unpaid order is reported",
			corrupt: func(in *AuditInput) {
				in.Shipments = append(in.Shipments, ShipmentEvent{EventID: "e4", Type: "shipment.requested", ShipmentID: "s3", OrderID: "o3", NodeID: "WH-HZ"})
			},
			want:  AuditResult{UnpaidShipments: 1},
			check: "unpaid_shipments",
		},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			in := cleanLedger()
			tt.corrupt(&in)
			got := Audit(in)
			if got.OversoldUnits != tt.want.OversoldUnits || got.MissingOrders != tt.want.MissingOrders ||
				got.DuplicateShipments != tt.want.DuplicateShipments || got.LeakedUnits != tt.want.LeakedUnits ||
				got.UnpaidShipments != tt.want.UnpaidShipments {
				t.Errorf("got oversold %d missing %d duplicates %d leaked %d unpaid %d, want %d %d %d %d %d",
					got.OversoldUnits, got.MissingOrders, got.DuplicateShipments, got.LeakedUnits, got.UnpaidShipments,
					tt.want.OversoldUnits, tt.want.MissingOrders, tt.want.DuplicateShipments, tt.want.LeakedUnits, tt.want.UnpaidShipments)
			}
			if got.Clean() {
				t.Error("got Clean() true for a corrupted ledger")
			}
			found := false
			for _, f := range got.Findings {
				found = found || f.Check == tt.check
			}
			if !found {
				t.Errorf("got findings %+v, want one for %s", got.Findings, tt.check)
			}
		})
	}
}

func TestAuditWithoutTheTopicSaysSo(t *testing.T) {
	in := cleanLedger()
	in.Shipments, in.ShipmentsRead = nil, false
	got := Audit(in)
	if got.ShipmentsChecked || !got.Clean() {
		t.Errorf("got checked %v clean %v, want false, true", got.ShipmentsChecked, got.Clean())
	}
	if len(got.Notes) == 0 || !strings.Contains(got.Notes[0], "not read") {
		t.Errorf("got notes %q, want one saying the topic was not read", got.Notes)
	}
}

func TestAuditOfASampleReportsIt(t *testing.T) {
	in := cleanLedger()
	in.Orders[0].Checked, in.Orders[0].Found = false, false
	in.Orders[1].Unreadable, in.Orders[1].Checked = true, false
	got := Audit(in)
	if !got.Sampled || got.OrdersChecked != 2 || got.OrdersUnreadable != 1 || got.MissingOrders != 0 {
		t.Errorf("got sampled %v checked %d unreadable %d missing %d, want true 2 1 0", got.Sampled, got.OrdersChecked, got.OrdersUnreadable, got.MissingOrders)
	}
}

func TestAuditCapsFindings(t *testing.T) {
	var in AuditInput
	for i := range MaxFindings + 5 {
		in.Orders = append(in.Orders, AuditOrder{ID: SKUID(i), Checked: true})
	}
	got := Audit(in)
	if got.MissingOrders != MaxFindings+5 || len(got.Findings) != MaxFindings || got.FindingsTruncated != 5 {
		t.Errorf("got %d missing, %d findings, %d truncated; want %d, %d, 5", got.MissingOrders, len(got.Findings), got.FindingsTruncated, MaxFindings+5, MaxFindings)
	}
}

func TestHeldLinesSkipRejectedAndCancelledShipments(t *testing.T) {
	var v OrderView
	if err := json.Unmarshal([]byte(`{"id":"o","status":"released","shipments":[
		{"status":"rejected","lines":[{"sku":"A","qty":2}]},
		{"status":"requested","lines":[{"sku":"A","qty":2},{"sku":"B","qty":1}]},
		{"status":"cancelled","lines":[{"sku":"B","qty":5}]}]}`), &v); err != nil {
		t.Fatal(err)
	}
	got := v.HeldLines()
	if len(got) != 2 || got[0] != (Line{"A", 2}) || got[1] != (Line{"B", 1}) {
		t.Errorf("got %v, want the lines of the requested shipment only", got)
	}
}
