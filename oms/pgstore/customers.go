package pgstore

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/omsd/omsd/oms"
)

// attributionSlots is how many rows one (group, key, hour, currency)
// total is split into (see attribution_hourly).
const attributionSlots = 16

// LookupCustomers finds the surviving customer of each stored hash, with
// its binding, in one round trip (oms.CustomerStore).
func (s *Store) LookupCustomers(ctx context.Context, hashes [][]byte) ([]oms.CustomerRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT k.key_hash, v.id::text, v.created_at, v.bound_associate, v.bound_store,
			v.bound_distributor, v.bound_at, v.bound_until, coalesce(v.bound_order_id::text, ''), v.binding_version
		FROM customer_keys k
		JOIN customers c ON c.id = k.customer_id
		JOIN customers v ON v.id = coalesce(c.merged_into, c.id)
		WHERE k.key_hash = ANY($1::bytea[])`, hashes)
	if err != nil {
		return nil, fmt.Errorf("pgstore: look customers up: %w", err)
	}
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (oms.CustomerRecord, error) {
		var rec oms.CustomerRecord
		var b oms.Binding
		var at, until *time.Time
		err := r.Scan(&rec.Hash, &rec.CustomerID, &rec.CreatedAt, &b.Associate, &b.Store, &b.Distributor, &at, &until, &b.OrderID, &rec.BindingVersion)
		if at != nil && until != nil {
			b.BoundAt, b.ExpiresAt = at.UTC(), until.UTC()
			rec.Binding = &b
		}
		return rec, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: look customers up: %w", err)
	}
	return recs, nil
}

// customerRows are the customer writes that come with a batch of new
// orders, queued on the batch that carries the orders' rows (no round
// trip of their own).
type customerRows struct {
	newID      []string
	newAt      []time.Time
	kHash      [][]byte
	kKeyID     []string
	kCust      []string
	kAt        []time.Time
	rCust      []string // new customers' keys, for the race repair
	rHash      [][]byte
	mLoser     []string
	mSurvivor  []string
	bind       map[string]*oms.NewOrder // per customer: the order whose change applies
	bindOrder  []string
	agg        map[aggKey]*aggVal
	seenNew    map[string]bool
	seenLoser  map[string]bool
	hasRecords bool
}

type aggKey struct {
	dim, key, currency string
	hour               time.Time
}

type aggVal struct{ orders, gmv, refunded int64 }

// add records what one inserted order writes for its customer.
func (c *customerRows) add(no *oms.NewOrder) {
	o := no.Order
	if a := o.Attribution; a != nil && a.Source != oms.AttributionNone {
		c.addTotals(a, o.CreatedAt, o.Currency, aggVal{orders: 1, gmv: o.Total})
	}
	m := no.Customer
	if m == nil {
		return
	}
	c.hasRecords = true
	if c.seenNew == nil {
		c.seenNew, c.seenLoser, c.bind = map[string]bool{}, map[string]bool{}, map[string]*oms.NewOrder{}
	}
	if m.New && !c.seenNew[m.ID] {
		c.seenNew[m.ID] = true
		c.newID, c.newAt = append(c.newID, m.ID), append(c.newAt, o.CreatedAt)
	}
	for _, h := range m.Keys {
		c.kHash, c.kKeyID, c.kCust, c.kAt = append(c.kHash, h), append(c.kKeyID, m.KeyID), append(c.kCust, m.ID), append(c.kAt, o.CreatedAt)
		if m.New {
			c.rCust, c.rHash = append(c.rCust, m.ID), append(c.rHash, h)
		}
	}
	for _, l := range m.Merge {
		if !c.seenLoser[l] && l != m.ID {
			c.seenLoser[l] = true
			c.mLoser, c.mSurvivor = append(c.mLoser, l), append(c.mSurvivor, m.ID)
		}
	}
	if m.Bind != nil {
		// One change per customer and batch: the first order's under
		// keep_first, the last one's under latest.
		prev, ok := c.bind[m.ID]
		if !ok {
			c.bindOrder = append(c.bindOrder, m.ID)
		}
		if !ok || (m.Bind.Replace && prev.Customer.Bind.Expect == m.Bind.Expect) {
			c.bind[m.ID] = no
		}
	}
}

func (c *customerRows) addTotals(a *oms.Attribution, created time.Time, currency string, v aggVal) {
	if c.agg == nil {
		c.agg = map[aggKey]*aggVal{}
	}
	hour := created.UTC().Truncate(time.Hour)
	for _, d := range [...]struct{ dim, key string }{{"associate", a.Associate}, {"store", a.Store}, {"distributor", a.Distributor}} {
		if d.key == "" {
			continue
		}
		k := aggKey{d.dim, d.key, currency, hour}
		t := c.agg[k]
		if t == nil {
			t = &aggVal{}
			c.agg[k] = t
		}
		t.orders, t.gmv, t.refunded = t.orders+v.orders, t.gmv+v.gmv, t.refunded+v.refunded
	}
}

// queue adds the statements to b, in an order that keeps them valid:
// customers before their keys, keys before the repair that reads them,
// merges before bindings.
func (c *customerRows) queue(b *pgx.Batch) {
	if len(c.newID) > 0 {
		b.Queue(`INSERT INTO customers (id, created_at) SELECT * FROM unnest($1::uuid[], $2::timestamptz[]) ON CONFLICT (id) DO NOTHING`,
			c.newID, c.newAt)
	}
	if len(c.kHash) > 0 {
		b.Queue(`INSERT INTO customer_keys (key_hash, key_id, customer_id, created_at)
			SELECT * FROM unnest($1::bytea[], $2::text[], $3::uuid[], $4::timestamptz[]) ON CONFLICT (key_hash) DO NOTHING`,
			c.kHash, c.kKeyID, c.kCust, c.kAt)
	}
	if len(c.rCust) > 0 {
		// A new customer that lost one of its keys to a customer created
		// meanwhile by another transaction is the same person: it is
		// merged into the key's owner.
		b.Queue(`UPDATE customers SET merged_into = w.owner
			FROM (SELECT u.cust, min(coalesce(oc.merged_into, oc.id)::text)::uuid AS owner
				FROM unnest($1::uuid[], $2::bytea[]) AS u(cust, key)
				JOIN customer_keys k ON k.key_hash = u.key
				JOIN customers oc ON oc.id = k.customer_id
				WHERE k.customer_id <> u.cust AND coalesce(oc.merged_into, oc.id) <> u.cust
				GROUP BY u.cust) AS w
			WHERE customers.id = w.cust AND customers.merged_into IS NULL`, c.rCust, c.rHash)
	}
	if len(c.mLoser) > 0 {
		// Merged customers, and those merged into them before, point at
		// the survivor (never a chain).
		b.Queue(`UPDATE customers SET merged_into = u.s
			FROM unnest($1::uuid[], $2::uuid[]) AS u(l, s)
			WHERE (customers.id = u.l OR customers.merged_into = u.l) AND customers.id <> u.s`, c.mLoser, c.mSurvivor)
	}
	if len(c.bindOrder) > 0 {
		var cust, assoc, store, dist, order, evID, evTopic, evKey, evPayload []string
		var at, until, evAt []time.Time
		var expect []int32
		var evSeq []int64
		for _, id := range c.bindOrder {
			no := c.bind[id]
			bc := no.Customer.Bind
			cust, assoc, store, dist = append(cust, id), append(assoc, bc.Binding.Associate), append(store, bc.Binding.Store), append(dist, bc.Binding.Distributor)
			at, until, order, expect = append(at, bc.Binding.BoundAt), append(until, bc.Binding.ExpiresAt), append(order, no.Order.ID), append(expect, int32(bc.Expect))
			e := bc.Event
			evID, evTopic, evKey, evSeq = append(evID, e.ID), append(evTopic, e.Topic), append(evKey, e.Key), append(evSeq, e.Seq)
			evPayload, evAt = append(evPayload, string(e.Payload)), append(evAt, e.At)
		}
		// The change applies only to the version it was decided on, on
		// the survivor (a new customer merged into another in this same
		// transaction hands its binding on); the event is written only
		// where it applied.
		b.Queue(`UPDATE customers SET bound_associate = u.a, bound_store = u.s, bound_distributor = u.d,
				bound_at = u.at, bound_until = u.until, bound_order_id = u.o, binding_version = customers.binding_version + 1
			FROM (SELECT coalesce(c0.merged_into, c0.id) AS target, u.*
				FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::uuid[], $8::int[])
					AS u(c, a, s, d, at, until, o, ver)
				JOIN customers c0 ON c0.id = u.c) AS u
			WHERE customers.id = u.target AND customers.binding_version = u.ver`,
			cust, assoc, store, dist, at, until, order, expect)
		b.Queue(`INSERT INTO outbox (id, topic, msg_key, seq, payload, created_at)
			SELECT u.id, u.t, u.k, u.s, u.p::jsonb, u.a
			FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[], $7::uuid[], $8::uuid[])
				AS u(id, t, k, s, p, a, c, o)
			JOIN customers c0 ON c0.id = u.c
			JOIN customers cu ON cu.id = coalesce(c0.merged_into, c0.id) AND cu.bound_order_id = u.o AND cu.binding_version = u.s
			ON CONFLICT (id) DO NOTHING`,
			evID, evTopic, evKey, evSeq, evPayload, evAt, cust, order)
	}
	queueTotals(b, c.agg)
}

// queueTotals adds attribution totals to b, in primary-key order (one
// lock order for every transaction), on one slot chosen per batch.
func queueTotals(b *pgx.Batch, agg map[aggKey]*aggVal) {
	if len(agg) == 0 {
		return
	}
	keys := make([]aggKey, 0, len(agg))
	for k := range agg {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y aggKey) int {
		return cmp.Or(strings.Compare(x.dim, y.dim), x.hour.Compare(y.hour), strings.Compare(x.key, y.key), strings.Compare(x.currency, y.currency))
	})
	slot := int32(rand.IntN(attributionSlots))
	var dim, key, cur []string
	var hour []time.Time
	var slots []int32
	var orders, gmv, refunded []int64
	for _, k := range keys {
		v := agg[k]
		dim, key, cur, hour, slots = append(dim, k.dim), append(key, k.key), append(cur, k.currency), append(hour, k.hour), append(slots, slot)
		orders, gmv, refunded = append(orders, v.orders), append(gmv, v.gmv), append(refunded, v.refunded)
	}
	b.Queue(`INSERT INTO attribution_hourly (dim, key, hour, currency, slot, orders, gmv, refunded)
		SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::int[], $6::bigint[], $7::bigint[], $8::bigint[])
		ON CONFLICT (dim, hour, key, currency, slot) DO UPDATE SET orders = attribution_hourly.orders + excluded.orders,
			gmv = attribution_hourly.gmv + excluded.gmv, refunded = attribution_hourly.refunded + excluded.refunded`,
		dim, key, hour, cur, slots, orders, gmv, refunded)
}

// queueRefundTotals nets a refund in the attribution totals of the
// order's creation hour.
func queueRefundTotals(b *pgx.Batch, o *oms.Order, amount int64) {
	if a := o.Attribution; amount > 0 && a != nil && a.Source != oms.AttributionNone {
		var c customerRows
		c.addTotals(a, o.CreatedAt, o.Currency, aggVal{refunded: amount})
		queueTotals(b, c.agg)
	}
}

// survivor returns the customer id answers for, and the ids whose orders
// are its (itself and those merged into it).
func (s *Store) survivor(ctx context.Context, id string) (string, *oms.Binding, []string, error) {
	if _, err := uuid.Parse(id); err != nil {
		return "", nil, nil, oms.ErrNotFound
	}
	var sid string
	var b oms.Binding
	var at, until *time.Time
	err := s.pool.QueryRow(ctx, `SELECT v.id::text, v.bound_associate, v.bound_store, v.bound_distributor, v.bound_at, v.bound_until,
			coalesce(v.bound_order_id::text, '')
		FROM customers c JOIN customers v ON v.id = coalesce(c.merged_into, c.id) WHERE c.id = $1`, id).
		Scan(&sid, &b.Associate, &b.Store, &b.Distributor, &at, &until, &b.OrderID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, nil, oms.ErrNotFound
	}
	if err != nil {
		return "", nil, nil, fmt.Errorf("pgstore: read customer: %w", err)
	}
	var binding *oms.Binding
	if at != nil && until != nil {
		b.BoundAt, b.ExpiresAt = at.UTC(), until.UTC()
		binding = &b
	}
	rows, err := s.pool.Query(ctx, `SELECT id::text FROM customers WHERE merged_into = $1`, sid)
	if err != nil {
		return "", nil, nil, fmt.Errorf("pgstore: read customer: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", nil, nil, fmt.Errorf("pgstore: read customer: %w", err)
	}
	return sid, binding, append([]string{sid}, ids...), nil
}

// GetCustomer returns a customer (the survivor when id was merged) with
// its totals over every channel.
func (s *Store) GetCustomer(ctx context.Context, id string) (*oms.CustomerView, error) {
	sid, binding, ids, err := s.survivor(ctx, id)
	if err != nil {
		return nil, err
	}
	v := &oms.CustomerView{ID: sid, Binding: binding, Channels: []string{}}
	if sid != id {
		v.MergedFrom = id
	}
	rows, err := s.pool.Query(ctx, `SELECT channel_id, coalesce(doc->>'currency', ''), count(*), coalesce(sum((doc->>'total')::bigint), 0),
			min(created_at), max(created_at)
		FROM orders WHERE customer_id = ANY($1::uuid[]) GROUP BY channel_id, doc->>'currency' ORDER BY channel_id`, ids)
	if err != nil {
		return nil, fmt.Errorf("pgstore: customer totals: %w", err)
	}
	defer rows.Close()
	byCur := map[string]int64{}
	for rows.Next() {
		var ch, cur string
		var n, gmv int64
		var first, last time.Time
		if err := rows.Scan(&ch, &cur, &n, &gmv, &first, &last); err != nil {
			return nil, fmt.Errorf("pgstore: customer totals: %w", err)
		}
		if !slices.Contains(v.Channels, ch) {
			v.Channels = append(v.Channels, ch)
		}
		v.Orders += n
		byCur[cur] += gmv
		first, last = first.UTC(), last.UTC()
		if v.FirstOrderAt == nil || first.Before(*v.FirstOrderAt) {
			v.FirstOrderAt = &first
		}
		if v.LastOrderAt == nil || last.After(*v.LastOrderAt) {
			v.LastOrderAt = &last
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: customer totals: %w", err)
	}
	if len(byCur) == 1 {
		for c, g := range byCur {
			v.Currency, v.GMV = c, g
		}
	} else if len(byCur) > 1 {
		v.GMVByCurrency = byCur
	}
	return v, nil
}

// CustomerOrders returns a page of a customer's orders (every merged id
// included) in creation order after the cursor, and the next cursor ("":
// the last page).
func (s *Store) CustomerOrders(ctx context.Context, id string, limit int, after string) ([]oms.CustomerOrder, string, error) {
	_, _, ids, err := s.survivor(ctx, id)
	if err != nil {
		return nil, "", err
	}
	afterAt, afterID := time.Time{}, "00000000-0000-0000-0000-000000000000"
	if after != "" {
		if afterAt, afterID, err = decodeCursor(after); err != nil {
			return nil, "", oms.Invalid("the cursor is not valid", oms.FieldError{Field: "after", Message: "is not a cursor this API returned"})
		}
	}
	rows, err := s.pool.Query(ctx, `SELECT id::text, channel_id, external_id, status, coalesce((doc->>'total')::bigint, 0),
			coalesce(doc->>'currency', ''), created_at
		FROM orders WHERE customer_id = ANY($1::uuid[]) AND (created_at, id) > ($2, $3::uuid)
		ORDER BY created_at, id LIMIT $4`, ids, afterAt, afterID, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("pgstore: customer orders: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (oms.CustomerOrder, error) {
		var o oms.CustomerOrder
		err := r.Scan(&o.ID, &o.Channel, &o.ExternalID, &o.Status, &o.Total, &o.Currency, &o.CreatedAt)
		o.CreatedAt = o.CreatedAt.UTC()
		return o, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("pgstore: customer orders: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[len(out)-1]
		next = encodeCursor(last.CreatedAt, last.ID)
	}
	return out, next, nil
}

func encodeCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + "|" + id))
}

func decodeCursor(c string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", err
	}
	ts, id, ok := strings.Cut(string(b), "|")
	if !ok {
		return time.Time{}, "", errors.New("no separator")
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return time.Time{}, "", err
	}
	if _, err := uuid.Parse(id); err != nil {
		return time.Time{}, "", err
	}
	return at, id, nil
}

// AttributionSummary totals the orders created in [from, to) (whole
// hours) by associate, store or distributor, net of refunds: a range scan
// of the hourly totals, which the orders' own transactions maintain.
func (s *Store) AttributionSummary(ctx context.Context, dim string, from, to time.Time) ([]oms.AttributionRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT key, currency, sum(orders)::bigint, sum(gmv)::bigint, sum(refunded)::bigint
		FROM attribution_hourly WHERE dim = $1 AND hour >= $2 AND hour < $3
		GROUP BY key, currency ORDER BY key, currency`, dim, from, to)
	if err != nil {
		return nil, fmt.Errorf("pgstore: attribution summary: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (oms.AttributionRow, error) {
		var a oms.AttributionRow
		err := r.Scan(&a.Key, &a.Currency, &a.Orders, &a.GMV, &a.Refunded)
		a.Net = a.GMV - a.Refunded
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: attribution summary: %w", err)
	}
	return out, nil
}

