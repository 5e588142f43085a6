package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/omsd/omsd/oms"
)

// ReturnTx runs one after-sales move (oms.ReturnStore): in one transaction
// it records the event id when there is one (a duplicate returns applied
// false and calls nothing), locks the order row (q.OrderID, or the order of
// q.ReturnID), reads the order's returns, runs fn, and writes what fn
// changed: the return row, the Idempotency-Key, the order's document,
// status and version, the outbox events, and the receipt's stock (sellable
// units into stock.on_hand with a 'return' ledger row whose ref is the
// restock id, damaged units into stock.damaged with a 'damaged' row). fn
// may run more than once (serialization retries). An fn error aborts the
// transaction and is returned as is.
func (s *Store) ReturnTx(ctx context.Context, q oms.ReturnQuery, fn func(o *oms.Order, rets []*oms.Return) (oms.ReturnChange, error)) (oms.ReturnChange, bool, error) {
	var (
		out     oms.ReturnChange
		applied bool
	)
	err := s.Tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		out, applied = oms.ReturnChange{}, false
		now := s.Now().UTC()
		if q.EventID != "" {
			tag, err := tx.Exec(ctx, `INSERT INTO processed_events (event_id, processed_at) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING`, q.EventID, now)
			if err != nil {
				return fmt.Errorf("pgstore: record event: %w", err)
			}
			if tag.RowsAffected() == 0 {
				return nil
			}
		}
		orderID := q.OrderID
		if orderID == "" {
			err := tx.QueryRow(ctx, `SELECT order_id::text FROM returns WHERE id = $1`, q.ReturnID).Scan(&orderID)
			if errors.Is(err, pgx.ErrNoRows) {
				return oms.ErrNotFound
			}
			if err != nil {
				return fmt.Errorf("pgstore: return's order: %w", err)
			}
		}
		var doc []byte
		err := tx.QueryRow(ctx, `SELECT doc FROM orders WHERE id = $1 FOR UPDATE`, orderID).Scan(&doc)
		if errors.Is(err, pgx.ErrNoRows) {
			return oms.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("pgstore: lock order: %w", err)
		}
		var o oms.Order
		if err := json.Unmarshal(doc, &o); err != nil {
			return fmt.Errorf("pgstore: decode order: %w", err)
		}
		rets, err := readReturns(ctx, tx, orderID)
		if err != nil {
			return err
		}
		ch, err := fn(&o, rets)
		if err != nil {
			return err
		}
		if ch.Order == nil {
			out = ch // nothing to write (a repeat)
			return nil
		}
		if err := s.writeReturnChange(ctx, tx, q, ch); err != nil {
			return err
		}
		out, applied = ch, true
		return nil
	})
	if err != nil {
		return oms.ReturnChange{}, false, err
	}
	return out, applied, nil
}

