package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/omsd/omsd/oms"
)

// TransitionOrder runs one state transition of an order in one
// transaction: it locks the order row, hands the current order (with its
// shipments' hold ids) to fn, and writes back what fn changed — the order
// document and status, every shipment's status, and the outbox events fn
// returns. fn may run more than once (serialization retries) and must not
// have side effects outside the order it is given. An *oms.Error from fn
// aborts the transaction and is returned as is.
func (s *Store) TransitionOrder(ctx context.Context, id string, fn func(o *oms.Order) ([]oms.OutboxEvent, error)) (*oms.Order, error) {
	var out *oms.Order
	err := s.Tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		o, err := s.transitionTx(ctx, tx, id, fn)
		out = o
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// transitionTx is the body of TransitionOrder inside the caller's
// transaction, so that other stores can add their own writes to the same
// transaction (ApplyEvent records the event id and the stock ledger).
func (s *Store) transitionTx(ctx context.Context, tx pgx.Tx, id string, fn func(o *oms.Order) ([]oms.OutboxEvent, error)) (*oms.Order, error) {
	var doc []byte
	err := tx.QueryRow(ctx, `SELECT doc FROM orders WHERE id = $1 FOR UPDATE`, id).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, oms.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: lock order: %w", err)
	}
	var o oms.Order
	if err := json.Unmarshal(doc, &o); err != nil {
		return nil, fmt.Errorf("pgstore: decode order: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT id::text, hold_id, status FROM shipments WHERE order_id = $1`, id)
	if err != nil {
		return nil, fmt.Errorf("pgstore: shipments: %w", err)
	}
	holds := map[string]string{}
	before := map[string]oms.ShipmentStatus{}
	for rows.Next() {
		var sid, hold, st string
		if err := rows.Scan(&sid, &hold, &st); err != nil {
			rows.Close()
			return nil, err
		}
		holds[sid] = hold
		before[sid] = oms.ShipmentStatus(st)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range o.Shipments {
		o.Shipments[i].HoldID = holds[o.Shipments[i].ID]
	}
	version := o.Version
	untilBefore := o.ReservedUntil
	evs, err := fn(&o)
	if err != nil {
		return nil, err
	}
	if o.Version == version {
		o.Version++
	}
	// A payment clears the deadline: the shipments' copy (the ledger the
	// stock engine is rebuilt from) must follow even when their status
	// does not change (an on-hold order paid).
	untilChanged := !sameTime(untilBefore, o.ReservedUntil)
	o.UpdatedAt = s.Now().UTC()
	newDoc, err := json.Marshal(&o)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE orders SET doc = $2, status = $3, payment_status = $4, reserved_until = $5, version = $6, updated_at = $7 WHERE id = $1`,
		id, newDoc, o.Status, o.PaymentStatus, o.ReservedUntil, o.Version, o.UpdatedAt); err != nil {
		return nil, fmt.Errorf("pgstore: update order: %w", err)
	}
	b := &pgx.Batch{}
	for _, sh := range o.Shipments {
		if old, ok := before[sh.ID]; !ok {
			// A shipment added by the transition (re-sourcing).
			var until any
			if o.ReservedUntil != nil {
				until = *o.ReservedUntil
			}
			b.Queue(`INSERT INTO shipments (id, order_id, node_id, status, hold_id, reserved_until, tracking_number, created_at, updated_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`, sh.ID, id, sh.NodeID, sh.Status, sh.HoldID, until, sh.TrackingNumber, o.UpdatedAt)
			for _, l := range sh.Lines {
				b.Queue(`INSERT INTO shipment_lines (shipment_id, sku, qty) VALUES ($1, $2, $3)`, sh.ID, l.SKU, l.Qty)
			}
		} else if old != sh.Status || sh.TrackingNumber != "" || untilChanged {
			b.Queue(`UPDATE shipments SET status = $2, tracking_number = $3, reserved_until = $4, updated_at = $5 WHERE id = $1`,
				sh.ID, sh.Status, sh.TrackingNumber, o.ReservedUntil, o.UpdatedAt)
		}
	}
	for _, e := range evs {
		b.Queue(`INSERT INTO outbox (id, topic, msg_key, seq, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`,
			e.ID, e.Topic, e.Key, e.Seq, e.Payload, e.At)
	}
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return nil, fmt.Errorf("pgstore: write transition: %w", err)
		}
	}
	return &o, nil
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}
