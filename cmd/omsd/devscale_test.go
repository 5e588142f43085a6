package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/omsd/omsd/loadtest"
)

// TestScaleOutStackUnderFaults runs `omsd dev --instances 3 --redis-cluster
// --kafka-brokers 3`: stack.env must name every instance, the cluster's
// masters and every broker; the broker must describe a 3-broker cluster
// with partition leaders on more than one broker; and a load test spread
// over the three instances, during which one instance is killed, the
// cluster loses every key and the brokers restart, must leave a clean
// audit with every instance having answered orders.
func TestScaleOutStackUnderFaults(t *testing.T) {
	d := startDev(t, "--instances", "3", "--redis-cluster", "--kafka-brokers", "3")
	env := d.env
	urls := strings.Split(env["OMS_API_URLS"], ",")
	if len(urls) != 3 || urls[0] != env["OMS_API_URL"] {
		t.Fatalf("got OMS_API_URLS %q, want three URLs, the first being OMS_API_URL %q", env["OMS_API_URLS"], env["OMS_API_URL"])
	}
	if env["OMS_REDIS_CLUSTER"] != "true" || len(strings.Split(env["OMS_REDIS_URL"], ",")) != 3 {
		t.Errorf("got OMS_REDIS_CLUSTER=%q OMS_REDIS_URL=%q, want true and three masters", env["OMS_REDIS_CLUSTER"], env["OMS_REDIS_URL"])
	}
	brokers := strings.Split(env["OMS_KAFKA_BROKERS"], ",")
	if len(brokers) != 3 {
		t.Fatalf("got OMS_KAFKA_BROKERS %q, want three brokers", env["OMS_KAFKA_BROKERS"])
	}
	conn, err := kafka.Dial("tcp", brokers[1])
	if err != nil {
		t.Fatal(err)
	}
	described, err := conn.Brokers()
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions("oms.orders")
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[int]bool{}
	for _, p := range parts {
		leaders[p.Leader.ID] = true
	}
	if len(described) != 3 || len(leaders) < 2 {
		t.Errorf("the broker describes %d brokers with oms.orders leaders on %d of them, want 3 and at least 2", len(described), len(leaders))
	}

	tg := loadtest.TargetFromEnv(func(k string) string { return env[k] })
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	sc := loadtest.NewClient(tg, loadtest.ClientConfig{Retries: 3})
	seed, err := loadtest.Seed(ctx, sc, loadtest.SeedConfig{SKUs: 200, Nodes: 6, Stock: 300, Prefix: "so"})
	sc.Close()
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	rep, err := loadtest.Execute(ctx, loadtest.Options{
		Target: tg, Seed: seed,
		Run: loadtest.RunConfig{Rate: 60, Duration: 24 * time.Second, Workers: 64,
			Faults: []loadtest.FaultSpec{
				{Kind: loadtest.FaultOMSDKill, Offset: 4 * time.Second},
				{Kind: loadtest.FaultRedisFlush, Offset: 10 * time.Second},
				{Kind: loadtest.FaultBrokerRestart, Offset: 16 * time.Second},
			}},
		Client:       loadtest.ClientConfig{Timeout: 5 * time.Second, Retries: 6, Backoff: 100 * time.Millisecond},
		Settle:       3 * time.Second,
		QuietTimeout: 60 * time.Second,
		Log:          &log,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	var tbl bytes.Buffer
	_ = rep.WriteTable(&tbl)
	_ = rep.WriteJSON(filepath.Join(d.dir, "scale-out.json"))
	t.Logf("scale-out run:\n%s", tbl.String())
	if len(rep.Faults) != 3 {
		t.Errorf("got %d faults carried out, want 3: %+v", len(rep.Faults), rep.Faults)
	}
	for _, f := range rep.Faults {
		if f.Error != "" || !f.Ended {
			t.Errorf("fault %s was not carried out completely: %+v", f.Kind, f)
		}
	}
	if !rep.Passed() {
		if rep.Audit == nil {
			t.Fatalf("the audit could not run: %s", rep.AuditError)
		}
		a := rep.Audit
		t.Errorf("audit FAILED: oversold_units=%d missing_orders=%d duplicate_shipments=%d leaked_units=%d unpaid_shipments=%d gave_up_unheld=%d unreadable=%d unresolved=%d",
			a.OversoldUnits, a.MissingOrders, a.DuplicateShipments, a.LeakedUnits, a.UnpaidShipments, a.GaveUpUnheld, a.OrdersUnreadable, rep.Unresolved)
		for i, f := range a.Findings {
			if i == 10 {
				break
			}
			t.Errorf("finding %s %s: %s", f.Check, f.Key, f.Detail)
		}
	}
	for i, u := range urls {
		if n := acceptedOrders(t, u); n == 0 {
			t.Errorf("instance %d (%s) answered no order with 201", i, u)
		}
	}
	if err := d.stop(t); err != nil {
		t.Errorf("omsd dev: %v", err)
	}
}

// acceptedOrders reads omsd_http_requests_total of POST /v1/orders with
// status 201 from an instance's /metrics (since its last start).
func acceptedOrders(t *testing.T, base string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var n float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "omsd_http_requests_total{") && strings.Contains(line, `route="POST /v1/orders"`) && strings.Contains(line, `status="201"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			n += v
		}
	}
	return n
}
