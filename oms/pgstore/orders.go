package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/omsd/omsd/oms"
)

// CommitOrders writes a batch of new orders in one transaction (see
// oms.OrderStore). Within the batch, copies of one order id or of one
// Idempotency-Key are resolved in favour of the first. A value the
// database refuses (SQLSTATE classes 22 and 23) comes back wrapping
// oms.ErrOrderData, so that the committer can retry the rest without it.
func (s *Store) CommitOrders(ctx context.Context, batch []*oms.NewOrder) error {
	docs := make([][]byte, len(batch))
	for i, no := range batch {
		docs[i] = no.Doc
		if docs[i] == nil {
			d, err := json.Marshal(no.Order)
			if err != nil {
				return fmt.Errorf("pgstore: encode order: %w", err)
			}
			docs[i] = d
		}
	}
	// READ COMMITTED is enough here: the batch only inserts, and every
	// race between copies is settled by primary keys (ON CONFLICT DO
	// NOTHING), which PostgreSQL checks at every isolation level; it spares
	// the SERIALIZABLE predicate locks on the hot path. CockroachDB runs it
	// as SERIALIZABLE anyway.
	err := s.TxWith(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(ctx context.Context, tx pgx.Tx) error {
		live := firstCopies(batch)
		live, err := claimIdemKeys(ctx, tx, batch, live)
		if err != nil || len(live) == 0 {
			return err
		}
		inserted, err := insertOrders(ctx, tx, batch, docs, live)
		if err != nil {
			return err
		}
		var rows childRows
		for _, i := range live {
			no := batch[i]
			if !inserted[no.Order.ID] {
				no.Outcome = oms.OutcomeDuplicate
				continue
			}
			no.Outcome = oms.OutcomeInserted
			rows.add(no)
		}
		return rows.insert(ctx, tx)
	})
	if isDataError(err) {
		return fmt.Errorf("%w: %w", oms.ErrOrderData, err)
	}
	return err
}

// isDataError reports a refusal caused by a value (SQLSTATE class 22, data
// exception, or 23, integrity constraint), not by the database.
func isDataError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23"))
}

