package redisstock_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/omsd/omsd/deploy/localstack/stacktest"
	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/redisstock"
)

// BenchmarkReserve measures reservations per second of one unit against a
// real server, side by side:
//
//   - impl=redis-lua: this package (one Lua script per hold: readiness, the
//     hold-id check, the stock check, the reserved counter, the hold record
//     and its deadline in the expiry set);
//   - impl=pg-update: what most OMSes do, a conditional
//     UPDATE stock SET reserved = reserved + $1 WHERE ... AND available >= $1
//     in PostgreSQL (fsync and synchronous_commit on, as localstack runs
//     it), one autocommitted statement per reservation, nothing else
//     recorded.
//
// skus=1 puts every reservation on one hot row/field (a flash sale);
// skus=10000 spreads them. clients=64 runs 64 goroutines (b.RunParallel
// with SetParallelism); both pools hold up to 64 connections.
//
//	go test -run '^$' -bench BenchmarkReserve -benchtime 2s ./inventory/redisstock/
func BenchmarkReserve(b *testing.B) {
	impls := []struct {
		name  string
		setup func(b *testing.B, skus, clients int) func(ctx context.Context, sku string) error
	}{
		{"redis-lua", setupRedis},
		{"pg-update", setupPG},
	}
	for _, impl := range impls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			for _, skus := range []int{1, 10000} {
				b.Run(fmt.Sprintf("skus=%d", skus), func(b *testing.B) {
					// One server (and table) per impl and SKU count, set up
					// once: a benchmark function with sub-benchmarks runs once,
					// while a leaf runs again for every b.N it tries.
					reserve := impl.setup(b, skus, 64)
					names := make([]string, skus)
					for i := range names {
						names[i] = fmt.Sprintf("sku-%05d", i)
					}
					for _, clients := range []int{1, 64} {
						b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
							benchReserve(b, reserve, names, clients)
						})
					}
				})
			}
		})
	}
}

func benchReserve(b *testing.B, reserve func(ctx context.Context, sku string) error, names []string, clients int) {
	ctx := context.Background()
	var seq atomic.Uint64
	n := uint64(len(names))
	b.ReportAllocs()
	b.ResetTimer()
	if clients == 1 {
		for b.Loop() {
			if err := reserve(ctx, names[seq.Add(1)%n]); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		procs := runtime.GOMAXPROCS(0)
		b.SetParallelism((clients + procs - 1) / procs)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := reserve(ctx, names[seq.Add(1)%n]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reservations/s")
}

// benchSeq numbers holds across every run of the benchmark (b.Run calls the
// function again with a larger b.N on the same store).
var benchSeq atomic.Uint64

func setupRedis(b *testing.B, skus, clients int) func(ctx context.Context, sku string) error {
	b.Helper()
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: stacktest.NewRedis(b).Addr(), PoolSize: max(clients, 10)})
	b.Cleanup(func() { _ = rdb.Close() })
	s := newStore(b, rdb, redisstock.Config{})
	rows := make([]inventory.StockRow, skus)
	for i := range rows {
		rows[i] = inventory.StockRow{Node: "n1", SKU: fmt.Sprintf("sku-%05d", i), OnHand: 1 << 40}
	}
	if err := s.RestoreNode(ctx, "n1", "", rows, nil, nil); err != nil {
		b.Fatal(err)
	}
	if err := s.MarkReady(ctx, "n1"); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Minute)
	return func(ctx context.Context, sku string) error {
		return s.Reserve(ctx, inventory.Hold{
			ID: fmt.Sprint("b-", benchSeq.Add(1)), Node: "n1", Deadline: deadline,
			Lines: []inventory.Line{{SKU: sku, Qty: 1}},
		})
	}
}

func setupPG(b *testing.B, skus, clients int) func(ctx context.Context, sku string) error {
	b.Helper()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(stacktest.Database(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = int32(max(clients, 4))
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `CREATE TABLE stock (
		node text NOT NULL, sku text NOT NULL,
		on_hand bigint NOT NULL, reserved bigint NOT NULL DEFAULT 0, safety bigint NOT NULL DEFAULT 0,
		PRIMARY KEY (node, sku))`); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO stock (node, sku, on_hand)
		SELECT 'n1', 'sku-' || lpad(i::text, 5, '0'), 1::bigint << 40 FROM generate_series(0, $1::int - 1) AS i`, skus); err != nil {
		b.Fatal(err)
	}
	return func(ctx context.Context, sku string) error {
		tag, err := pool.Exec(ctx, `UPDATE stock SET reserved = reserved + $1
			WHERE node = $2 AND sku = $3 AND on_hand - reserved - safety >= $1`, int64(1), "n1", sku)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("pg-update: %s: %w", sku, inventory.ErrInsufficient)
		}
		return nil
	}
}
