package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"
)

// TopicShipments is the topic of shipment requests to warehouses (the v1 API).
const TopicShipments = "oms.shipments"

// StallTimeout bounds the wait for the next message of a partition that
// has not reached its high-water mark yet.
var StallTimeout = 15 * time.Second

// ReadTopic reads every partition of topic from its first offset up to the
// high-water mark taken when it starts, and calls fn for each message (from
// one goroutine per partition: fn must be safe for concurrent use). It
// uses no consumer group, so it commits nothing and disturbs no consumer.
// Messages produced after the start are not waited for.
func ReadTopic(ctx context.Context, brokers []string, topic string, fn func(kafka.Message) error) error {
	if len(brokers) == 0 {
		return errors.New("loadtest: no Kafka brokers")
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return fmt.Errorf("loadtest: topic %s: %w", topic, err)
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return fmt.Errorf("loadtest: topic %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
		}
	}
	if len(parts) == 0 {
		return fmt.Errorf("loadtest: topic %s: no partitions", topic)
	}
	reqs := make([]kafka.OffsetRequest, 0, 2*len(parts))
	for _, p := range parts {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return fmt.Errorf("loadtest: topic %s: offsets: %w", topic, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return fmt.Errorf("loadtest: topic %s partition %d: %w", topic, po.Partition, po.Error)
		}
		if po.LastOffset <= po.FirstOffset {
			continue // empty
		}
		g.Go(func() error {
			r := kafka.NewReader(kafka.ReaderConfig{
				Brokers:   brokers,
				Topic:     topic,
				Partition: po.Partition,
				MinBytes:  1,
				MaxBytes:  16 << 20,
				MaxWait:   250 * time.Millisecond,
			})
			defer r.Close()
			if err := r.SetOffset(po.FirstOffset); err != nil {
				return err
			}
			for next := po.FirstOffset; ; {
				// A partition that stops short of its high-water mark (a
				// transaction marker, records deleted meanwhile) must not
				// hang the audit.
				rctx, cancel := context.WithTimeout(gctx, StallTimeout)
				m, err := r.ReadMessage(rctx)
				cancel()
				if err != nil {
					return fmt.Errorf("loadtest: topic %s partition %d: at offset %d of [%d, %d): %w",
						topic, po.Partition, next, po.FirstOffset, po.LastOffset, err)
				}
				next = m.Offset + 1
				if err := fn(m); err != nil {
					return err
				}
				if m.Offset >= po.LastOffset-1 {
					return nil
				}
			}
		})
	}
	return g.Wait()
}

// ReadShipmentEvents reads topic (oms.shipments) to its current end and
// decodes its events. A message that is not JSON is an error: the contract
// says every value is.
func ReadShipmentEvents(ctx context.Context, brokers []string, topic string) ([]ShipmentEvent, error) {
	if topic == "" {
		topic = TopicShipments
	}
	var (
		mu  sync.Mutex
		out []ShipmentEvent
	)
	err := ReadTopic(ctx, brokers, topic, func(m kafka.Message) error {
		var e ShipmentEvent
		if err := json.Unmarshal(m.Value, &e); err != nil {
			return fmt.Errorf("loadtest: topic %s partition %d offset %d: %w", topic, m.Partition, m.Offset, err)
		}
		mu.Lock()
		out = append(out, e)
		mu.Unlock()
		return nil
	})
	return out, err
}
