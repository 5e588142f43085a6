package relay_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/omsd/omsd/deploy/localstack/stacktest"
	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/kafkabus"
	"github.com/omsd/omsd/oms/pgstore"
	"github.com/omsd/omsd/oms/relay"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func openStore(t *testing.T) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), pgstore.Config{URL: stacktest.Database(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// addEvents writes n events per key to the outbox, in (created_at, seq)
// order per key, interleaving the keys; it returns the ids per key in
// order.
func addEvents(t *testing.T, s *pgstore.Store, keys []string, n int) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	t0 := time.Now().UTC().Add(-time.Minute)
	for i := range n {
		for j, k := range keys {
			id := uuid.NewString()
			at := t0.Add(time.Duration(i*len(keys)+j) * time.Microsecond)
			if _, err := s.Pool().Exec(context.Background(), `INSERT INTO outbox (id, topic, msg_key, seq, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
				id, oms.TopicOrders, k, i, fmt.Sprintf(`{"event_id":%q,"seq":%d}`, id, i), at); err != nil {
				t.Fatal(err)
			}
			out[k] = append(out[k], id)
		}
	}
	return out
}

// readAll reads every partition of topic to its end (no consumer group)
// and returns the event ids per key in partition order, and the number of
// messages.
func readAll(t *testing.T, brokers []string, topic string) (perKey map[string][]string, messages int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	perKey = map[string][]string{}
	for _, p := range parts {
		lc, err := kafka.DialLeader(ctx, "tcp", brokers[0], topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		last, err := lc.ReadLastOffset()
		lc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p.ID, MaxWait: 100 * time.Millisecond})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, p.ID, err)
			}
			id := ""
			for _, h := range m.Headers {
				if h.Key == "event_id" {
					id = string(h.Value)
				}
			}
			perKey[string(m.Key)] = append(perKey[string(m.Key)], id)
			messages++
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	return perKey, messages
}

func waitDrained(t *testing.T, s *pgstore.Store) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, unsent, err := s.OldestUnsentOutbox(context.Background())
		if err == nil && !unsent {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the outbox was not drained")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newWriter(t *testing.T, brokers []string) *kafka.Writer {
	t.Helper()
	w, err := kafkabus.NewWriter(kafkabus.WriterConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// firstSeen keeps the first occurrence of each id, in order.
func firstSeen(ids []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

func TestSeveralRelaysPublishEveryEventOnceInKeyOrder(t *testing.T) {
	s := openStore(t)
	brokers := stacktest.NewKafka(t).Brokers()
	keys := []string{"k1", "k2", "k3", "k4", "k5"}
	want := addEvents(t, s, keys, 60)
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 3 {
		var r prometheus.Registerer
		if i == 0 {
			r = reg
		}
		rl, err := relay.New(relay.Config{Batch: 7, Registerer: r, Lease: 5 * time.Second}, s, newWriter(t, brokers))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rl.Run(ctx); err != nil {
				t.Errorf("relay: %v", err)
			}
		}()
	}
	waitDrained(t, s)
	cancel()
	wg.Wait()
	got, messages := readAll(t, brokers, oms.TopicOrders)
	if messages != 300 {
		t.Errorf("got %d messages, want 300 (no crash, no republication)", messages)
	}
	for _, k := range keys {
		if order := firstSeen(got[k]); fmt.Sprint(order) != fmt.Sprint(want[k]) {
			t.Errorf("key %s: got %d events out of order, want the outbox order", k, len(order))
		}
	}
	if n := gathered(t, reg, "omsd_outbox_published_total"); n <= 0 {
		t.Errorf("got %v published by the first relay, want some", n)
	}
}

// gathered sums the samples of a metric family (counter or gauge).
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func TestARelayKilledBetweenPublishAndMarkIsRepublishedUnderTheSameIDs(t *testing.T) {
	s := openStore(t)
	brokers := stacktest.NewKafka(t).Brokers()
	want := addEvents(t, s, []string{"a", "b"}, 10)
	killed := errors.New("killed")
	r1, err := relay.New(relay.Config{Lease: 300 * time.Millisecond, BeforeMark: func(context.Context, []oms.OutboxEvent) error { return killed }},
		s, newWriter(t, brokers))
	if err != nil {
		t.Fatal(err)
	}
	if err := r1.Run(context.Background()); !errors.Is(err, killed) {
		t.Fatalf("got %v, want the injected death", err)
	}
	// The rows are published but not marked. A new relay (lag sampled
	// once, at its start) publishes them again after the lease.
	reg := prometheus.NewRegistry()
	r2, err := relay.New(relay.Config{Lease: 300 * time.Millisecond, Registerer: reg, LagEvery: time.Hour}, s, newWriter(t, brokers))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r2.Run(ctx) }()
	waitDrained(t, s)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The rows' created_at is a minute old, but they were enqueued (by the
	// database's clock) moments ago: the lag is measured by the latter.
	if lag := gathered(t, reg, "omsd_outbox_lag_seconds"); lag <= 0 || lag >= 59 {
		t.Errorf("got lag %v s at the second relay's start, want the time since the oldest pending row was enqueued (above 0, well under the 60 s of its created_at)", lag)
	}
	if n := gathered(t, reg, "omsd_outbox_published_total"); n != 20 {
		t.Errorf("got %v published by the second relay, want 20", n)
	}
	got, messages := readAll(t, brokers, oms.TopicOrders)
	if messages != 40 {
		t.Errorf("got %d messages, want 40: every event twice (published, killed, republished)", messages)
	}
	for k, ids := range want {
		if fmt.Sprint(firstSeen(got[k])) != fmt.Sprint(ids) {
			t.Errorf("key %s: got other ids or order than the outbox's", k)
		}
	}
}