// FoldAttributionSlots folds the slots of the attribution totals of the
// hours before before into slot 0 and returns the rows it removed. The
// slots only spread the row locks of concurrent commits; once an hour is
// past, its totals need one row per key, which keeps the summary a scan of
// at most hours × keys rows. Concurrent folds and commits are safe (see
// below). A refund of an old order adds to a slot again, and the next fold
// takes it.
func (s *Store) FoldAttributionSlots(ctx context.Context, before time.Time) (int64, error) {
	var moved int64
	// Two statements, not one with two modifying subqueries of the table
	// (CockroachDB refuses that). Tx is SERIALIZABLE, so both statements
	// see one snapshot: the delete takes exactly the rows the upsert
	// summed, and a commit or fold that changes them meanwhile makes one of
	// the two transactions retry. The sums are written in primary-key order
	// like every other writer of the table.
	err := s.Tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO attribution_hourly (dim, key, hour, currency, slot, orders, gmv, refunded)
				SELECT dim, key, hour, currency, 0, sum(orders), sum(gmv), sum(refunded) FROM attribution_hourly
				WHERE hour < $1 AND slot <> 0
				GROUP BY dim, hour, key, currency ORDER BY dim, hour, key, currency
				ON CONFLICT (dim, hour, key, currency, slot) DO UPDATE SET orders = attribution_hourly.orders + excluded.orders,
					gmv = attribution_hourly.gmv + excluded.gmv, refunded = attribution_hourly.refunded + excluded.refunded`, before); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM attribution_hourly WHERE hour < $1 AND slot <> 0`, before)
		moved = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pgstore: fold attribution slots: %w", err)
	}
	return moved, nil
}
