package wmssim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/omsd/omsd/deploy/localstack/stacktest"
	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/kafkabus"
	"github.com/omsd/omsd/oms/wmssim"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func TestShortPickIsDeterministicAndNearTheShare(t *testing.T) {
	n := 0
	for i := range 10000 {
		id := fmt.Sprintf("ship-%d", i)
		a := wmssim.ShortPicked(7, 0.2, id)
		if a != wmssim.ShortPicked(7, 0.2, id) {
			t.Fatalf("%s: two answers for one seed", id)
		}
		if a {
			n++
		}
		if wmssim.ShortPicked(7, 0, id) || !wmssim.ShortPicked(7, 1, id) {
			t.Fatalf("%s: share 0 picked or share 1 not picked", id)
		}
	}
	if n < 1800 || n > 2200 {
		t.Errorf("got %d of 10000 short-picked at share 0.2, want about 2000", n)
	}
}

// collector reads wms.events with its own group.
type collector struct {
	mu  sync.Mutex
	evs []oms.WMSEvent
}

func (c *collector) run(ctx context.Context, brokers []string) {
	r, err := kafkabus.NewReader(kafkabus.ReaderConfig{Brokers: brokers, GroupID: "collector", Topic: oms.TopicWMSEvents})
	if err != nil {
		return
	}
	defer r.Close()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return
		}
		var ev oms.WMSEvent
		if json.Unmarshal(m.Value, &ev) == nil && (string(m.Key) == ev.ShipmentID || string(m.Key) == ev.ReturnID) {
			c.mu.Lock()
			c.evs = append(c.evs, ev)
			c.mu.Unlock()
		}
	}
}

func (c *collector) of(shipment string, typ oms.EventType) []oms.WMSEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []oms.WMSEvent
	for _, ev := range c.evs {
		if (ev.ShipmentID == shipment || ev.ReturnID == shipment) && (typ == "" || ev.Type == typ) {
			out = append(out, ev)
		}
	}
	return out
}

func request(typ, shipment, node string) kafka.Message {
	b, _ := json.Marshal(oms.ShipmentEvent{EventID: uuid.NewString(), Type: oms.EventType(typ), ShipmentID: shipment, OrderID: uuid.NewString(),
		NodeID: node, Lines: []oms.ShipLine{{SKU: "S", Qty: 1}}})
	return kafka.Message{Key: []byte(node), Value: b}
}

func TestSimulatorAnswersLikeAWarehouse(t *testing.T) {
	brokers := stacktest.NewKafka(t).Brokers()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, cfg := range []wmssim.Config{
		{Nodes: []string{"N1"}, ShipAfter: 400 * time.Millisecond, Group: "sim-n1"},
		{Nodes: []string{"N2"}, ShortPickShare: 1, Group: "sim-n2"},
	} {
		cfg.Brokers = brokers
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := wmssim.Run(ctx, cfg); err != nil {
				t.Errorf("sim: %v", err)
			}
		}()
	}
	col := &collector{}
	wg.Add(1)
	go func() { defer wg.Done(); col.run(ctx, brokers) }()

	w, err := kafkabus.NewWriter(kafkabus.WriterConfig{Brokers: brokers, Topic: oms.TopicShipments})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ship, cancelled, other, short := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	if err := w.WriteMessages(ctx,
		request("shipment.requested", ship, "N1"),
		request("shipment.requested", cancelled, "N1"),
		request("shipment.requested", other, "N9"),
		request("shipment.requested", short, "N2"),
		request("shipment.requested", ship, "N1"), // delivered twice
		request("shipment.cancel_requested", cancelled, "N1"),
	); err != nil {
		t.Fatal(err)
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not %s after 30s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("shipped", func() bool { return len(col.of(ship, oms.WMSShipped)) > 0 })
	if err := w.WriteMessages(ctx, request("shipment.cancel_requested", ship, "N1")); err != nil {
		t.Fatal(err)
	}
	wait("the late cancel refused", func() bool { return len(col.of(ship, oms.WMSCancelRefused)) > 0 })
	wait("the early cancel honoured", func() bool { return len(col.of(cancelled, oms.WMSCancelled)) > 0 })
	wait("the short pick", func() bool { return len(col.of(short, oms.WMSRejected)) > 0 })

	for _, ev := range col.of(ship, "") {
		if ev.EventID != wmssim.EventID(ship, ev.Type) {
			t.Errorf("%s: got event id %s, want the stable id", ev.Type, ev.EventID)
		}
	}
	if acks := col.of(ship, oms.WMSAcknowledged); len(acks) != 2 || acks[0].EventID != acks[1].EventID {
		t.Errorf("got %d acknowledgements of the redelivered request, want 2 under one id", len(acks))
	}
	shipped := col.of(ship, oms.WMSShipped)
	if len(shipped) != 1 || shipped[0].TrackingNumber != wmssim.TrackingNumber(ship) {
		t.Errorf("got %+v, want one ship report with the tracking number", shipped)
	}
	if r := col.of(ship, oms.WMSCancelRefused); r[0].TrackingNumber == "" {
		t.Errorf("the refusal carries no tracking number")
	}
	if rej := col.of(short, oms.WMSRejected); rej[0].Reason != "short-pick" || len(col.of(short, "")) != 1 {
		t.Errorf("short pick: got %+v, want one rejection with reason short-pick", col.of(short, ""))
	}
	// The cancelled shipment never ships, also after its ship time.
	time.Sleep(500 * time.Millisecond)
	if n := len(col.of(cancelled, oms.WMSShipped)); n != 0 {
		t.Errorf("the cancelled shipment shipped")
	}
	if n := len(col.of(other, "")); n != 0 {
		t.Errorf("a shipment of a node not served was answered")
	}
}

