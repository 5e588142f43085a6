package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/omsd/omsd/oms"
)

// rowsSQL builds "INSERT INTO table (cols) VALUES ($1,..),(..) suffix"
// for a multi-row insert, a form PostgreSQL and CockroachDB both accept.
func rowsSQL(table string, cols []string, rows [][]any, suffix string) (string, []any) {
	var b strings.Builder
	args := make([]any, 0, len(rows)*len(cols))
	b.WriteString("INSERT INTO ")
	b.WriteString(table)
	b.WriteString(" (")
	b.WriteString(strings.Join(cols, ", "))
	b.WriteString(") VALUES ")
	n := 1
	for i, r := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for j := range r {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			n++
		}
		b.WriteByte(')')
		args = append(args, r...)
	}
	if suffix != "" {
		b.WriteByte(' ')
		b.WriteString(suffix)
	}
	return b.String(), args
}

// CommitOrders writes a batch of new orders in one transaction (see
// oms.BatchStore). Within the batch, copies of one order id or of one
// Idempotency-Key are resolved in favour of the first.
func (s *Store) CommitOrders(ctx context.Context, batch []*oms.NewOrder) error {
	docs := make([][]byte, len(batch))
	for i, no := range batch {
		d, err := json.Marshal(no.Order)
		if err != nil {
			return fmt.Errorf("pgstore: encode order: %w", err)
		}
		docs[i] = d
	}
	// READ COMMITTED is enough here: the batch only inserts, and every
	// race between copies is settled by primary keys (ON CONFLICT DO
	// NOTHING), which PostgreSQL checks at every isolation level; it spares
	// the SERIALIZABLE predicate locks on the hot path. CockroachDB runs it
	// as SERIALIZABLE anyway.
	return s.TxWith(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(ctx context.Context, tx pgx.Tx) error {
		for _, no := range batch {
			no.Outcome, no.ExistingID = 0, ""
		}
		// Copies inside the batch: the first wins.
		seenID := map[string]bool{}
		seenKey := map[string]string{}
		live := make([]int, 0, len(batch))
		for i, no := range batch {
			if seenID[no.Order.ID] {
				no.Outcome = oms.OutcomeDuplicate
				continue
			}
			if no.IdemKey != "" {
				k := no.Order.Channel + "\x00" + no.IdemKey
				if other, ok := seenKey[k]; ok && other != no.Order.ID {
					no.Outcome, no.ExistingID = oms.OutcomeIdemTaken, other
					continue
				}
				seenKey[k] = no.Order.ID
			}
			seenID[no.Order.ID] = true
			live = append(live, i)
		}

		// Idempotency keys: a key already pointing at another order keeps
		// that order out of the batch.
		var keyRows [][]any
		for _, i := range live {
			no := batch[i]
			if no.IdemKey != "" {
				keyRows = append(keyRows, []any{no.Order.Channel, no.IdemKey, no.Order.ID, no.RequestHash, no.Order.CreatedAt})
			}
		}
		if len(keyRows) > 0 {
			q, args := rowsSQL("idempotency_keys", []string{"channel_id", "key", "order_id", "request_hash", "created_at"}, keyRows,
				"ON CONFLICT (channel_id, key) DO NOTHING")
			if _, err := tx.Exec(ctx, q, args...); err != nil {
				return fmt.Errorf("pgstore: insert idempotency keys: %w", err)
			}
			// Read back every key of the batch: those owned by another
			// order are conflicts.
			var chans, keys []string
			for _, r := range keyRows {
				chans = append(chans, r[0].(string))
				keys = append(keys, r[1].(string))
			}
			rows, err := tx.Query(ctx, `SELECT k.channel_id, k.key, k.order_id::text FROM idempotency_keys k
				JOIN (SELECT unnest($1::text[]) AS c, unnest($2::text[]) AS k) q ON k.channel_id = q.c AND k.key = q.k`, chans, keys)
			if err != nil {
				return fmt.Errorf("pgstore: read idempotency keys: %w", err)
			}
			owner := map[string]string{}
			for rows.Next() {
				var c, k, id string
				if err := rows.Scan(&c, &k, &id); err != nil {
					rows.Close()
					return err
				}
				owner[c+"\x00"+k] = id
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			kept := live[:0]
			for _, i := range live {
				no := batch[i]
				if no.IdemKey != "" {
					if id := owner[no.Order.Channel+"\x00"+no.IdemKey]; id != no.Order.ID {
						no.Outcome, no.ExistingID = oms.OutcomeIdemTaken, id
						continue
					}
				}
				kept = append(kept, i)
			}
			live = kept
		}
		if len(live) == 0 {
			return nil
		}

		orderRows := make([][]any, 0, len(live))
		for _, i := range live {
			o := batch[i].Order
			orderRows = append(orderRows, []any{o.ID, o.Channel, o.ExternalID, o.Status, o.PaymentStatus, o.ReservedUntil,
				batch[i].RequestHash, docs[i], o.Version, o.CreatedAt, o.UpdatedAt})
		}
		q, args := rowsSQL("orders", []string{"id", "channel_id", "external_id", "status", "payment_status", "reserved_until",
			"request_hash", "doc", "version", "created_at", "updated_at"}, orderRows, "ON CONFLICT DO NOTHING RETURNING id::text")
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("pgstore: insert orders: %w", err)
		}
		inserted := map[string]bool{}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			inserted[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("pgstore: insert orders: %w", err)
		}

		var lineRows, shipRows, shipLineRows, outRows [][]any
		for _, i := range live {
			no := batch[i]
			o := no.Order
			if !inserted[o.ID] {
				no.Outcome = oms.OutcomeDuplicate
				continue
			}
			no.Outcome = oms.OutcomeInserted
			for n, l := range o.Lines {
				lineRows = append(lineRows, []any{o.ID, n, l.SKU, l.Qty, l.UnitPrice})
			}
			for _, sh := range o.Shipments {
				var until any
				if o.ReservedUntil != nil {
					until = *o.ReservedUntil
				}
				shipRows = append(shipRows, []any{sh.ID, o.ID, sh.NodeID, sh.Status, sh.HoldID, until, o.CreatedAt, o.CreatedAt})
				for _, l := range sh.Lines {
					shipLineRows = append(shipLineRows, []any{sh.ID, l.SKU, l.Qty})
				}
			}
			for _, e := range no.Events {
				outRows = append(outRows, []any{e.ID, e.Topic, e.Key, e.Seq, e.Payload, e.At})
			}
		}
		b := &pgx.Batch{}
		queue := func(table string, cols []string, rows [][]any) {
			// Keep each statement under PostgreSQL's 65535 parameters.
			per := 60000 / len(cols)
			for len(rows) > 0 {
				n := min(per, len(rows))
				q, args := rowsSQL(table, cols, rows[:n], "")
				b.Queue(q, args...)
				rows = rows[n:]
			}
		}
		queue("order_lines", []string{"order_id", "line_no", "sku", "qty", "unit_price"}, lineRows)
		queue("shipments", []string{"id", "order_id", "node_id", "status", "hold_id", "reserved_until", "created_at", "updated_at"}, shipRows)
		queue("shipment_lines", []string{"shipment_id", "sku", "qty"}, shipLineRows)
		queue("outbox", []string{"id", "topic", "msg_key", "seq", "payload", "created_at"}, outRows)
		if b.Len() == 0 {
			return nil
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("pgstore: insert order rows: %w", err)
		}
		return nil
	})
}

