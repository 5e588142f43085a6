package wmsevents_test

import (
	"context"
	"strings"
	"sync/atomic"
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

// readTopic reads every partition of topic to its end (no group).
func readTopic(t *testing.T, brokers []string, topic string) []kafka.Message {
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
	var out []kafka.Message
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
			out = append(out, m)
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	return out
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, _ := reg.Gather()
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

func TestDecodeIsStrict(t *testing.T) {
	sid := uuid.NewString()
	good := `{"event_id":"e1","type":"shipment.shipped","shipment_id":"` + sid + `","tracking_number":"1Z"}`
	if ev, err := wmsevents.Decode([]byte(good), 0); err != nil || ev.ShipmentID != sid || ev.TrackingNumber != "1Z" {
		t.Fatalf("good event: got %+v, %v", ev, err)
	}
	for name, v := range map[string]string{
		"not json":      `not json`,
		"unknown field": `{"event_id":"e1","type":"shipment.shipped","shipment_id":"` + sid + `","extra":1}`,
		"wrong type":    `{"event_id":"e1","type":7,"shipment_id":"` + sid + `"}`,
		"invalid utf-8": `{"event_id":"e1` + "\xff" + `","type":"shipment.shipped","shipment_id":"` + sid + `"}`,
		"nul":           `{"event_id":"e1","type":"shipment.shipped","shipment_id":"` + sid + `","reason":"a\u0000b"}`,
		"trailing data": good + `{}`,
		"null":          `null`,
		"missing type":  `{"event_id":"e1","shipment_id":"` + sid + `"}`,
		"unknown type":  `{"event_id":"e1","type":"shipment.teleported","shipment_id":"` + sid + `"}`,
		"bad shipment":  `{"event_id":"e1","type":"shipment.shipped","shipment_id":"S-1"}`,
		"long tracking": `{"event_id":"e1","type":"shipment.shipped","shipment_id":"` + sid + `","tracking_number":"` + strings.Repeat("9", 129) + `"}`,
		"too large":     `{"event_id":"e1","type":"shipment.shipped","shipment_id":"` + sid + `","reason":"` + strings.Repeat("r", 70<<10) + `"}`,
	} {
		if _, err := wmsevents.Decode([]byte(v), 64<<10); err == nil {
			t.Errorf("%s: decoded, want an error", name)
		}
	}
}

// Bad events ahead of good ones on one shipment, one worker and a small
// in-flight window: every bad one goes to the dead-letter topic, with its
// key and value and why and whence, without reaching the pipeline; the
// good ones behind them are applied; everything is committed.
func TestBadEventsAreDeadLetteredAndTheRestFlows(t *testing.T) {
	brokers := stacktest.NewKafka(t).Brokers()
	sid := uuid.NewString()
	bad := []string{
		`not json`,
		`{"event_id":"x1","type":"shipment.shipped","shipment_id":"` + sid + `","extra":1}`,
		`{"event_id":"x2","type":7,"shipment_id":"` + sid + `"}`,
		`{"event_id":"x3` + "\xff" + `","type":"shipment.shipped","shipment_id":"` + sid + `"}`,
		`{"event_id":"x4","type":"shipment.shipped","shipment_id":"` + sid + `","reason":"a\u0000b"}`,
		`{"event_id":"x5","shipment_id":"` + sid + `"}`,
		`{"event_id":"x6","type":"shipment.shipped","shipment_id":"S-1"}`,
		`{"event_id":"x7","type":"shipment.shipped","shipment_id":"` + sid + `","tracking_number":"` + strings.Repeat("9", 129) + `"}`,
	}
	var msgs []kafka.Message
	for _, v := range bad {
		msgs = append(msgs, kafka.Message{Key: []byte(sid), Value: []byte(v)})
	}
	for i := range 20 {
		msgs = append(msgs, event("good-"+string(rune('a'+i)), sid))
	}
	produce(t, brokers, msgs...)
	rec := &recorder{script: map[string][]error{}}
	reg := prometheus.NewRegistry()
	c, err := wmsevents.New(wmsevents.Config{Brokers: brokers, GroupID: "g-dlq", Workers: 1, MaxInFlight: 4,
		SessionTimeout: 2 * time.Second, Registerer: reg}, rec)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, c)
	waitFor(t, "every good event applied", func() bool { return metric(t, reg, "omsd_wms_events_total", "applied") == 20 })
	waitFor(t, "every bad event dead-lettered", func() bool { return counter(t, reg, "omsd_wmsevents_dead_lettered_total") == float64(len(bad)) })
	stop()
	rec.mu.Lock()
	for _, ev := range rec.calls {
		if !strings.HasPrefix(ev.EventID, "good-") {
			t.Errorf("event %q reached the pipeline, want it dead-lettered", ev.EventID)
		}
	}
	rec.mu.Unlock()

	dlq := readTopic(t, brokers, wmsevents.DeadLetterTopic)
	if len(dlq) != len(bad) {
		t.Fatalf("got %d dead letters, want %d", len(dlq), len(bad))
	}
	values := map[string]bool{}
	offsets := map[string]bool{}
	for _, m := range dlq {
		values[string(m.Value)] = true
		if string(m.Key) != sid {
			t.Errorf("dead letter key %q, want the original %q", m.Key, sid)
		}
		for _, h := range []string{kafkabus.HeaderDLQReason, kafkabus.HeaderDLQError, kafkabus.HeaderDLQPartition, kafkabus.HeaderDLQTime} {
			if v, ok := kafkabus.Header(m, h); !ok || v == "" {
				t.Errorf("dead letter without header %s", h)
			}
		}
		if v, _ := kafkabus.Header(m, kafkabus.HeaderDLQTopic); v != oms.TopicWMSEvents {
			t.Errorf("source topic header %q, want %s", v, oms.TopicWMSEvents)
		}
		o, _ := kafkabus.Header(m, kafkabus.HeaderDLQOffset)
		offsets[o] = true
	}
	for _, v := range bad {
		if !values[v] {
			t.Errorf("value %.40q not dead-lettered as it was", v)
		}
	}
	if len(offsets) != len(bad) {
		t.Errorf("got %d distinct source offsets, want %d", len(offsets), len(bad))
	}

	// Committed: a new member of the group sees only what comes next.
	rec2 := &recorder{script: map[string][]error{}}
	reg2 := prometheus.NewRegistry()
	c2, err := wmsevents.New(wmsevents.Config{Brokers: brokers, GroupID: "g-dlq", SessionTimeout: 2 * time.Second, Registerer: reg2}, rec2)
	if err != nil {
		t.Fatal(err)
	}
	stop2 := start(t, c2)
	defer stop2()
	produce(t, brokers, event("sentinel", sid))
	waitFor(t, "the sentinel applied", func() bool { return rec2.count("sentinel") == 1 })
	if n := counter(t, reg2, "omsd_wmsevents_dead_lettered_total"); n != 0 {
		t.Errorf("the new member dead-lettered %v events again, want 0", n)
	}
}

// gated fails every event with a transient error while closed.
type gated struct {
	recorder
	open atomic.Bool
}

func (g *gated) ApplyWMSEvent(ctx context.Context, ev oms.WMSEvent) (*oms.Order, error) {
	if !g.open.Load() {
		return nil, oms.Errorf(oms.KindUnavailable, "unavailable", "database down")
	}
	return g.recorder.ApplyWMSEvent(ctx, ev)
}

// A transient failure is retried, visibly (a gauge of events waiting), and
// never dead-lettered.
func TestTransientFailuresAreRetriedVisiblyNotDeadLettered(t *testing.T) {
	brokers := stacktest.NewKafka(t).Brokers()
	sid := uuid.NewString()
	produce(t, brokers, event("t1", sid))
	g := &gated{recorder: recorder{script: map[string][]error{}}}
	reg := prometheus.NewRegistry()
	c, err := wmsevents.New(wmsevents.Config{Brokers: brokers, GroupID: "g-t", MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		SessionTimeout: 2 * time.Second, Registerer: reg}, g)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, c)
	defer stop()
	waitFor(t, "the event seen waiting for a retry", func() bool {
		return counter(t, reg, "omsd_wmsevents_retrying_events") == 1 && metric(t, reg, "omsd_wms_events_total", "retried") >= 3
	})
	g.open.Store(true)
	waitFor(t, "the event applied", func() bool { return g.count("t1") == 1 })
	waitFor(t, "nothing waiting", func() bool { return counter(t, reg, "omsd_wmsevents_retrying_events") == 0 })
	if n := counter(t, reg, "omsd_wmsevents_dead_lettered_total"); n != 0 {
		t.Errorf("got %v dead letters, want none for a transient failure", n)
	}
}
