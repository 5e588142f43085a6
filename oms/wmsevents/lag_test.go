package wmsevents_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/omsd/omsd/deploy/localstack/stacktest"
	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/wmsevents"
)

// heldApplier applies nothing until open is closed.
type heldApplier struct {
	open chan struct{}
	once sync.Once
}

func (g *heldApplier) ApplyWMSEvent(ctx context.Context, _ oms.WMSEvent) (*oms.Order, error) {
	select {
	case <-g.open:
		return &oms.Order{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func gauges(t *testing.T, reg *prometheus.Registry, name string) (sum float64, n int) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetGauge().GetValue()
				n++
			}
		}
	}
	return sum, n
}

func TestConsumerLagComesFromTheBrokersOffsets(t *testing.T) {
	brokers := stacktest.NewKafka(t).Brokers()
	reg := prometheus.NewRegistry()
	g := &heldApplier{open: make(chan struct{})}
	c, err := wmsevents.New(wmsevents.Config{Brokers: brokers, GroupID: "lag-" + uuid.NewString()[:8], Workers: 2,
		SessionTimeout: 2 * time.Second, LagInterval: 50 * time.Millisecond, Registerer: reg}, g)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, c)
	defer stop()
	defer g.once.Do(func() { close(g.open) })

	lag := func() float64 { v, _ := gauges(t, reg, "omsd_consumer_lag_messages"); return v }
	msgs := func(n int, prefix string) []kafka.Message {
		var out []kafka.Message
		for i := range n {
			out = append(out, event(fmt.Sprintf("%s-%d", prefix, i), uuid.NewString()))
		}
		return out
	}
	// Produced and not consumed (the applier holds every event): the lag
	// counts them, and grows with what comes next.
	produce(t, brokers, msgs(10, "a")...)
	waitFor(t, "a lag of 10", func() bool { return lag() == 10 })
	produce(t, brokers, msgs(20, "b")...)
	waitFor(t, "a lag of 30", func() bool { return lag() == 30 })
	if sum, n := gauges(t, reg, "omsd_consumer_partition_lag_messages"); sum != 30 || n < 1 {
		t.Errorf("got the partitions' lag summing to %v over %d partitions, want 30", sum, n)
	}
	// Consumed and committed: back to 0.
	g.once.Do(func() { close(g.open) })
	waitFor(t, "a lag of 0", func() bool { return lag() == 0 })
	if sum, _ := gauges(t, reg, "omsd_consumer_partition_lag_messages"); sum != 0 {
		t.Errorf("got the partitions' lag summing to %v, want 0", sum)
	}
}
