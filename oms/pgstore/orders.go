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

// CommitOrders writes a batch of new orders in one transaction (see
// oms.BatchStore). Within the batch, copies of one order id or of one
// Idempotency-Key are resolved in favour of the first.
func (s *Store) CommitOrders(ctx context.Context, batch []*oms.NewOrder) error {
	docs := make([][]byte, len(batch))
	for i, no := range batch {
		if no.Doc != nil {
			docs[i] = no.Doc
			continue
		}
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
			// Keys inserted now come back; a key that is not returned
			// already existed and is looked up (rare: a retry or a misuse).
			var kChan, kKey, kOrder []string
			var kHash [][]byte
			var kAt []time.Time
			for _, r := range keyRows {
				kChan, kKey, kOrder = append(kChan, r[0].(string)), append(kKey, r[1].(string)), append(kOrder, r[2].(string))
				kHash, kAt = append(kHash, r[3].([]byte)), append(kAt, r[4].(time.Time))
			}
			rows, err := tx.Query(ctx, `INSERT INTO idempotency_keys (channel_id, key, order_id, request_hash, created_at)
				SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::bytea[], $5::timestamptz[])
				ON CONFLICT (channel_id, key) DO NOTHING RETURNING channel_id, key`, kChan, kKey, kOrder, kHash, kAt)
			if err != nil {
				return fmt.Errorf("pgstore: insert idempotency keys: %w", err)
			}
			fresh := map[string]bool{}
			for rows.Next() {
				var c, k string
				if err := rows.Scan(&c, &k); err != nil {
					rows.Close()
					return err
				}
				fresh[c+"\x00"+k] = true
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("pgstore: insert idempotency keys: %w", err)
			}
			owner := map[string]string{}
			for i := range kChan {
				ck := kChan[i] + "\x00" + kKey[i]
				if fresh[ck] {
					owner[ck] = kOrder[i]
					continue
				}
				var id string
				if err := tx.QueryRow(ctx, `SELECT order_id::text FROM idempotency_keys WHERE channel_id = $1 AND key = $2`,
					kChan[i], kKey[i]).Scan(&id); err != nil {
					return fmt.Errorf("pgstore: read idempotency key: %w", err)
				}
				owner[ck] = id
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

		// Fixed-shape statements over arrays (unnest): one prepared
		// statement serves every batch size, where a multi-row VALUES list
		// would be a new statement (parse, plan, cache entry) per size.
		var (
			oID, oChan, oExt, oStatus, oPay, oDoc []string
			oUntil                                []*time.Time
			oHash                                 [][]byte
			oVer                                  []int32
			oCreated, oUpdated                    []time.Time
		)
		for _, i := range live {
			o := batch[i].Order
			oID = append(oID, o.ID)
			oChan = append(oChan, o.Channel)
			oExt = append(oExt, o.ExternalID)
			oStatus = append(oStatus, string(o.Status))
			oPay = append(oPay, o.PaymentStatus)
			oUntil = append(oUntil, o.ReservedUntil)
			oHash = append(oHash, batch[i].RequestHash)
			oDoc = append(oDoc, string(docs[i]))
			oVer = append(oVer, int32(o.Version))
			oCreated = append(oCreated, o.CreatedAt)
			oUpdated = append(oUpdated, o.UpdatedAt)
		}
		rows, err := tx.Query(ctx, `INSERT INTO orders (id, channel_id, external_id, status, payment_status, reserved_until,
				request_hash, doc, version, created_at, updated_at)
			SELECT u.id, u.ch, u.ext, u.st, u.pay, u.until, u.hash, u.doc::jsonb, u.ver, u.created, u.updated
			FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::bytea[],
				$8::text[], $9::int[], $10::timestamptz[], $11::timestamptz[])
				AS u(id, ch, ext, st, pay, until, hash, doc, ver, created, updated)
			ON CONFLICT DO NOTHING RETURNING id::text`,
			oID, oChan, oExt, oStatus, oPay, oUntil, oHash, oDoc, oVer, oCreated, oUpdated)
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

		var (
			lOrder, lSKU                       []string
			lNo                                []int32
			lQty, lPrice                       []int64
			sID, sOrder, sNode, sStatus, sHold []string
			sUntil                             []*time.Time
			sCreated                           []time.Time
			slShip, slSKU                      []string
			slQty                              []int64
			eID, eTopic, eKey, ePayload        []string
			eSeq                               []int64
			eAt                                []time.Time
		)
		for _, i := range live {
			no := batch[i]
			o := no.Order
			if !inserted[o.ID] {
				no.Outcome = oms.OutcomeDuplicate
				continue
			}
			no.Outcome = oms.OutcomeInserted
			for n, l := range o.Lines {
				lOrder, lNo, lSKU, lQty, lPrice = append(lOrder, o.ID), append(lNo, int32(n)), append(lSKU, l.SKU), append(lQty, l.Qty), append(lPrice, l.UnitPrice)
			}
			for _, sh := range o.Shipments {
				sID, sOrder, sNode, sStatus, sHold = append(sID, sh.ID), append(sOrder, o.ID), append(sNode, sh.NodeID), append(sStatus, string(sh.Status)), append(sHold, sh.HoldID)
				sUntil, sCreated = append(sUntil, o.ReservedUntil), append(sCreated, o.CreatedAt)
				for _, l := range sh.Lines {
					slShip, slSKU, slQty = append(slShip, sh.ID), append(slSKU, l.SKU), append(slQty, l.Qty)
				}
			}
			for _, e := range no.Events {
				eID, eTopic, eKey, eSeq, ePayload, eAt = append(eID, e.ID), append(eTopic, e.Topic), append(eKey, e.Key), append(eSeq, e.Seq), append(ePayload, string(e.Payload)), append(eAt, e.At)
			}
		}
		b := &pgx.Batch{}
		if len(lOrder) > 0 {
			b.Queue(`INSERT INTO order_lines (order_id, line_no, sku, qty, unit_price)
				SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::bigint[], $5::bigint[])`, lOrder, lNo, lSKU, lQty, lPrice)
		}
		if len(sID) > 0 {
			b.Queue(`INSERT INTO shipments (id, order_id, node_id, status, hold_id, reserved_until, created_at, updated_at)
				SELECT u.id, u.o, u.n, u.s, u.h, u.until, u.c, u.c
				FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[])
					AS u(id, o, n, s, h, until, c)`, sID, sOrder, sNode, sStatus, sHold, sUntil, sCreated)
		}
		if len(slShip) > 0 {
			b.Queue(`INSERT INTO shipment_lines (shipment_id, sku, qty)
				SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[])`, slShip, slSKU, slQty)
		}
		if len(eID) > 0 {
			b.Queue(`INSERT INTO outbox (id, topic, msg_key, seq, payload, created_at)
				SELECT u.id, u.t, u.k, u.s, u.p::jsonb, u.a
				FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[]) AS u(id, t, k, s, p, a)`,
				eID, eTopic, eKey, eSeq, ePayload, eAt)
		}
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
