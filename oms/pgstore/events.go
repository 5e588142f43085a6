package pgstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/omsd/omsd/oms"
)

// ApplyEvents applies a batch of warehouse events in one transaction, each
// with ApplyEvent's rules (see oms.EventBatchStore): an event id seen
// before is a duplicate (its Fn is not called), an Fn error wrapping
// oms.ErrEventIgnored keeps the event id and changes nothing, any other Fn
// error leaves that event out (nothing of it is written, its id is not
// recorded), and the events of one order run one after the other on it.
//
// It costs a fixed number of round trips whatever the batch size: the
// orders are locked (in id order, so that concurrent batches cannot
// deadlock on them) with their shipments and the processed marks read in
// one pipelined batch; the transitions run in memory; the stock rows of
// the shipped lines are locked in key order and their on-hand read; then
// every write goes in one pipelined batch of fixed-shape statements
// (processed marks, orders, shipments, outbox, stock, stock ledger), the
// stock and its ledger aggregated per (node, SKU) over the batch.
//
// READ COMMITTED is enough: every order is read under its row lock, and
// each later statement sees what the previous holder of that lock
// committed (the processed marks included); stock rows are locked before
// they are read. CockroachDB runs it as SERIALIZABLE.
func (s *Store) ApplyEvents(ctx context.Context, evs []oms.EventApply) ([]oms.EventOutcome, error) {
	var out []oms.EventOutcome
	err := s.TxWith(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(ctx context.Context, tx pgx.Tx) error {
		o, err := s.applyEventsTx(ctx, tx, evs)
		out = o
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// batchOrder is one order of an event batch as it moves through it.
type batchOrder struct {
	o           *oms.Order
	before      map[string]oms.ShipmentStatus // shipment statuses as stored
	untilBefore *time.Time
	changed     bool
}

func (s *Store) applyEventsTx(ctx context.Context, tx pgx.Tx, evs []oms.EventApply) ([]oms.EventOutcome, error) {
	out := make([]oms.EventOutcome, len(evs))
	shipIDs := make([]string, 0, len(evs))
	eventIDs := make([]string, 0, len(evs))
	for i, ev := range evs {
		if _, err := uuid.Parse(ev.ShipmentID); err != nil {
			out[i].Err = oms.ErrNotFound
			continue
		}
		shipIDs = append(shipIDs, ev.ShipmentID)
		eventIDs = append(eventIDs, ev.EventID)
	}
	if len(shipIDs) == 0 {
		return out, nil
	}

	// Round trip 1: lock the orders, read their shipments and the marks.
	b := &pgx.Batch{}
	b.Queue(`SELECT id::text, doc FROM orders
		WHERE id IN (SELECT order_id FROM shipments WHERE id = ANY($1::uuid[]))
		ORDER BY id FOR UPDATE`, shipIDs)
	b.Queue(`SELECT id::text, order_id::text, hold_id, status FROM shipments
		WHERE order_id IN (SELECT order_id FROM shipments WHERE id = ANY($1::uuid[]))`, shipIDs)
	b.Queue(`SELECT event_id FROM processed_events WHERE event_id = ANY($1::text[])`, eventIDs)
	br := tx.SendBatch(ctx, b)
	orders := map[string]*batchOrder{}
	err := func() error {
		rows, err := br.Query()
		if err != nil {
			return fmt.Errorf("pgstore: lock orders: %w", err)
		}
		for rows.Next() {
			var id string
			var doc []byte
			if err := rows.Scan(&id, &doc); err != nil {
				rows.Close()
				return err
			}
			var o oms.Order
			if err := json.Unmarshal(doc, &o); err != nil {
				rows.Close()
				return fmt.Errorf("pgstore: decode order %s: %w", id, err)
			}
			orders[id] = &batchOrder{o: &o, before: map[string]oms.ShipmentStatus{}, untilBefore: o.ReservedUntil}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("pgstore: lock orders: %w", err)
		}
		return nil
	}()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	shipOrder := map[string]string{}
	holds := map[string]string{}
	rows, err := br.Query()
	if err == nil {
		for rows.Next() {
			var sid, oid, hold, st string
			if err = rows.Scan(&sid, &oid, &hold, &st); err != nil {
				break
			}
			shipOrder[sid], holds[sid] = oid, hold
			if bo := orders[oid]; bo != nil {
				bo.before[sid] = oms.ShipmentStatus(st)
			}
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		_ = br.Close()
		return nil, fmt.Errorf("pgstore: shipments: %w", err)
	}
	seen := map[string]bool{}
	rows, err = br.Query()
	if err == nil {
		for rows.Next() {
			var id string
			if err = rows.Scan(&id); err != nil {
				break
			}
			seen[id] = true
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: processed events: %w", err)
	}
	for _, bo := range orders {
		for i := range bo.o.Shipments {
			bo.o.Shipments[i].HoldID = holds[bo.o.Shipments[i].ID]
		}
	}

	// The transitions, in memory, in the order given.
	now := s.Now().UTC()
	var marks []string
	var shipped []oms.Shipment
	var outbox []oms.OutboxEvent
	for i, ev := range evs {
		if out[i].Err != nil {
			continue
		}
		bo := orders[shipOrder[ev.ShipmentID]]
		if bo == nil {
			out[i].Err = oms.ErrNotFound
			continue
		}
		if seen[ev.EventID] {
			continue // a duplicate: the order is filled in below
		}
		was := make(map[string]oms.ShipmentStatus, len(bo.o.Shipments))
		for _, sh := range bo.o.Shipments {
			was[sh.ID] = sh.Status
		}
		work := *bo.o
		version := work.Version
		evsOut, err := ev.Fn(&work)
		if errors.Is(err, oms.ErrEventIgnored) {
			seen[ev.EventID] = true
			marks = append(marks, ev.EventID)
			out[i].Err = err
			continue
		}
		if err != nil {
			out[i].Err = err
			continue
		}
		if work.Version == version {
			work.Version++
		}
		work.UpdatedAt = now
		*bo.o = work
		bo.changed = true
		seen[ev.EventID] = true
		marks = append(marks, ev.EventID)
		out[i].Applied = true
		outbox = append(outbox, evsOut...)
		for _, sh := range bo.o.Shipments {
			if sh.Status == oms.ShipmentShipped && was[sh.ID] != oms.ShipmentShipped {
				shipped = append(shipped, sh)
			}
		}
	}
	for i, ev := range evs {
		if bo := orders[shipOrder[ev.ShipmentID]]; bo != nil && !errors.Is(out[i].Err, oms.ErrNotFound) {
			out[i].Order = bo.o
		}
	}
	if len(marks) == 0 {
		return out, nil
	}

	// Round trip 2 (when something shipped): lock and read the stock rows.
	ledger, err := shipBatchLedger(ctx, tx, shipped)
	if err != nil {
		return nil, err
	}

	// Round trip 3: every write.
	w := &pgx.Batch{}
	w.Queue(`INSERT INTO processed_events (event_id, processed_at)
		SELECT e, $2 FROM unnest($1::text[]) AS u(e) ON CONFLICT (event_id) DO NOTHING`, marks, now)
	var oID, oDoc, oStatus, oPay []string
	var oUntil []*time.Time
	var oVersion []int64
	var sID, sStatus, sTrack []string
	var sUntil []*time.Time
	for _, id := range slices.Sorted(maps.Keys(orders)) {
		bo := orders[id]
		if !bo.changed {
			continue
		}
		o := bo.o
		doc, err := json.Marshal(o)
		if err != nil {
			return nil, err
		}
		oID, oDoc, oStatus, oPay = append(oID, id), append(oDoc, string(doc)), append(oStatus, string(o.Status)), append(oPay, string(o.PaymentStatus))
		oUntil, oVersion = append(oUntil, o.ReservedUntil), append(oVersion, int64(o.Version))
		untilChanged := !sameTime(bo.untilBefore, o.ReservedUntil)
		for _, sh := range o.Shipments {
			old, ok := bo.before[sh.ID]
			switch {
			case !ok:
				// A shipment added by the transition (re-sourcing).
				var until any
				if o.ReservedUntil != nil {
					until = *o.ReservedUntil
				}
				w.Queue(`INSERT INTO shipments (id, order_id, node_id, status, hold_id, reserved_until, tracking_number, created_at, updated_at)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`, sh.ID, id, sh.NodeID, sh.Status, sh.HoldID, until, sh.TrackingNumber, now)
				for _, l := range sh.Lines {
					w.Queue(`INSERT INTO shipment_lines (shipment_id, sku, qty) VALUES ($1, $2, $3)`, sh.ID, l.SKU, l.Qty)
				}
			case old != sh.Status || sh.TrackingNumber != "" || untilChanged:
				sID, sStatus, sTrack = append(sID, sh.ID), append(sStatus, string(sh.Status)), append(sTrack, sh.TrackingNumber)
				sUntil = append(sUntil, o.ReservedUntil)
			}
		}
	}
	w.Queue(`UPDATE orders AS o SET doc = u.d::jsonb, status = u.s, payment_status = u.p, reserved_until = u.r, version = u.v, updated_at = $7
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::int[]) AS u(id, d, s, p, r, v)
		WHERE o.id = u.id`, oID, oDoc, oStatus, oPay, oUntil, oVersion, now)
	if len(sID) > 0 {
		w.Queue(`UPDATE shipments AS s SET status = u.st, tracking_number = u.t, reserved_until = u.r, updated_at = $5
			FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) AS u(id, st, t, r)
			WHERE s.id = u.id`, sID, sStatus, sTrack, sUntil, now)
	}
	if len(outbox) > 0 {
		var c childRows
		c.addEvents(outbox)
		w.Queue(`INSERT INTO outbox (id, topic, msg_key, seq, payload, created_at)
			SELECT u.id, u.t, u.k, u.s, u.p::jsonb, u.a
			FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[]) AS u(id, t, k, s, p, a)
			ON CONFLICT (id) DO NOTHING`, c.eID, c.eTopic, c.eKey, c.eSeq, c.ePayload, c.eAt)
	}
	ledger.queue(w, now)
	if err := tx.SendBatch(ctx, w).Close(); err != nil {
		return nil, fmt.Errorf("pgstore: write event batch: %w", err)
	}
	return out, nil
}

// batchLedger is the stock movement of the shipped lines of a batch:
// on_hand per (node, SKU) after the batch, and one ledger row per line.
type batchLedger struct {
	keyNode, keySKU []string
	onHand          []int64
	missing         [][2]string // (node, SKU) without a stock row: booked against zero
	id              []string
	node, sku, ref  []string
	qty, after      []int64
}

// shipBatchLedger locks the stock rows of the shipped lines (in key order)
// and books the lines one after the other: on hand drops by each line,
// never below zero (a snapshot may have lowered it below what was
// reserved; the ledger row still records the full quantity).
func shipBatchLedger(ctx context.Context, tx pgx.Tx, shipped []oms.Shipment) (*batchLedger, error) {
	l := &batchLedger{}
	if len(shipped) == 0 {
		return l, nil
	}
	type key struct{ node, sku string }
	keys := map[key]bool{}
	for _, sh := range shipped {
		for _, ln := range sh.Lines {
			keys[key{sh.NodeID, ln.SKU}] = true
		}
	}
	sorted := make([]key, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.SortFunc(sorted, func(a, b key) int { return cmp.Or(cmp.Compare(a.node, b.node), cmp.Compare(a.sku, b.sku)) })
	nodes, skus := make([]string, len(sorted)), make([]string, len(sorted))
	for i, k := range sorted {
		nodes[i], skus[i] = k.node, k.sku
	}
	rows, err := tx.Query(ctx, `SELECT node_id, sku, on_hand FROM stock
		WHERE (node_id, sku) IN (SELECT * FROM unnest($1::text[], $2::text[]))
		ORDER BY node_id, sku FOR UPDATE`, nodes, skus)
	if err != nil {
		return nil, fmt.Errorf("pgstore: lock stock: %w", err)
	}
	onHand := map[key]int64{}
	for rows.Next() {
		var k key
		var v int64
		if err := rows.Scan(&k.node, &k.sku, &v); err != nil {
			rows.Close()
			return nil, err
		}
		onHand[k] = v
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: lock stock: %w", err)
	}
	for _, k := range sorted {
		if _, ok := onHand[k]; !ok {
			l.missing = append(l.missing, [2]string{k.node, k.sku})
			onHand[k] = 0
		}
	}
	for _, sh := range shipped {
		for _, ln := range sh.Lines {
			k := key{sh.NodeID, ln.SKU}
			v := max(onHand[k]-ln.Qty, 0)
			onHand[k] = v
			l.id = append(l.id, uuid.NewSHA1(ledgerNamespace, []byte(sh.ID+"\x00"+ln.SKU)).String())
			l.node, l.sku, l.ref = append(l.node, sh.NodeID), append(l.sku, ln.SKU), append(l.ref, sh.ID)
			l.qty, l.after = append(l.qty, -ln.Qty), append(l.after, v)
		}
	}
	for _, k := range sorted {
		l.keyNode, l.keySKU, l.onHand = append(l.keyNode, k.node), append(l.keySKU, k.sku), append(l.onHand, onHand[k])
	}
	return l, nil
}

// queue adds the stock and ledger writes to b.
func (l *batchLedger) queue(b *pgx.Batch, now time.Time) {
	if len(l.id) == 0 {
		return
	}
	for _, m := range l.missing {
		b.Queue(`INSERT INTO stock (node_id, sku, on_hand, safety_stock, updated_at) VALUES ($1, $2, 0, 0, $3)
			ON CONFLICT (node_id, sku) DO NOTHING`, m[0], m[1], now)
	}
	b.Queue(`UPDATE stock AS s SET on_hand = u.v, updated_at = $4
		FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(n, k, v)
		WHERE s.node_id = u.n AND s.sku = u.k`, l.keyNode, l.keySKU, l.onHand, now)
	b.Queue(`INSERT INTO stock_ledger (id, node_id, sku, kind, qty, on_hand_after, ref, at)
		SELECT u.id, u.n, u.k, 'ship', u.q, u.a, u.r, $7
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[]) AS u(id, n, k, q, a, r)
		ON CONFLICT (id) DO NOTHING`, l.id, l.node, l.sku, l.qty, l.after, l.ref, now)
}
