package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/omsd/omsd/oms"
)

// ledgerNamespace derives the ids of stock_ledger rows written by
// shipments, so that one shipment line can never be booked twice.
var ledgerNamespace = uuid.MustParse("9a3f6c1e-57b2-4d08-8e61-2c4b7d9f0a15")

// ApplyEvent applies an external event (a warehouse event) to an order
// exactly once. In one transaction it records eventID in processed_events
// and, if the id is new, runs fn as TransitionOrder does (row lock, write
// back, outbox events). Every shipment that fn moves to shipped lowers
// stock.on_hand by its lines and writes a 'ship' row to stock_ledger in the
// same transaction, so the SQL ledger never counts a shipped hold as open
// and never misses its stock movement.
//
// applied is false when eventID was processed before: fn is not called and
// the current order is returned. When fn returns an error that wraps
// oms.ErrEventIgnored, the event is recorded as processed (a redelivery is
// a duplicate) but nothing else is written, and the current order is
// returned together with that error. Any other error from fn aborts the
// transaction and is returned as is. fn may run more than once
// (serialization retries).
func (s *Store) ApplyEvent(ctx context.Context, eventID, orderID string, fn func(o *oms.Order) ([]oms.OutboxEvent, error)) (*oms.Order, bool, error) {
	var (
		out     *oms.Order
		applied bool
		ignored error
	)
	err := s.Tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		out, applied, ignored = nil, false, nil
		now := s.Now().UTC()
		tag, err := tx.Exec(ctx, `INSERT INTO processed_events (event_id, processed_at) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING`, eventID, now)
		if err != nil {
			return fmt.Errorf("pgstore: record event: %w", err)
		}
		if tag.RowsAffected() == 0 {
			o, err := readOrderTx(ctx, tx, orderID)
			out = o
			return err
		}
		var shipped []oms.Shipment
		o, err := s.transitionTx(ctx, tx, orderID, func(o *oms.Order) ([]oms.OutboxEvent, error) {
			shipped = nil
			was := make(map[string]oms.ShipmentStatus, len(o.Shipments))
			for _, sh := range o.Shipments {
				was[sh.ID] = sh.Status
			}
			evs, err := fn(o)
			if err != nil {
				return nil, err
			}
			for _, sh := range o.Shipments {
				if sh.Status == oms.ShipmentShipped && was[sh.ID] != oms.ShipmentShipped {
					shipped = append(shipped, sh)
				}
			}
			return evs, nil
		})
		if err != nil {
			if errors.Is(err, oms.ErrEventIgnored) {
				// Keep the processed mark (commit), change nothing else.
				ignored = err
				o, rerr := readOrderTx(ctx, tx, orderID)
				out = o
				return rerr
			}
			return err
		}
		if err := shipLedger(ctx, tx, shipped, now); err != nil {
			return err
		}
		out, applied = o, true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return out, applied, ignored
}

// shipLedger books shipped lines: stock.on_hand drops by each line (never
// below zero: a snapshot may have lowered on hand below what was reserved;
// the ledger row still records the full quantity) with a 'ship' row each.
func shipLedger(ctx context.Context, tx pgx.Tx, shipped []oms.Shipment, now time.Time) error {
	if len(shipped) == 0 {
		return nil
	}
	for _, sh := range shipped {
		for _, l := range sh.Lines {
			var after int64
			err := tx.QueryRow(ctx, `UPDATE stock SET on_hand = GREATEST(on_hand - $3, 0), updated_at = $4
				WHERE node_id = $1 AND sku = $2 RETURNING on_hand`, sh.NodeID, l.SKU, l.Qty, now).Scan(&after)
			if errors.Is(err, pgx.ErrNoRows) {
				// No snapshot was ever recorded for this (node, SKU): book the
				// movement against zero so the audit trail is complete.
				if _, err := tx.Exec(ctx, `INSERT INTO stock (node_id, sku, on_hand, safety_stock, updated_at) VALUES ($1, $2, 0, 0, $3)
					ON CONFLICT (node_id, sku) DO NOTHING`, sh.NodeID, l.SKU, now); err != nil {
					return fmt.Errorf("pgstore: ship ledger: %w", err)
				}
				after = 0
			} else if err != nil {
				return fmt.Errorf("pgstore: ship ledger: %w", err)
			}
			id := uuid.NewSHA1(ledgerNamespace, []byte(sh.ID+"\x00"+l.SKU))
			if _, err := tx.Exec(ctx, `INSERT INTO stock_ledger (id, node_id, sku, kind, qty, on_hand_after, ref, at)
				VALUES ($1, $2, $3, 'ship', $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
				id, sh.NodeID, l.SKU, -l.Qty, after, sh.ID, now); err != nil {
				return fmt.Errorf("pgstore: ship ledger: %w", err)
			}
		}
	}
	return nil
}

func readOrderTx(ctx context.Context, tx pgx.Tx, id string) (*oms.Order, error) {
	var doc []byte
	err := tx.QueryRow(ctx, `SELECT doc FROM orders WHERE id = $1`, id).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, oms.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: read order: %w", err)
	}
	var o oms.Order
	if err := json.Unmarshal(doc, &o); err != nil {
		return nil, fmt.Errorf("pgstore: decode order: %w", err)
	}
	return &o, nil
}

// ShipmentOrder returns the id of the order a shipment belongs to;
// oms.ErrNotFound when no such shipment exists. shipmentID must be a UUID.
func (s *Store) ShipmentOrder(ctx context.Context, shipmentID string) (string, error) {
	if _, err := uuid.Parse(shipmentID); err != nil {
		return "", oms.ErrNotFound
	}
	var id string
	err := s.pool.QueryRow(ctx, `SELECT order_id::text FROM shipments WHERE id = $1`, shipmentID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", oms.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("pgstore: shipment order: %w", err)
	}
	return id, nil
}

// DueForExpiry returns up to limit unpaid orders (pending payment or on
// hold) whose payment deadline is at or before now, earliest first.
// Several instances may get the same ids: the expiry itself re-checks the
// status under the order's row lock, so each order expires once.
func (s *Store) DueForExpiry(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id::text FROM orders
		WHERE payment_status = 'pending' AND status IN ('pending_payment', 'on_hold') AND reserved_until <= $1
		ORDER BY reserved_until LIMIT $2`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: due for expiry: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("pgstore: due for expiry: %w", err)
	}
	return ids, nil
}
