package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/omsd/omsd/inventory"
)

// Stock returns every stock row (inventory.Ledger).
func (s *Store) Stock(ctx context.Context) ([]inventory.StockRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT node_id, sku, on_hand, safety_stock FROM stock ORDER BY node_id, sku`)
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

// OpenHolds returns the inventory holds of every open shipment
// (inventory.Ledger): what Redis must hold reserved.
func (s *Store) OpenHolds(ctx context.Context) ([]inventory.Hold, error) {
	rows, err := s.pool.Query(ctx, `SELECT s.hold_id, s.node_id, s.reserved_until, l.sku, l.qty
		FROM shipments s JOIN shipment_lines l ON l.shipment_id = s.id
		WHERE s.status IN ('pending', 'requested', 'acknowledged', 'cancel_requested')
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
