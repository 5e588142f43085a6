package pgstore

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/oms"
)

func setShipmentStatus(sid string, status oms.ShipmentStatus) func(o *oms.Order) ([]oms.OutboxEvent, error) {
	return func(o *oms.Order) ([]oms.OutboxEvent, error) {
		for i := range o.Shipments {
			if o.Shipments[i].ID == sid {
				o.Shipments[i].Status = status
			}
		}
		return nil, nil
	}
}

// TestLedgerStateAndHoldStates: the reconciliation asks the ledger by hold
// id what became of the store holds no open shipment owns; a shipped one
// must be told apart from a cancelled one (committing it in Redis, not
// releasing it, is what keeps its units from being sold twice).
func TestLedgerStateAndHoldStates(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	if err := s.SetStock(ctx, "WH-1", "SKU-1", 10, 1); err != nil {
		t.Fatal(err)
	}
	shipped := storeOrder(t, s, "WH-1", "SKU-1", 3).Shipments[0].ID
	open := storeOrder(t, s, "WH-1", "SKU-1", 2).Shipments[0].ID
	cancelled := storeOrder(t, s, "WH-1", "SKU-1", 1).Shipments[0].ID
	for ev, fn := range map[string]func(o *oms.Order) ([]oms.OutboxEvent, error){
		"ev-ship":   shipFn(shipped),
		"ev-cancel": setShipmentStatus(cancelled, oms.ShipmentCancelled),
	} {
		sid := shipped
		if ev == "ev-cancel" {
			sid = cancelled
		}
		oid, err := s.ShipmentOrder(ctx, sid)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := s.ApplyEvent(ctx, ev, oid, fn); err != nil || !ok {
			t.Fatalf("%s: %v, %v", ev, ok, err)
		}
	}

	st, err := s.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Stock) != 1 || st.Stock[0] != (inventory.StockRow{Node: "WH-1", SKU: "SKU-1", OnHand: 7, Safety: 1}) {
		t.Errorf("state stock: got %+v, want WH-1/SKU-1 on hand 7 (10 less the shipment), safety 1", st.Stock)
	}
	if len(st.Holds) != 1 || st.Holds[0].ID != open || st.Holds[0].Node != "WH-1" ||
		len(st.Holds[0].Lines) != 1 || st.Holds[0].Lines[0] != (inventory.Line{SKU: "SKU-1", Qty: 2}) {
		t.Errorf("state holds: got %+v, want only the open shipment %s with 2 of SKU-1", st.Holds, open)
	}

	ref := func(node, id string) inventory.HoldRef { return inventory.HoldRef{Node: node, ID: id} }
	ask := []inventory.HoldRef{
		ref("WH-1", shipped), ref("WH-1", open), ref("WH-1", cancelled),
		ref("WH-1", uuid.NewString()), // never stored
		ref("WH-2", shipped),          // the same id at another node is another hold
		ref("WH-1", "not-a-uuid"),     // no shipment id: unknown, and no error
		ref("WH-1", shipped),          // asked twice
	}
	got, err := s.HoldStates(ctx, ask)
	if err != nil {
		t.Fatal(err)
	}
	want := map[inventory.HoldRef]inventory.HoldState{
		ref("WH-1", shipped):   inventory.HoldCommitted,
		ref("WH-1", open):      inventory.HoldOpen,
		ref("WH-1", cancelled): inventory.HoldReleased,
	}
	if !maps.Equal(got, want) {
		t.Errorf("HoldStates: got %v, want %v", got, want)
	}
	if got, err := s.HoldStates(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("HoldStates(nil): got %v, %v", got, err)
	}
}

// TestHoldStatesManyIDs: more ids than one query takes come back in full.
func TestHoldStatesManyIDs(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	if err := s.SetStock(ctx, "WH-1", "SKU-1", 10, 0); err != nil {
		t.Fatal(err)
	}
	sid := storeOrder(t, s, "WH-1", "SKU-1", 1).Shipments[0].ID
	ask := make([]inventory.HoldRef, 0, 2*holdStatesChunk+1)
	for range 2 * holdStatesChunk {
		ask = append(ask, inventory.HoldRef{Node: "WH-1", ID: uuid.NewString()})
	}
	ask = append(ask, inventory.HoldRef{Node: "WH-1", ID: sid}) // in the last chunk
	got, err := s.HoldStates(ctx, ask)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[inventory.HoldRef{Node: "WH-1", ID: sid}] != inventory.HoldOpen {
		t.Errorf("HoldStates of %d ids: got %v, want only %s open", len(ask), got, sid)
	}
}

// TestLedgerStateListsRecentRestocks: State lists the restocks (stock_ledger
// rows of kind 'return', ref = the restock id) of the last
// inventory.RestockWindow by the database's clock, read in the same
// transaction as the stock rows that already count them; older restocks
// and other kinds of rows are left out.
func TestLedgerStateListsRecentRestocks(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	if err := s.SetStock(ctx, "WH-1", "SKU-1", 10, 0); err != nil {
		t.Fatal(err)
	}
	recent, old := uuid.NewString(), uuid.NewString()
	// What a return's transaction writes: on hand up, and its ledger row.
	for _, r := range []struct {
		ref string
		qty int64
		ago string
	}{{recent, 2, "1 second"}, {old, 3, "11 minutes"}} {
		if _, err := s.pool.Exec(ctx, `UPDATE stock SET on_hand = on_hand + $1 WHERE node_id = 'WH-1' AND sku = 'SKU-1'`, r.qty); err != nil {
			t.Fatal(err)
		}
		if _, err := s.pool.Exec(ctx, `INSERT INTO stock_ledger (id, node_id, sku, kind, qty, on_hand_after, ref, at)
			VALUES ($1, 'WH-1', 'SKU-1', 'return', $2, 0, $3, now() - $4::INTERVAL)`, uuid.New(), r.qty, r.ref, r.ago); err != nil {
			t.Fatal(err)
		}
	}
	shipped := storeOrder(t, s, "WH-1", "SKU-1", 1).Shipments[0].ID
	oid, err := s.ShipmentOrder(ctx, shipped)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.ApplyEvent(ctx, "ev-ship", oid, shipFn(shipped)); err != nil || !ok {
		t.Fatalf("ship: %v, %v", ok, err)
	}

	st, err := s.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Stock) != 1 || st.Stock[0].OnHand != 14 {
		t.Errorf("state stock: got %+v, want on hand 14 (10 + 2 + 3 returned - 1 shipped)", st.Stock)
	}
	if len(st.Restocks) != 1 {
		t.Fatalf("state restocks: got %+v, want only the recent one", st.Restocks)
	}
	got := st.Restocks[0]
	if got.ID != recent || got.Node != "WH-1" || got.SKU != "SKU-1" || got.Qty != 2 || time.Since(got.At) > time.Minute || time.Since(got.At) < 0 {
		t.Errorf("state restock: got %+v, want %s: 2 of SKU-1 at WH-1, booked a second ago", got, recent)
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE indexname = 'stock_ledger_restocks'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("index stock_ledger_restocks: got %d, %v; want it created by migration 0008", n, err)
	}
}
