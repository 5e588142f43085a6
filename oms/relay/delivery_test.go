package relay_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/omsd/omsd/deploy/localstack/stacktest"
	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/pgstore"
	"github.com/omsd/omsd/oms/relay"
)

// insertRow writes one outbox row with the given created_at (the clock of
// whichever instance wrote it) and returns its id.
func insertRow(t *testing.T, s *pgstore.Store, topic, key string, seq int64, payload string, at time.Time) string {
	t.Helper()
	id := uuid.NewString()
	if payload == "" {
		payload = fmt.Sprintf(`{"event_id":%q,"seq":%d}`, id, seq)
	}
	if _, err := s.Pool().Exec(context.Background(), `INSERT INTO outbox (id, topic, msg_key, seq, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		id, topic, key, seq, payload, at); err != nil {
		t.Fatal(err)
	}
	return id
}

func sent(t *testing.T, s *pgstore.Store, id string) bool {
	t.Helper()
	var ok bool
	if err := s.Pool().QueryRow(context.Background(), `SELECT sent_at IS NOT NULL FROM outbox WHERE id = $1`, id).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// waitSent waits up to within for the row to be published and marked.
func waitSent(t *testing.T, s *pgstore.Store, id string, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !sent(t, s, id) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not published %v after its commit", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runRelay(t *testing.T, cfg relay.Config, s *pgstore.Store, brokers []string) (stop func()) {
	t.Helper()
	rl, err := relay.New(cfg, s, newWriter(t, brokers))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rl.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}
}

// No committed row waits for the 30 s sweep: not one whose created_at is
// far behind everything else (an instance whose clock is late), and not
// one whose transaction committed long after it began (its enqueued_at,
// now() of the transaction, is behind the relay's position by then).
func TestARowBehindTheRelaysPositionIsPublishedWithinSeconds(t *testing.T) {
	s := openStore(t)
	brokers := stacktest.NewKafka(t).Brokers()
	stop := runRelay(t, relay.Config{}, s, brokers)
	defer stop()
	now := time.Now()
	first := insertRow(t, s, oms.TopicOrders, "k1", 1, "", now)
	waitSent(t, s, first, 10*time.Second, "the first row")

	// A clock an hour late.
	late := insertRow(t, s, oms.TopicOrders, "k2", 1, "", now.Add(-time.Hour))
	waitSent(t, s, late, 3*time.Second, "a row with created_at an hour old")

	// A transaction slower than a few seconds: rows committed meanwhile
	// move the relay past it.
	ctx := context.Background()
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	slow := uuid.NewString()
	if _, err := tx.Exec(ctx, `INSERT INTO outbox (id, topic, msg_key, seq, payload, created_at) VALUES ($1, $2, 'k3', 1, '{}', $3)`,
		slow, oms.TopicOrders, time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	for i := range 5 {
		id := insertRow(t, s, oms.TopicOrders, fmt.Sprintf("m%d", i), 1, "", time.Now())
		waitSent(t, s, id, 10*time.Second, "a row committed during the slow transaction")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitSent(t, s, slow, 3*time.Second, "the row of a transaction that took 3 s")
}

// Each key's events reach Kafka in sequence (version) order, whatever the
// created_at of the instances that wrote them and the order they were
// enqueued in, with several relays at once.
func TestEventsOfOneKeyArePublishedInSequenceOrderWhateverTheClocks(t *testing.T) {
	s := openStore(t)
	brokers := stacktest.NewKafka(t).Brokers()
	keys := []string{"o1", "o2", "o3"}
	const n = 30
	type row struct {
		key string
		seq int
	}
	var rows []row
	for _, k := range keys {
		for i := range n {
			rows = append(rows, row{k, i})
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	rnd.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	want := map[string][]string{}
	ids := map[string][]string{}
	for _, k := range keys {
		ids[k] = make([]string, n)
	}
	base := time.Now().UTC()
	for _, r := range rows {
		// Clocks up to a minute apart, in both directions.
		at := base.Add(time.Duration(rnd.IntN(120)-60) * time.Second)
		ids[r.key][r.seq] = insertRow(t, s, oms.TopicOrders, r.key, int64(r.seq+1), "", at)
	}
	for _, k := range keys {
		want[k] = ids[k]
	}
	var stops []func()
	for range 2 {
		stops = append(stops, runRelay(t, relay.Config{Batch: 4, Lease: 5 * time.Second}, s, brokers))
	}
	waitDrained(t, s)
	for _, stop := range stops {
		stop()
	}
	got, _ := readAll(t, brokers, oms.TopicOrders)
	for _, k := range keys {
		if order := firstSeen(got[k]); fmt.Sprint(order) != fmt.Sprint(want[k]) {
			t.Errorf("key %s: got %d events not in sequence order", k, len(order))
		}
	}
}

// A row the broker refuses for good (too large for the topic) and one it
// refuses every time (a topic that does not exist) are set aside as dead
// and counted; everything else is published, each key in order, and the
// later rows of a dead row's key go on.
func TestRowsTheBrokerRefusesAreSetAsideAndTheRestIsPublished(t *testing.T) {
	s := openStore(t)
	brokers := stacktest.NewKafka(t).Brokers()
	now := time.Now()
	a1 := insertRow(t, s, oms.TopicOrders, "A", 1, "", now)
	big := insertRow(t, s, oms.TopicOrders, "A", 2, `{"pad":"`+strings.Repeat("x", 1500<<10)+`"}`, now)
	a3 := insertRow(t, s, oms.TopicOrders, "A", 3, "", now)
	lost := insertRow(t, s, "oms.no-such-topic", "B", 1, "", now)
	want := addEvents(t, s, []string{"k1", "k2", "k3"}, 10)
	reg := prometheus.NewRegistry()
	stop := runRelay(t, relay.Config{Registerer: reg, MaxAttempts: 3, RetryBase: 10 * time.Millisecond, LagEvery: 50 * time.Millisecond}, s, brokers)
	waitDrained(t, s)
	deadline := time.Now().Add(10 * time.Second)
	for gathered(t, reg, "omsd_outbox_dead_rows") != 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	stop()

	if n := gathered(t, reg, "omsd_outbox_dead_lettered_total"); n != 2 {
		t.Errorf("got %v rows dead-lettered, want 2", n)
	}
	if n := gathered(t, reg, "omsd_outbox_dead_rows"); n != 2 {
		t.Errorf("got %v dead rows in the gauge, want 2", n)
	}
	if n := gathered(t, reg, "omsd_outbox_refused_total"); n != 4 {
		t.Errorf("got %v refusals, want 4 (the large row once, the lost topic three times)", n)
	}
	dead, err := s.DeadOutbox(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]pgstore.DeadOutboxRow{}
	for _, d := range dead {
		byID[d.ID] = d
	}
	if d, ok := byID[big]; !ok || d.Attempts != 1 || d.Error == "" {
		t.Errorf("large row: got %+v, want dead after 1 attempt with its error", d)
	}
	if d, ok := byID[lost]; !ok || d.Attempts != 3 || d.Error == "" {
		t.Errorf("unknown topic: got %+v, want dead after 3 attempts with its error", d)
	}
	got, messages := readAll(t, brokers, oms.TopicOrders)
	if messages != 32 {
		t.Errorf("got %d messages, want 32 (30 + a1 + a3)", messages)
	}
	if fmt.Sprint(firstSeen(got["A"])) != fmt.Sprint([]string{a1, a3}) {
		t.Errorf("key A: got %v, want [a1 a3]: the dead row blocks nothing", got["A"])
	}
	for k, ids := range want {
		if fmt.Sprint(firstSeen(got[k])) != fmt.Sprint(ids) {
			t.Errorf("key %s: got other ids or order than the outbox's", k)
		}
	}
}