// OrdersExist maps each stored order id of ids to its shipments' hold ids.
func (s *Store) OrdersExist(ctx context.Context, ids []string) (map[string][]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT o.id::text, coalesce(s.hold_id, '') FROM orders o
		LEFT JOIN shipments s ON s.order_id = o.id WHERE o.id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("pgstore: orders exist: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var id, hold string
		if err := rows.Scan(&id, &hold); err != nil {
			return nil, err
		}
		if hold != "" {
			out[id] = append(out[id], hold)
		} else if _, ok := out[id]; !ok {
			out[id] = []string{}
		}
	}
	return out, rows.Err()
}

// GetOrder returns an order and the hash of the request that created it.
func (s *Store) GetOrder(ctx context.Context, id string) (*oms.Order, []byte, error) {
	var doc, hash []byte
	err := s.pool.QueryRow(ctx, `SELECT doc, request_hash FROM orders WHERE id = $1`, id).Scan(&doc, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, oms.ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("pgstore: get order: %w", err)
	}
	var o oms.Order
	if err := json.Unmarshal(doc, &o); err != nil {
		return nil, nil, fmt.Errorf("pgstore: decode order: %w", err)
	}
	return &o, hash, nil
}

// IdemOrder returns the order id an Idempotency-Key points to.
func (s *Store) IdemOrder(ctx context.Context, channel, key string) (string, error) {
	var id string
	err := s.pool.QueryRow(ctx, `SELECT order_id::text FROM idempotency_keys WHERE channel_id = $1 AND key = $2`, channel, key).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("pgstore: idempotency key: %w", err)
	}
	return id, nil
}