// firstCopies resets every outcome and returns the indexes of the orders
// that are the first of their id and of their Idempotency-Key in the
// batch; the later copies get their outcome at once.
func firstCopies(batch []*oms.NewOrder) []int {
	seenID := map[string]bool{}
	seenKey := map[string]string{}
	live := make([]int, 0, len(batch))
	for i, no := range batch {
		no.Outcome, no.ExistingID = 0, ""
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
	return live
}

// claimIdemKeys inserts the Idempotency-Keys of the live orders; an order
// whose key already points at another order leaves the batch (its
// outcome OutcomeIdemTaken). Keys inserted now come back from RETURNING; a
// key that does not already existed and is looked up (rare: a retry or a
// misuse).
func claimIdemKeys(ctx context.Context, tx pgx.Tx, batch []*oms.NewOrder, live []int) ([]int, error) {
	var ch, key, order []string
	var hash [][]byte
	var at []time.Time
	for _, i := range live {
		if no := batch[i]; no.IdemKey != "" {
			ch, key, order = append(ch, no.Order.Channel), append(key, no.IdemKey), append(order, no.Order.ID)
			hash, at = append(hash, no.RequestHash), append(at, no.Order.CreatedAt)
		}
	}
	if len(ch) == 0 {
		return live, nil
	}
	rows, err := tx.Query(ctx, `INSERT INTO idempotency_keys (channel_id, key, order_id, request_hash, created_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::bytea[], $5::timestamptz[])
		ON CONFLICT (channel_id, key) DO NOTHING RETURNING channel_id, key`, ch, key, order, hash, at)
	if err != nil {
		return nil, fmt.Errorf("pgstore: insert idempotency keys: %w", err)
	}
	fresh, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var c, k string
		err := r.Scan(&c, &k)
		return c + "\x00" + k, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: insert idempotency keys: %w", err)
	}
	owner := make(map[string]string, len(ch))
	for i := range ch {
		owner[ch[i]+"\x00"+key[i]] = order[i]
	}
	for i := range ch {
		ck := ch[i] + "\x00" + key[i]
		if slices.Contains(fresh, ck) {
			continue
		}
		var id string
		if err := tx.QueryRow(ctx, `SELECT order_id::text FROM idempotency_keys WHERE channel_id = $1 AND key = $2`,
			ch[i], key[i]).Scan(&id); err != nil {
			return nil, fmt.Errorf("pgstore: read idempotency key: %w", err)
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
	return kept, nil
}

// insertOrders inserts the order rows of the live orders through one
// fixed-shape statement over arrays (unnest): one prepared statement
// serves every batch size, where a multi-row VALUES list would be a new
// statement per size. It returns the ids that were new.
func insertOrders(ctx context.Context, tx pgx.Tx, batch []*oms.NewOrder, docs [][]byte, live []int) (map[string]bool, error) {
	var (
		id, ch, ext, status, pay, doc []string
		until                         []*time.Time
		hash                          [][]byte
		ver                           []int32
		created, updated              []time.Time
		cust                          []*string
	)
	for _, i := range live {
		o := batch[i].Order
		id, ch, ext = append(id, o.ID), append(ch, o.Channel), append(ext, o.ExternalID)
		status, pay, until = append(status, string(o.Status)), append(pay, o.PaymentStatus), append(until, o.ReservedUntil)
		hash, doc, ver = append(hash, batch[i].RequestHash), append(doc, string(docs[i])), append(ver, int32(o.Version))
		created, updated = append(created, o.CreatedAt), append(updated, o.UpdatedAt)
		var c *string
		if m := batch[i].Customer; m != nil {
			c = &m.ID
		}
		cust = append(cust, c)
	}
	rows, err := tx.Query(ctx, `INSERT INTO orders (id, channel_id, external_id, status, payment_status, reserved_until,
			request_hash, doc, version, created_at, updated_at, customer_id)
		SELECT u.id, u.ch, u.ext, u.st, u.pay, u.until, u.hash, u.doc::jsonb, u.ver, u.created, u.updated, u.cust
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::bytea[],
			$8::text[], $9::int[], $10::timestamptz[], $11::timestamptz[], $12::uuid[])
			AS u(id, ch, ext, st, pay, until, hash, doc, ver, created, updated, cust)
		ON CONFLICT DO NOTHING RETURNING id::text`,
		id, ch, ext, status, pay, until, hash, doc, ver, created, updated, cust)
	if err != nil {
		return nil, fmt.Errorf("pgstore: insert orders: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("pgstore: insert orders: %w", err)
	}
	inserted := make(map[string]bool, len(ids))
	for _, id := range ids {
		inserted[id] = true
	}
	return inserted, nil
}

// childRows are the rows that come with new orders, column by column.
type childRows struct {
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
	cust                               customerRows
}

func (c *childRows) add(no *oms.NewOrder) {
	o := no.Order
	for n, l := range o.Lines {
		c.lOrder, c.lNo, c.lSKU = append(c.lOrder, o.ID), append(c.lNo, int32(n)), append(c.lSKU, l.SKU)
		c.lQty, c.lPrice = append(c.lQty, l.Qty), append(c.lPrice, l.UnitPrice)
	}
	for _, sh := range o.Shipments {
		c.sID, c.sOrder, c.sNode = append(c.sID, sh.ID), append(c.sOrder, o.ID), append(c.sNode, sh.NodeID)
		c.sStatus, c.sHold = append(c.sStatus, string(sh.Status)), append(c.sHold, sh.HoldID)
		c.sUntil, c.sCreated = append(c.sUntil, o.ReservedUntil), append(c.sCreated, o.CreatedAt)
		for _, l := range sh.Lines {
			c.slShip, c.slSKU, c.slQty = append(c.slShip, sh.ID), append(c.slSKU, l.SKU), append(c.slQty, l.Qty)
		}
	}
	c.addEvents(no.Events)
	c.cust.add(no)
}

// addEvents adds outbox rows.
func (c *childRows) addEvents(evs []oms.OutboxEvent) {
	for _, e := range evs {
		c.eID, c.eTopic, c.eKey, c.eSeq = append(c.eID, e.ID), append(c.eTopic, e.Topic), append(c.eKey, e.Key), append(c.eSeq, e.Seq)
		c.ePayload, c.eAt = append(c.ePayload, string(e.Payload)), append(c.eAt, e.At)
	}
}

// insert writes the rows in one round trip (a pipelined batch of four
// fixed-shape statements).
func (c *childRows) insert(ctx context.Context, tx pgx.Tx) error {
	b := &pgx.Batch{}
	if len(c.lOrder) > 0 {
		b.Queue(`INSERT INTO order_lines (order_id, line_no, sku, qty, unit_price)
			SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::bigint[], $5::bigint[])`, c.lOrder, c.lNo, c.lSKU, c.lQty, c.lPrice)
	}
	if len(c.sID) > 0 {
		b.Queue(`INSERT INTO shipments (id, order_id, node_id, status, hold_id, reserved_until, created_at, updated_at)
			SELECT u.id, u.o, u.n, u.s, u.h, u.until, u.c, u.c
			FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[])
				AS u(id, o, n, s, h, until, c)`, c.sID, c.sOrder, c.sNode, c.sStatus, c.sHold, c.sUntil, c.sCreated)
	}
	if len(c.slShip) > 0 {
		b.Queue(`INSERT INTO shipment_lines (shipment_id, sku, qty)
			SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[])`, c.slShip, c.slSKU, c.slQty)
	}
	if len(c.eID) > 0 {
		b.Queue(`INSERT INTO outbox (id, topic, msg_key, seq, payload, created_at)
			SELECT u.id, u.t, u.k, u.s, u.p::jsonb, u.a
			FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[]) AS u(id, t, k, s, p, a)`,
			c.eID, c.eTopic, c.eKey, c.eSeq, c.ePayload, c.eAt)
	}
	c.cust.queue(b)
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("pgstore: insert order rows: %w", err)
	}
	return nil
}

// SettleOrders waits until no transaction can still store the orders ids,
// then maps each stored id to its shipments' hold ids (see
// oms.OrderStore). It inserts a placeholder row for each id in a
// transaction that always rolls back: an insert on a key that another
// transaction holds uncommitted waits for that transaction to end, in
// PostgreSQL and in CockroachDB alike. So a batch whose COMMIT is still in
// flight (a stalled server, a lost connection) is decided before the
// answer, and "not stored" cannot turn into "stored" afterwards.
func (s *Store) SettleOrders(ctx context.Context, ids []string) (map[string][]string, error) {
	err := s.TxWith(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO orders (id, channel_id, external_id, status, payment_status, request_hash, doc, created_at, updated_at)
			SELECT u.id, '', u.id::text, 'settling', '', ''::bytea, '{}'::jsonb, now(), now() FROM unnest($1::uuid[]) AS u(id)
			ON CONFLICT DO NOTHING`, ids)
		if err != nil {
			return fmt.Errorf("pgstore: settle orders: %w", err)
		}
		return errRollback
	})
	if err != nil && !errors.Is(err, errRollback) {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT o.id::text, coalesce(s.hold_id, '') FROM orders o
		LEFT JOIN shipments s ON s.order_id = o.id WHERE o.id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("pgstore: settle orders: %w", err)
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

// errRollback ends a transaction that only waits (SettleOrders).
var errRollback = errors.New("pgstore: rolled back on purpose")

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
