package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkIntake measures orders per second through the real HTTP handler
// with real PostgreSQL (fsync on) and Redis, with group commit and with one
// transaction per order, and group commit without customer matching (the
// cost of customers and attribution), in the same run. Buyers come from a
// pool of 20,000 phones, half the orders attributed:
//
//	go test -run '^$' -bench Intake -benchtime 5s ./cmd/omsd/
func BenchmarkIntake(b *testing.B) {
	for _, mode := range []struct {
		name string
		opt  serverOpt
	}{
		{"commit=group", func(c *config) { c.IntakeShards = 8; c.BatchWindow = 0; c.BatchMax = 128 }},
		{"commit=group/customers=off", func(c *config) { c.IntakeShards = 8; c.BatchWindow = 0; c.BatchMax = 128; c.CustomerMatch = false }},
		{"commit=group/window=2ms", func(c *config) { c.IntakeShards = 8; c.BatchWindow = 2 * time.Millisecond; c.BatchMax = 128 }},
		{"commit=per-order", func(c *config) { c.IntakeShards = 64; c.BatchWindow = time.Microsecond; c.BatchMax = 1 }},
	} {
		b.Run(mode.name+"/clients=64", func(b *testing.B) {
			// 64 closed-loop clients measure the commit path, not admission:
			// the limit never goes below them.
			s := newTestServer(b, mode.opt, func(c *config) { c.ChannelRate = 0; c.PGMaxConns = 80; c.MinInFlight = 64 })
			key := seedBench(b, s, 10, 200)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 128}}
			var seq atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(32) // 64 clients on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(uint64(seq.Add(1000000)), 7))
				for pb.Next() {
					n := seq.Add(1)
					nl := 1 + r.IntN(3)
					var ls []map[string]any
					for j := range nl {
						ls = append(ls, line(fmt.Sprintf("SKU-%04d", (r.IntN(200)+j*7)%200), 1))
					}
					ob := orderBody(fmt.Sprintf("BENCH-%d", n), ls...)
					buyer := r.IntN(20000)
					ob["customer"] = map[string]any{"id": fmt.Sprintf("B%d", buyer), "phone": fmt.Sprintf("+86137%08d", buyer)}
					if n%2 == 0 {
						ob["attribution"] = map[string]any{"associate": fmt.Sprintf("A%d", buyer%300)}
					}
					body, _ := json.Marshal(ob)
					req, _ := http.NewRequest("POST", s.URL+"/v1/orders", bytes.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+key)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					var sink [512]byte
					for {
						if _, err := resp.Body.Read(sink[:]); err != nil {
							break
						}
					}
					resp.Body.Close()
					if resp.StatusCode != 201 {
						b.Errorf("got %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "orders/s")
			if mfs, err := s.app.reg.Gather(); err == nil {
				for _, mf := range mfs {
					unit := map[string]string{"omsd_customer_lookup_batch_size": "orders/lookup", "omsd_intake_batch_size": "orders/commit"}[mf.GetName()]
					if h := mf.GetMetric(); unit != "" && len(h) > 0 && h[0].GetHistogram().GetSampleCount() > 0 {
						hist := h[0].GetHistogram()
						b.ReportMetric(hist.GetSampleSum()/float64(hist.GetSampleCount()), unit)
					}
				}
			}
		})
	}
}

// seedBench creates a channel, nodes across regions and deep stock.
func seedBench(b testing.TB, s *testServer, nodes, skus int) string {
	key := s.channel("bench", nil)
	for i := range nodes {
		s.node(fmt.Sprintf("WH-%02d", i), "warehouse", 30+float64(i)*0.5, 120+float64(i)*0.3, nil, i)
	}
	for i := range nodes {
		for j := range skus {
			s.stock(fmt.Sprintf("WH-%02d", i), fmt.Sprintf("SKU-%04d", j), 10_000_000)
		}
	}
	return key
}
