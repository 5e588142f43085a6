package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/omsd/omsd/inventory"
)

// querier is what the ledger reads run on: the pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// openStatuses are the shipment statuses whose hold is open in Redis.
const openStatuses = `('pending', 'requested', 'acknowledged', 'cancel_requested')`

// State returns the stock rows, the open holds and the restocks of the
// last inventory.RestockWindow in one read-only transaction
// (inventory.Ledger), so that a shipment booked meanwhile is on both sides
// (on hand lowered, hold gone) or on neither, and a restock booked
// meanwhile is in the stock rows exactly when it is in the list. At
// REPEATABLE READ on PostgreSQL every query sees one snapshot; CockroachDB
// runs every transaction serializable.
func (s *Store) State(ctx context.Context) (inventory.LedgerState, error) {
	var st inventory.LedgerState
	err := s.TxWith(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		if st.Stock, err = readStock(ctx, tx); err != nil {
			return err
		}
		if st.Holds, err = readOpenHolds(ctx, tx); err != nil {
			return err
		}
		st.Restocks, err = readRestocks(ctx, tx)
		return err
	})
	if err != nil {
		return inventory.LedgerState{}, fmt.Errorf("pgstore: ledger state: %w", err)
	}
	return st, nil
}

// holdStatesChunk is the most hold ids one HoldStates query asks for.
const holdStatesChunk = 1000

// HoldStates tells what became of the given holds (inventory.Ledger): open,
// shipped (committed) or closed without shipping (released). Hold ids are
// shipment ids, so each chunk is one primary-key lookup; an id that is no
// UUID, or names a shipment of another node or with another hold id, is
// not known to the ledger and is left out of the answer.
func (s *Store) HoldStates(ctx context.Context, holds []inventory.HoldRef) (map[inventory.HoldRef]inventory.HoldState, error) {
	out := make(map[inventory.HoldRef]inventory.HoldState, len(holds))
	want := make(map[inventory.HoldRef]bool, len(holds))
	var ids []uuid.UUID
	for _, h := range holds {
		id, err := uuid.Parse(h.ID)
		if err != nil || want[h] {
			continue
		}
		want[h] = true
		ids = append(ids, id)
	}
	for i := 0; i < len(ids); i += holdStatesChunk {
		rows, err := s.pool.Query(ctx, `SELECT hold_id, node_id, status FROM shipments WHERE id = ANY($1::uuid[])`,
			ids[i:min(i+holdStatesChunk, len(ids))])
		if err != nil {
			return nil, fmt.Errorf("pgstore: hold states: %w", err)
		}
		for rows.Next() {
			var ref inventory.HoldRef
			var status string
			if err := rows.Scan(&ref.ID, &ref.Node, &status); err != nil {
				rows.Close()
				return nil, fmt.Errorf("pgstore: hold states: %w", err)
			}
			if !want[ref] {
				continue
			}
			switch status {
			case "pending", "requested", "acknowledged", "cancel_requested":
				out[ref] = inventory.HoldOpen
			case "shipped":
				out[ref] = inventory.HoldCommitted
			default: // cancelled, rejected: the hold was given back
				out[ref] = inventory.HoldReleased
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("pgstore: hold states: %w", err)
		}
	}
	return out, nil
}

// Stock returns every stock row.
func (s *Store) Stock(ctx context.Context) ([]inventory.StockRow, error) {
	return readStock(ctx, s.pool)
}

func readStock(ctx context.Context, q querier) ([]inventory.StockRow, error) {
	rows, err := q.Query(ctx, `SELECT node_id, sku, on_hand, safety_stock FROM stock ORDER BY node_id, sku`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: stock: %w", err)
	}
	defer rows.Close()
	var out []inventory.StockRow
	for rows.Next() {
		var r inventory.StockRow
		if err := rows.Scan(&r.Node, &r.SKU, &r.OnHand, &r.Safety); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// restockWindowSQL is inventory.RestockWindow as an SQL interval literal,
// accepted by PostgreSQL and CockroachDB alike.
var restockWindowSQL = fmt.Sprintf("INTERVAL '%d seconds'", int64(inventory.RestockWindow/time.Second))

// readRestocks reads the restocks (stock_ledger rows of kind 'return',
// written by the return's transaction with ref = the restock id) booked
// within the window, by the database's clock; the partial index
// stock_ledger_restocks (migration 0008) serves it.
func readRestocks(ctx context.Context, q querier) ([]inventory.Restock, error) {
	rows, err := q.Query(ctx, `SELECT ref, node_id, sku, qty, at FROM stock_ledger
		WHERE kind = 'return' AND at > now() - `+restockWindowSQL+`
		ORDER BY at, ref`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: restocks: %w", err)
	}
	defer rows.Close()
	var out []inventory.Restock
	for rows.Next() {
		var r inventory.Restock
		if err := rows.Scan(&r.ID, &r.Node, &r.SKU, &r.Qty, &r.At); err != nil {
			return nil, fmt.Errorf("pgstore: restocks: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: restocks: %w", err)
	}
	return out, nil
}

// OpenHolds returns the inventory holds of every open shipment: what Redis
// must hold reserved.
func (s *Store) OpenHolds(ctx context.Context) ([]inventory.Hold, error) {
	return readOpenHolds(ctx, s.pool)
}

func readOpenHolds(ctx context.Context, q querier) ([]inventory.Hold, error) {
	rows, err := q.Query(ctx, `SELECT s.hold_id, s.node_id, s.reserved_until, l.sku, l.qty
		FROM shipments s JOIN shipment_lines l ON l.shipment_id = s.id
		WHERE s.status IN `+openStatuses+`
		ORDER BY s.hold_id, l.sku`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open holds: %w", err)
	}
	defer rows.Close()
	var out []inventory.Hold
	for rows.Next() {
		var id, node, sku string
		var until *time.Time
		var qty int64
		if err := rows.Scan(&id, &node, &until, &sku, &qty); err != nil {
			return nil, err
		}
		if len(out) == 0 || out[len(out)-1].ID != id {
			h := inventory.Hold{ID: id, Node: node}
			if until != nil {
				h.Deadline = *until
			}
			out = append(out, h)
		}
		h := &out[len(out)-1]
		h.Lines = append(h.Lines, inventory.Line{SKU: sku, Qty: qty})
	}
	return out, rows.Err()
}
