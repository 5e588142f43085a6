package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/omsd/omsd/deploy/localstack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func TestWriterDefaultsAreSafe(t *testing.T) {
	w, err := NewWriter(WriterConfig{Brokers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.RequiredAcks != kafka.RequireAll {
		t.Errorf("got RequiredAcks %v, want RequireAll (kafka-go defaults to none)", w.RequiredAcks)
	}
	if _, ok := w.Balancer.(*kafka.Hash); !ok {
		t.Errorf("got balancer %T, want the key hash (order per key)", w.Balancer)
	}
	if w.BatchTimeout > 10*time.Millisecond {
		t.Errorf("got batch timeout %v, want milliseconds (kafka-go defaults to 1s)", w.BatchTimeout)
	}
	if _, err := NewWriter(WriterConfig{}); err == nil {
		t.Error("got a writer without brokers, want an error")
	}
	if _, err := NewReader(ReaderConfig{Brokers: []string{"x"}}); err == nil {
		t.Error("got a reader without group and topic, want an error")
	}
}

// TestConsumeCommitsOnlyWhatWasHandled writes keyed messages, consumes them
// in a group with a handler that fails on one message: Consume stops
// without committing it, and a second consumer of the group gets it again.
func TestConsumeCommitsOnlyWhatWasHandled(t *testing.T) {
	k := stacktest.NewKafka(t)
	brokers := k.Brokers()
	topic := "oms.orders"
	w, err := NewWriter(WriterConfig{Brokers: brokers, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var msgs []kafka.Message
	for i := range 20 {
		msgs = append(msgs, kafka.Message{Key: []byte("order-1"), Value: []byte(fmt.Sprint(i))})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	boom := errors.New("boom")
	var seen []string
	r, err := NewReader(ReaderConfig{Brokers: brokers, GroupID: "kafkabus-test", Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	err = Consume(ctx, r, func(_ context.Context, m kafka.Message) error {
		if string(m.Value) == "10" {
			return boom
		}
		seen = append(seen, string(m.Value))
		return nil
	}, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the handler's error", err)
	}
	if len(seen) != 10 || seen[0] != "0" || seen[9] != "9" {
		t.Fatalf("got %v, want 0..9 in key order", seen)
	}
	// A new member of the group resumes at the message that failed.
	r2, err := NewReader(ReaderConfig{Brokers: brokers, GroupID: "kafkabus-test", Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	m, err := r2.FetchMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r2.Close()
	if string(m.Value) != "10" {
		t.Errorf("got %q after a failed handler, want the uncommitted message 10 again", m.Value)
	}
}

func TestDeadLetterKeepsTheMessageAndSaysWhyAndWhence(t *testing.T) {
	m := kafka.Message{Topic: "wms.events", Partition: 3, Offset: 42, Key: []byte("k"), Value: []byte("\xff not json"),
		Headers: []kafka.Header{{Key: "trace", Value: []byte("t1")}, {Key: "dlq.reason", Value: []byte("old")}}}
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	d := DeadLetter(m, "malformed", errors.New(strings.Repeat("é", 600)+"\xff"), at)
	if string(d.Key) != "k" || string(d.Value) != "\xff not json" || d.Topic != "" {
		t.Fatalf("got key %q value %q topic %q, want the original key and value, the writer's topic", d.Key, d.Value, d.Topic)
	}
	for k, want := range map[string]string{
		"trace": "t1", HeaderDLQReason: "malformed", HeaderDLQTopic: "wms.events",
		HeaderDLQPartition: "3", HeaderDLQOffset: "42", HeaderDLQTime: "2030-01-02T02:04:05Z",
	} {
		if got, ok := Header(d, k); !ok || got != want {
			t.Errorf("header %s: got %q, want %q", k, got, want)
		}
	}
	n := 0
	for _, h := range d.Headers {
		if h.Key == HeaderDLQReason {
			n++
		}
	}
	if n != 1 {
		t.Errorf("got %d reason headers, want 1 (an earlier one dropped)", n)
	}
	e, _ := Header(d, HeaderDLQError)
	if len(e) > maxDLQError || !utf8.ValidString(e) || !strings.HasPrefix(e, "éé") {
		t.Errorf("error header: %d bytes, valid UTF-8 %v; want at most %d bytes of valid UTF-8", len(e), utf8.ValidString(e), maxDLQError)
	}
}