func (s *Store) writeReturnChange(ctx context.Context, tx pgx.Tx, q oms.ReturnQuery, ch oms.ReturnChange) error {
	r, o := ch.Return, ch.Order
	rdoc, err := json.Marshal(r)
	if err != nil {
		return err
	}
	odoc, err := json.Marshal(o)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	if ch.Created {
		b.Queue(`INSERT INTO returns (id, order_id, external_id, channel_id, status, request_hash, doc, version, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)`, r.ID, r.OrderID, r.ExternalID, r.Channel, r.Status, r.RequestHash, rdoc, r.Version, r.CreatedAt)
	} else {
		b.Queue(`UPDATE returns SET status = $2, doc = $3, version = $4, updated_at = $5 WHERE id = $1`, r.ID, r.Status, rdoc, r.Version, r.UpdatedAt)
	}
	b.Queue(`UPDATE orders SET doc = $2, status = $3, version = $4, updated_at = $5 WHERE id = $1`, o.ID, odoc, o.Status, o.Version, o.UpdatedAt)
	for _, e := range ch.Events {
		b.Queue(`INSERT INTO outbox (id, topic, msg_key, seq, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`,
			e.ID, e.Topic, e.Key, e.Seq, e.Payload, e.At)
	}
	for _, rs := range ch.Restocks {
		// The ledger row records on hand after the movement (unchanged
		// for damaged units, which are counted apart).
		onHand, damaged, kind := rs.Qty, int64(0), "return"
		if rs.Damaged {
			onHand, damaged, kind = 0, rs.Qty, "damaged"
		}
		b.Queue(`WITH up AS (
				INSERT INTO stock (node_id, sku, on_hand, safety_stock, damaged, updated_at)
				VALUES ($1, $2, $3, 0, $4, $5)
				ON CONFLICT (node_id, sku) DO UPDATE SET on_hand = stock.on_hand + $3, damaged = stock.damaged + $4, updated_at = $5
				RETURNING on_hand)
			INSERT INTO stock_ledger (id, node_id, sku, kind, qty, on_hand_after, ref, at)
			SELECT $6, $1, $2, $7, $8, on_hand, $9, $5 FROM up`,
			rs.Node, rs.SKU, onHand, damaged, r.UpdatedAt, rs.ID, kind, rs.Qty, rs.ID)
	}
	queueRefundTotals(b, o, ch.RefundedNow)
	if q.IdempotencyKey != "" && ch.Created {
		b.Queue(`INSERT INTO return_idempotency_keys (channel_id, key, return_id, request_hash) VALUES ($1, $2, $3, $4)`,
			q.Channel, q.IdempotencyKey, r.ID, r.RequestHash)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("pgstore: write return: %w", err)
	}
	return nil
}

func readReturns(ctx context.Context, q querier, orderID string) ([]*oms.Return, error) {
	rows, err := q.Query(ctx, `SELECT doc, request_hash FROM returns WHERE order_id = $1 ORDER BY created_at, id`, orderID)
	if err != nil {
		return nil, fmt.Errorf("pgstore: returns: %w", err)
	}
	defer rows.Close()
	var out []*oms.Return
	for rows.Next() {
		var doc, hash []byte
		if err := rows.Scan(&doc, &hash); err != nil {
			return nil, err
		}
		var r oms.Return
		if err := json.Unmarshal(doc, &r); err != nil {
			return nil, fmt.Errorf("pgstore: decode return: %w", err)
		}
		r.RequestHash = hash
		out = append(out, &r)
	}
	return out, rows.Err()
}

// GetReturn reads one return; oms.ErrNotFound.
func (s *Store) GetReturn(ctx context.Context, id string) (*oms.Return, error) {
	var doc, hash []byte
	err := s.pool.QueryRow(ctx, `SELECT doc, request_hash FROM returns WHERE id = $1`, id).Scan(&doc, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, oms.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: get return: %w", err)
	}
	var r oms.Return
	if err := json.Unmarshal(doc, &r); err != nil {
		return nil, fmt.Errorf("pgstore: decode return: %w", err)
	}
	r.RequestHash = hash
	return &r, nil
}

// OrderReturns lists the returns of an order, oldest first.
func (s *Store) OrderReturns(ctx context.Context, orderID string) ([]*oms.Return, error) {
	return readReturns(ctx, s.pool, orderID)
}

// ReturnIdempotencyKey finds the return an Idempotency-Key names for a
// channel; oms.ErrNotFound.
func (s *Store) ReturnIdempotencyKey(ctx context.Context, channel, key string) (string, []byte, error) {
	var id string
	var hash []byte
	err := s.pool.QueryRow(ctx, `SELECT return_id::text, request_hash FROM return_idempotency_keys WHERE channel_id = $1 AND key = $2`,
		channel, key).Scan(&id, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, oms.ErrNotFound
	}
	if err != nil {
		return "", nil, fmt.Errorf("pgstore: return idempotency key: %w", err)
	}
	return id, hash, nil
}

// Damaged returns the damaged units of sku per node (nodes with none are
// left out).
func (s *Store) Damaged(ctx context.Context, sku string) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT node_id, damaged FROM stock WHERE sku = $1 AND damaged > 0`, sku)
	if err != nil {
		return nil, fmt.Errorf("pgstore: damaged: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var node string
		var n int64
		if err := rows.Scan(&node, &n); err != nil {
			return nil, err
		}
		out[node] = n
	}
	return out, rows.Err()
}