func TestSimulatorReceivesReturns(t *testing.T) {
	brokers := stacktest.NewKafka(t).Brokers()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := wmssim.Run(ctx, wmssim.Config{Brokers: brokers, Nodes: []string{"N1"}, ReceiveAfter: 300 * time.Millisecond,
			DamagedShare: 0.5, Seed: 3, Group: "sim-ret"}); err != nil {
			t.Errorf("sim: %v", err)
		}
	}()
	col := &collector{}
	wg.Add(1)
	go func() { defer wg.Done(); col.run(ctx, brokers) }()
	w, err := kafkabus.NewWriter(kafkabus.WriterConfig{Brokers: brokers, Topic: oms.TopicShipments})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	expected := func(ret, node string) kafka.Message {
		b, _ := json.Marshal(oms.ReturnExpectedEvent{EventID: uuid.NewString(), Type: oms.EventReturnExpected, ReturnID: ret, OrderID: uuid.NewString(),
			NodeID: node, Lines: []oms.ShipLine{{SKU: "A", Qty: 40}, {SKU: "B", Qty: 1}}})
		return kafka.Message{Key: []byte(node), Value: b}
	}
	ret, other := uuid.NewString(), uuid.NewString()
	if err := w.WriteMessages(ctx, expected(ret, "N1"), expected(other, "N9"), expected(ret, "N1")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(col.of(ret, oms.WMSReturnReceived)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no receipt after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if acks := col.of(ret, oms.WMSReturnAcknowledged); len(acks) != 2 || acks[0].EventID != acks[1].EventID || acks[0].EventID != wmssim.EventID(ret, oms.WMSReturnAcknowledged) {
		t.Errorf("got acknowledgements %+v, want two under the stable id", acks)
	}
	rcv := col.of(ret, oms.WMSReturnReceived)
	if len(rcv) != 1 || rcv[0].EventID != wmssim.EventID(ret, oms.WMSReturnReceived) {
		t.Fatalf("got receipts %+v, want one under the stable id", rcv)
	}
	units := map[string]int64{}
	var damaged int64
	for _, l := range rcv[0].Lines {
		units[l.SKU] += l.Qty
		if l.Condition == oms.ConditionDamaged {
			damaged += l.Qty
		}
	}
	if units["A"] != 40 || units["B"] != 1 {
		t.Errorf("got %v, want every expected unit received", units)
	}
	if damaged < 8 || damaged > 32 {
		t.Errorf("got %d of 41 damaged at share 0.5", damaged)
	}
	if err := oms.ValidateWMSEvent(rcv[0]); err != nil {
		t.Errorf("the receipt is not a valid warehouse event: %v", err)
	}
	if n := len(col.of(other, "")); n != 0 {
		t.Errorf("a return to a node not served was answered")
	}
}
