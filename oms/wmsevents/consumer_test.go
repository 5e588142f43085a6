package wmsevents_test

import (
	"context"
	"encoding/json"
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
	"github.com/omsd/omsd/oms/wmsevents"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// recorder is a fake applier: per event id, a script of errors to return
// before succeeding; it records every call in order.
type recorder struct {
	mu     sync.Mutex
	calls  []oms.WMSEvent
	script map[string][]error
}

func (r *recorder) ApplyWMSEvent(_ context.Context, ev oms.WMSEvent) (*oms.Order, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, ev)
	if errs := r.script[ev.EventID]; len(errs) > 0 {
		r.script[ev.EventID] = errs[1:]
		return nil, errs[0]
	}
	return &oms.Order{}, nil
}

func (r *recorder) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if c.EventID == id {
			n++
		}
	}
	return n
}

func (r *recorder) byShipment() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]string{}
	for _, c := range r.calls {
		out[c.ShipmentID] = append(out[c.ShipmentID], c.EventID)
	}
	return out
}

func produce(t *testing.T, brokers []string, msgs ...kafka.Message) {
	t.Helper()
	w, err := kafkabus.NewWriter(kafkabus.WriterConfig{Brokers: brokers, Topic: oms.TopicWMSEvents})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

func event(id, shipment string) kafka.Message {
	b, _ := json.Marshal(oms.WMSEvent{EventID: id, Type: oms.WMSAcknowledged, ShipmentID: shipment})
	return kafka.Message{Key: []byte(shipment), Value: b}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s after 30s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func metric(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
	t.Helper()
	fams, _ := reg.Gather()
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

func start(t *testing.T, c *wmsevents.Consumer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consumer: %v", err)
		}
	}
}

func TestConsumerDeadLettersMalformedRetriesTransientAndCommits(t *testing.T) {
	brokers := stacktest.NewKafka(t).Brokers()
	s1, s2, s3, s4 := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	rec := &recorder{script: map[string][]error{
		"transient": {oms.Errorf(oms.KindUnavailable, "unavailable", "db down"), fmt.Errorf("connection reset")},
		"unknown":   {oms.Errorf(oms.KindNotFound, "not-found", "no shipment")},
		"conflict":  {oms.Errorf(oms.KindConflict, "event-conflict", "shipped after cancelled")},
	}}
	// Many events of a few shipments, to check each shipment's order
	// across the workers.
	var msgs []kafka.Message
	msgs = append(msgs,
		kafka.Message{Key: []byte(s1), Value: []byte("not json")},
		kafka.Message{Key: []byte(s1), Value: []byte(`{"event_id":"","type":"shipment.shipped"}`)},
		event("transient", s1), event("unknown", s2), event("conflict", s3))
	for i := range 40 {
		for _, s := range []string{s1, s2, s3, s4} {
			msgs = append(msgs, event(fmt.Sprintf("%s-%02d", s, i), s))
		}
	}
	produce(t, brokers, msgs...)

	reg := prometheus.NewRegistry()
	c, err := wmsevents.New(wmsevents.Config{Brokers: brokers, GroupID: "g1", Workers: 3, MinBackoff: 10 * time.Millisecond,
		SessionTimeout: 2 * time.Second, Registerer: reg}, rec)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, c)
	waitFor(t, "every event applied", func() bool { return metric(t, reg, "omsd_wms_events_total", "applied") == 161 })
	stop()

	if n := rec.count("transient"); n != 3 {
		t.Errorf("transient event: got %d calls, want 3 (two failures, then applied)", n)
	}
	for _, c := range []struct {
		outcome string
		want    float64
	}{{"malformed", 2}, {"retried", 2}, {"unknown_shipment", 1}, {"rejected", 1}} {
		if got := metric(t, reg, "omsd_wms_events_total", c.outcome); got != c.want {
			t.Errorf("outcome %s: got %v, want %v", c.outcome, got, c.want)
		}
	}
	reasons := map[string]int{}
	for _, m := range readTopic(t, brokers, wmsevents.DeadLetterTopic) {
		r, _ := kafkabus.Header(m, kafkabus.HeaderDLQReason)
		reasons[r]++
	}
	if fmt.Sprint(reasons) != fmt.Sprint(map[string]int{"conflict": 1, "invalid": 1, "malformed": 1, "unknown_shipment": 1}) {
		t.Errorf("dead letters by reason: got %v, want one malformed, invalid, unknown_shipment and conflict each", reasons)
	}
	for s, ids := range rec.byShipment() {
		last := ""
		for _, id := range ids {
			if len(id) > len(s) && id[:len(s)] == s {
				if id < last {
					t.Errorf("shipment %s: %s applied after %s", s, id, last)
				}
				last = id
			}
		}
	}

	// Everything was committed: a new member of the group sees only what
	// comes next.
	rec2 := &recorder{script: map[string][]error{}}
	c2, err := wmsevents.New(wmsevents.Config{Brokers: brokers, GroupID: "g1", SessionTimeout: 2 * time.Second}, rec2)
	if err != nil {
		t.Fatal(err)
	}
	stop2 := start(t, c2)
	defer stop2()
	produce(t, brokers, event("sentinel", s4))
	waitFor(t, "the sentinel applied", func() bool { return rec2.count("sentinel") == 1 })
	rec2.mu.Lock()
	defer rec2.mu.Unlock()
	if len(rec2.calls) != 1 {
		t.Errorf("the new member applied %d events, want only the sentinel", len(rec2.calls))
	}
}

func TestConsumerKilledBeforeCommitGetsTheEventAgain(t *testing.T) {
	brokers := stacktest.NewKafka(t).Brokers()
	s := uuid.NewString()
	produce(t, brokers, event("e1", s), event("e2", s))
	rec := &recorder{script: map[string][]error{}}
	c, err := wmsevents.New(wmsevents.Config{Brokers: brokers, GroupID: "g", SessionTimeout: 2 * time.Second,
		AfterApply: func(m kafka.Message) error {
			var ev oms.WMSEvent
			_ = json.Unmarshal(m.Value, &ev)
			if ev.EventID == "e2" {
				return fmt.Errorf("killed")
			}
			return nil
		}}, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(context.Background()); err == nil || err.Error() != "killed" {
		t.Fatalf("got %v, want the injected death", err)
	}
	c2, err := wmsevents.New(wmsevents.Config{Brokers: brokers, GroupID: "g", SessionTimeout: 2 * time.Second}, rec)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, c2)
	defer stop()
	waitFor(t, "e2 delivered again", func() bool { return rec.count("e2") == 2 })
	if n := rec.count("e1"); n < 1 || n > 2 {
		t.Errorf("e1 was applied %d times, want once or, if its commit had not happened before the death, twice", n)
	}
}
