package pgstore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/omsd/omsd/oms"
)

// The attribution totals count orders in their creation hour and net a
// refund there, in the refund's own transaction.
func TestAttributionTotalsNetRefunds(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	now := time.Now().UTC()
	var orders []*oms.Order
	for i, a := range []*oms.Attribution{
		{Associate: "A1", Store: "S1", Source: oms.AttributionFromOrder},
		{Associate: "A1", Source: oms.AttributionFromBinding},
		{Associate: "A2", Source: oms.AttributionFromOrder},
		{Source: oms.AttributionNone},
	} {
		o := &oms.Order{ID: uuid.NewString(), ExternalID: uuid.NewString(), Channel: "web", Status: oms.OrderReleased,
			PaymentStatus: oms.PaymentPaid, Lines: []oms.Line{{SKU: "SKU-1", Qty: 1, UnitPrice: int64(1000 * (i + 1))}}, Currency: "CNY",
			Total: int64(1000 * (i + 1)), Attribution: a, Version: 1, CreatedAt: now, UpdatedAt: now}
		orders = append(orders, o)
	}
	batch := make([]*oms.NewOrder, len(orders))
	for i, o := range orders {
		batch[i] = &oms.NewOrder{Order: o, RequestHash: []byte{1}}
	}
	if err := s.CommitOrders(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// A refund of 700 on the first order.
	_, applied, err := s.ReturnTx(ctx, oms.ReturnQuery{OrderID: orders[0].ID}, func(o *oms.Order, _ []*oms.Return) (oms.ReturnChange, error) {
		r := &oms.Return{ID: uuid.NewString(), OrderID: o.ID, ExternalID: "R1", Channel: "web", Status: oms.ReturnRefunded,
			Refund: oms.Refund{Amount: 700, Currency: "CNY", Status: oms.RefundRefunded}, Version: 1, CreatedAt: now, UpdatedAt: now, RequestHash: []byte{1}}
		o2 := *o
		o2.Version++
		o2.Refunded = 700
		return oms.ReturnChange{Return: r, Order: &o2, Created: true, RefundedNow: 700}, nil
	})
	if err != nil || !applied {
		t.Fatalf("refund: applied %v, %v", applied, err)
	}
	from, to := now.Truncate(time.Hour), now.Truncate(time.Hour).Add(time.Hour)
	want := map[string]map[string]oms.AttributionRow{
		"associate":   {"A1": {Key: "A1", Currency: "CNY", Orders: 2, GMV: 3000, Refunded: 700, Net: 2300}, "A2": {Key: "A2", Currency: "CNY", Orders: 1, GMV: 3000, Net: 3000}},
		"store":       {"S1": {Key: "S1", Currency: "CNY", Orders: 1, GMV: 1000, Refunded: 700, Net: 300}},
		"distributor": {},
	}
	for dim, rows := range want {
		got, err := s.AttributionSummary(ctx, dim, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(rows) {
			t.Errorf("%s: %+v, want %+v", dim, got, rows)
			continue
		}
		for _, r := range got {
			if r != rows[r.Key] {
				t.Errorf("%s %s: %+v, want %+v", dim, r.Key, r, rows[r.Key])
			}
		}
	}
	// Folding the slots keeps every total.
	if _, err := s.FoldAttributionSlots(ctx, to); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.AttributionSummary(ctx, "associate", from, to); len(got) != 2 || got[0] != want["associate"]["A1"] || got[1] != want["associate"]["A2"] {
		t.Errorf("after folding: %+v", got)
	}
	var slots int
	_ = s.Pool().QueryRow(ctx, `SELECT count(*) FROM attribution_hourly WHERE slot <> 0`).Scan(&slots)
	if slots != 0 {
		t.Errorf("%d rows left in other slots after folding", slots)
	}
	// The next hour holds none of it.
	if got, _ := s.AttributionSummary(ctx, "associate", to, to.Add(time.Hour)); len(got) != 0 {
		t.Errorf("the next hour: %+v", got)
	}
}

// BenchmarkAttributionSummary answers the summary over the totals a
// million orders leave behind (30 days, 500 associates, 200 stores, 20
// distributors, each order in a random one of the slots, as when every
// commit batch is small), for the whole month:
//
//	go test -run '^$' -bench AttributionSummary -benchtime 20x ./oms/pgstore/
func BenchmarkAttributionSummary(b *testing.B) {
	s := migrated(b)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Hour)
	for _, d := range []struct {
		dim  string
		keys int
	}{{"associate", 500}, {"store", 200}, {"distributor", 20}} {
		if _, err := s.Pool().Exec(ctx, `INSERT INTO attribution_hourly (dim, key, hour, currency, slot, orders, gmv, refunded)
			SELECT $1, k, h, 'CNY', sl, count(*), sum(g), sum(g) / 20 FROM (
				SELECT $1 || '-' || floor(random() * $2)::int AS k,
					$3::timestamptz - floor(random() * 720)::int * interval '1 hour' AS h,
					floor(random() * $4)::int AS sl, (random() * 20000)::bigint AS g
				FROM generate_series(1, 1000000)) AS o
			GROUP BY k, h, sl`, d.dim, d.keys, now, attributionSlots); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.Pool().Exec(ctx, `ANALYZE attribution_hourly`); err != nil {
		b.Fatal(err)
	}
	summary := func(folded string) {
		var rows int64
		_ = s.Pool().QueryRow(ctx, `SELECT count(*) FROM attribution_hourly WHERE dim = 'associate'`).Scan(&rows)
		b.Logf("%s: %d associate rows for 1,000,000 orders", folded, rows)
		for _, dim := range []string{"associate", "store", "distributor"} {
			b.Run(folded+"/group_by="+dim, func(b *testing.B) {
				for b.Loop() {
					got, err := s.AttributionSummary(ctx, dim, now.Add(-30*24*time.Hour), now.Add(time.Hour))
					if err != nil || len(got) == 0 {
						b.Fatalf("%d rows, %v", len(got), err)
					}
				}
			})
		}
	}
	summary("slots=16")
	if _, err := s.FoldAttributionSlots(ctx, now); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `VACUUM ANALYZE attribution_hourly`); err != nil {
		b.Fatal(err)
	}
	summary("folded")
}

// TestFoldAttributionSlotsRacingWriters folds while writers keep adding
// to the slots of past hours (refunds of old orders do): every total
// survives, whichever of a fold and a write retries.
func TestFoldAttributionSlotsRacingWriters(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Hour)
	hours := []time.Time{now.Add(-3 * time.Hour), now.Add(-2 * time.Hour), now} // the last one is not folded
	const writers, writes = 4, 60
	var wg sync.WaitGroup
	errs := make(chan error, writers+2)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range writes {
				h := hours[(w+i)%len(hours)]
				err := s.Tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
					_, err := tx.Exec(ctx, `INSERT INTO attribution_hourly (dim, key, hour, currency, slot, orders, gmv, refunded)
						VALUES ('associate', $1, $2, 'CNY', $3, 1, 100, 10)
						ON CONFLICT (dim, hour, key, currency, slot) DO UPDATE SET orders = attribution_hourly.orders + 1,
							gmv = attribution_hourly.gmv + 100, refunded = attribution_hourly.refunded + 10`,
						fmt.Sprintf("A%d", i%3), h, (w+i)%attributionSlots)
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	var folders sync.WaitGroup
	for range 2 {
		folders.Add(1)
		go func() {
			defer folders.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.FoldAttributionSlots(ctx, now); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	folders.Wait()
	if _, err := s.FoldAttributionSlots(ctx, now); err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var orders, gmv, refunded, leftInPast, inCurrent int64
	if err := s.Pool().QueryRow(ctx, `SELECT sum(orders), sum(gmv), sum(refunded),
			count(*) FILTER (WHERE hour < $1 AND slot <> 0), count(*) FILTER (WHERE hour >= $1 AND slot <> 0)
		FROM attribution_hourly`, now).Scan(&orders, &gmv, &refunded, &leftInPast, &inCurrent); err != nil {
		t.Fatal(err)
	}
	if want := int64(writers * writes); orders != want || gmv != 100*want || refunded != 10*want {
		t.Errorf("totals %d orders, %d GMV, %d refunded; want %d, %d, %d", orders, gmv, refunded, want, 100*want, 10*want)
	}
	if leftInPast != 0 {
		t.Errorf("%d rows of past hours left outside slot 0", leftInPast)
	}
	if inCurrent == 0 {
		t.Error("the current hour was folded")
	}
	// One row per (key, hour) in the past after folding.
	var pastRows int64
	_ = s.Pool().QueryRow(ctx, `SELECT count(*) FROM attribution_hourly WHERE hour < $1`, now).Scan(&pastRows)
	if pastRows > 3*2 {
		t.Errorf("%d rows for 3 keys × 2 past hours", pastRows)
	}
}
