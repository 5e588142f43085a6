package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// startBroker starts an in-process Kafka-protocol broker (kfake) with the
// shipments topic on 3 partitions.
func startBroker(tb testing.TB) []string {
	tb.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, TopicShipments))
	if err != nil {
		tb.Fatalf("kfake: %v", err)
	}
	tb.Cleanup(c.Close)
	return c.ListenAddrs()
}

func produce(tb testing.TB, brokers []string, events []ShipmentEvent) {
	tb.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: TopicShipments, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	msgs := make([]kafka.Message, len(events))
	for i, e := range events {
		v, _ := json.Marshal(e)
		msgs[i] = kafka.Message{Key: []byte(e.NodeID), Value: v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		tb.Fatalf("produce: %v", err)
	}
}

func TestReadShipmentEventsReadsEveryPartitionToTheEnd(t *testing.T) {
	brokers := startBroker(t)
	var events []ShipmentEvent
	for i := range 60 {
		events = append(events, ShipmentEvent{EventID: fmt.Sprintf("e%d", i), Type: "shipment.requested",
			ShipmentID: fmt.Sprintf("s%d", i), OrderID: fmt.Sprintf("o%d", i), NodeID: fmt.Sprintf("WH-%d", i%7)})
	}
	// s1 requested again under another event id, s2 redelivered.
	events = append(events,
		ShipmentEvent{EventID: "e1-bis", Type: "shipment.requested", ShipmentID: "s1", OrderID: "o1", NodeID: "WH-1"},
		ShipmentEvent{EventID: "e2", Type: "shipment.requested", ShipmentID: "s2", OrderID: "o2", NodeID: "WH-2"})
	produce(t, brokers, events)

	got, err := ReadShipmentEvents(testContext(t, 20*time.Second), brokers, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(events) {
		t.Fatalf("got %d events, want %d", len(got), len(events))
	}
	var orders []AuditOrder
	for i := range 60 {
		orders = append(orders, AuditOrder{ID: fmt.Sprintf("o%d", i)})
	}
	res := Audit(AuditInput{Orders: orders, Shipments: got, ShipmentsRead: true})
	if res.DuplicateShipments != 1 || res.ShipmentEvents != 62 {
		t.Errorf("got %d duplicates among %d events, want 1 among 62", res.DuplicateShipments, res.ShipmentEvents)
	}
}

func TestReadShipmentEventsOfAnEmptyTopic(t *testing.T) {
	brokers := startBroker(t)
	got, err := ReadShipmentEvents(testContext(t, 10*time.Second), brokers, TopicShipments)
	if err != nil || len(got) != 0 {
		t.Errorf("got %d events, error %v; want none and no error", len(got), err)
	}
	if _, err := ReadShipmentEvents(testContext(t, 10*time.Second), nil, TopicShipments); err == nil {
		t.Error("got no error without brokers")
	}
}
