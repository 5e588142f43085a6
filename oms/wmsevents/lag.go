package wmsevents

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// Lag is read from the broker, not from kafka-go's Reader.Stats().Lag,
// which with a GroupID is not meaningful (it tracks one partition's fetch
// position, not the group's commits): every LagInterval the group's
// committed offsets (OffsetFetch) are compared with the partitions' high
// watermarks (ListOffsets, LastOffset). A partition the group never
// committed on counts from its first offset, where the reader starts.

// PartitionLag is the lag of one partition.
type PartitionLag struct {
	Partition int
	// High is the partition's high watermark (the offset of the next
	// message), Committed the group's committed offset (-1: none).
	High, Committed, Lag int64
}

// BrokerLag asks the broker how far the group is behind the end of the
// topic: the sum over partitions of the high watermark less the committed
// offset, and each partition's part.
func BrokerLag(ctx context.Context, client *kafka.Client, group, topic string) (int64, []PartitionLag, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, nil, fmt.Errorf("wmsevents: lag: metadata: %w", err)
	}
	var ids []int
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return 0, nil, fmt.Errorf("wmsevents: lag: topic %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			ids = append(ids, p.ID)
		}
	}
	if len(ids) == 0 {
		return 0, nil, fmt.Errorf("wmsevents: lag: topic %s has no partitions", topic)
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		return 0, nil, fmt.Errorf("wmsevents: lag: offset fetch: %w", err)
	}
	if committed.Error != nil {
		return 0, nil, fmt.Errorf("wmsevents: lag: offset fetch: %w", committed.Error)
	}
	// One request per kind: a partition may appear only once in a request.
	offsets := func(of func(int) kafka.OffsetRequest) (map[int]kafka.PartitionOffsets, error) {
		reqs := make([]kafka.OffsetRequest, len(ids))
		for i, id := range ids {
			reqs[i] = of(id)
		}
		res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
		if err != nil {
			return nil, fmt.Errorf("wmsevents: lag: list offsets: %w", err)
		}
		out := map[int]kafka.PartitionOffsets{}
		for _, p := range res.Topics[topic] {
			if p.Error != nil {
				return nil, fmt.Errorf("wmsevents: lag: list offsets of partition %d: %w", p.Partition, p.Error)
			}
			out[p.Partition] = p
		}
		return out, nil
	}
	last, err := offsets(kafka.LastOffsetOf)
	if err != nil {
		return 0, nil, err
	}
	first, err := offsets(kafka.FirstOffsetOf)
	if err != nil {
		return 0, nil, err
	}
	done := map[int]int64{}
	for _, p := range committed.Topics[topic] {
		if p.Error != nil {
			return 0, nil, fmt.Errorf("wmsevents: lag: committed offset of partition %d: %w", p.Partition, p.Error)
		}
		done[p.Partition] = p.CommittedOffset
	}
	var total int64
	parts := make([]PartitionLag, 0, len(ids))
	for _, id := range ids {
		high, low := last[id].LastOffset, first[id].FirstOffset
		c, ok := done[id]
		if !ok {
			c = -1
		}
		from := c
		if from < 0 || from < low {
			from = max(low, 0) // the reader starts at the first offset; older ones are gone
		}
		lag := max(high-from, 0)
		total += lag
		parts = append(parts, PartitionLag{Partition: id, High: high, Committed: c, Lag: lag})
	}
	return total, parts, nil
}

// watchLag sets the lag gauges from the broker every LagInterval until ctx
// ends. A failed reading leaves the gauges as they were and is logged once
// until a reading succeeds again.
func (c *Consumer) watchLag(ctx context.Context) {
	client := &kafka.Client{Addr: kafka.TCP(c.cfg.Brokers...), Timeout: 5 * time.Second}
	t := time.NewTicker(c.cfg.LagInterval)
	defer t.Stop()
	failing := false
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		total, parts, err := BrokerLag(rctx, client, c.cfg.GroupID, c.cfg.Topic)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				c.cfg.Logger.Warn("oms.wmsevents: cannot read the consumer lag from the broker", "err", err)
			}
			failing = true
		case err == nil:
			failing = false
			c.lag.WithLabelValues(c.cfg.Topic).Set(float64(total))
			for _, p := range parts {
				c.partitionLag.WithLabelValues(c.cfg.Topic, strconv.Itoa(p.Partition)).Set(float64(p.Lag))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
