// Package wmssim is a warehouse system simulator: it reads the shipment
// requests omsd publishes on oms.shipments and answers on wms.events the
// way a warehouse does. cmd/wms-sim runs it as a program; tests run it
// in-process with Run.
//
// For every shipment.requested of a node it serves it answers
// shipment.acknowledged at once and shipment.shipped (with a tracking
// number) after ShipAfter; a share of the shipments, chosen by a hash of
// the seed and the shipment id (so a run is reproducible), is short-picked
// instead (shipment.rejected, reason "short-pick"). A
// shipment.cancel_requested that arrives before the shipment shipped is
// honoured (shipment.cancelled); one that arrives later is refused
// (shipment.cancel_refused, with the tracking number). A return.expected
// is acknowledged at once and received after ReceiveAfter, every expected
// unit, a share of them (DamagedShare, by a hash of seed, return, SKU and
// unit) damaged.
//
// Its event ids are stable per (shipment, event type): a request delivered
// twice, or a simulator restarted on the same topic, answers with the same
// event ids, which omsd deduplicates. Its state is in memory: shipments
// waiting for their ship time are forgotten by a restart (their requests
// were committed); a real warehouse keeps them.
package wmssim

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/kafkabus"
)

// Config configures the simulator. Brokers is required.
type Config struct {
	Brokers []string
	// Nodes the simulator is the warehouse of; empty means every node.
	Nodes []string
	// ShipAfter is the time from request to shipment; 0 ships at once.
	ShipAfter time.Duration
	// ShortPickShare is the share of shipments rejected (0 to 1).
	ShortPickShare float64
	// Seed chooses which shipments are short-picked.
	Seed int64
	// ReceiveAfter is the time from return.expected to return.received;
	// 0 means ShipAfter.
	ReceiveAfter time.Duration
	// DamagedShare is the share of returned units received damaged (0 to
	// 1), chosen per unit by a hash of the seed, the return and the SKU.
	DamagedShare float64
	// Group is the consumer group; default "wms-sim". Simulators that serve
	// different nodes need different groups (each reads every partition).
	Group string
	// Logger; default discards.
	Logger *slog.Logger
}

// Sim states of a shipment.
const (
	stRequested = "requested"
	stShipped   = "shipped"
	stCancelled = "cancelled"
	stRejected  = "rejected"
)

type shipment struct {
	state    string
	tracking string
	timer    *time.Timer
}

// returned is a return the simulator expects or has received.
type returned struct {
	received bool
	lines    []oms.ReceivedLine
	timer    *time.Timer
}

type sim struct {
	cfg Config
	w   *kafka.Writer
	log *slog.Logger

	mu      sync.Mutex
	ships   map[string]*shipment
	returns map[string]*returned
	// late receives shipped events of the ship timers.
	late chan oms.WMSEvent
	done <-chan struct{}
}

var simNamespace = uuid.MustParse("4d1e8b2a-6c3f-5a97-b0d4-7e2f1a9c3b58")

// EventID is the id the simulator gives to event typ of a shipment.
func EventID(shipmentID string, typ oms.EventType) string {
	return uuid.NewSHA1(simNamespace, []byte(shipmentID+"\x00"+string(typ))).String()
}

// TrackingNumber is the tracking number the simulator gives a shipment.
func TrackingNumber(shipmentID string) string {
	h := sha256.Sum256([]byte(shipmentID))
	return "SIM" + hex.EncodeToString(h[:6])
}

// ShortPicked reports whether the simulator with this seed and share
// short-picks the shipment.
func ShortPicked(seed int64, share float64, shipmentID string) bool {
	if share <= 0 {
		return false
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seed))
	h := sha256.Sum256(append(b[:], shipmentID...))
	return float64(binary.BigEndian.Uint64(h[:8])%1_000_000)/1_000_000 < share
}

// Run simulates until ctx ends (returns nil) or Kafka fails persistently.
func Run(ctx context.Context, cfg Config) error {
	if len(cfg.Brokers) == 0 {
		return errors.New("wmssim: no brokers")
	}
	if cfg.Group == "" {
		cfg.Group = "wms-sim"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ShortPickShare < 0 || cfg.ShortPickShare > 1 {
		return fmt.Errorf("wmssim: short-pick share %v outside [0, 1]", cfg.ShortPickShare)
	}
	if cfg.DamagedShare < 0 || cfg.DamagedShare > 1 {
		return fmt.Errorf("wmssim: damaged share %v outside [0, 1]", cfg.DamagedShare)
	}
	if cfg.ReceiveAfter <= 0 {
		cfg.ReceiveAfter = cfg.ShipAfter
	}
	w, err := kafkabus.NewWriter(kafkabus.WriterConfig{Brokers: cfg.Brokers, Topic: oms.TopicWMSEvents})
	if err != nil {
		return err
	}
	defer w.Close()
	s := &sim{cfg: cfg, w: w, log: cfg.Logger, ships: map[string]*shipment{}, returns: map[string]*returned{}, late: make(chan oms.WMSEvent, 4096)}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.done = ctx.Done()
	shipperDone := make(chan struct{})
	go func() {
		defer close(shipperDone)
		s.shipper(ctx)
	}()
	defer func() {
		cancel()
		s.mu.Lock()
		for _, sh := range s.ships {
			if sh.timer != nil {
				sh.timer.Stop()
			}
		}
		for _, r := range s.returns {
			if r.timer != nil {
				r.timer.Stop()
			}
		}
		s.mu.Unlock()
		<-shipperDone
	}()
	backoff := time.Duration(0)
	for {
		err := s.consume(ctx)
		if ctx.Err() != nil {
			return nil
		}
		backoff = min(max(2*backoff, 200*time.Millisecond), 5*time.Second)
		s.log.Warn("wms-sim: consumer restarts", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
}

// consume reads oms.shipments in batches: the answers of a batch are
// written before its messages are committed.
func (s *sim) consume(ctx context.Context) error {
	r, err := kafkabus.NewReader(kafkabus.ReaderConfig{Brokers: s.cfg.Brokers, GroupID: s.cfg.Group, Topic: oms.TopicShipments})
	if err != nil {
		return err
	}
	defer r.Close()
	in := make(chan kafka.Message, 512)
	fetchErr := make(chan error, 1)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(in)
		for {
			m, err := r.FetchMessage(fctx)
			if err != nil {
				fetchErr <- err
				return
			}
			select {
			case in <- m:
			case <-fctx.Done():
				fetchErr <- fctx.Err()
				return
			}
		}
	}()
	for {
		m, ok := <-in
		if !ok {
			return <-fetchErr
		}
		batch := []kafka.Message{m}
	drain:
		for len(batch) < 500 {
			select {
			case m, ok := <-in:
				if !ok {
					break drain
				}
				batch = append(batch, m)
			default:
				break drain
			}
		}
		var out []kafka.Message
		for _, m := range batch {
			for _, ev := range s.handle(m) {
				out = append(out, message(ev))
			}
		}
		if len(out) > 0 {
			if err := s.w.WriteMessages(ctx, out...); err != nil {
				return fmt.Errorf("wmssim: write answers: %w", err)
			}
		}
		if err := r.CommitMessages(ctx, batch...); err != nil {
			return fmt.Errorf("wmssim: commit: %w", err)
		}
	}
}

// message is an answer on wms.events: keyed by shipment, or by return.
func message(ev oms.WMSEvent) kafka.Message {
	b, _ := json.Marshal(ev)
	key := ev.ShipmentID
	if ev.ReturnID != "" {
		key = ev.ReturnID
	}
	return kafka.Message{Key: []byte(key), Value: b}
}

func (s *sim) event(id string, typ oms.EventType) oms.WMSEvent {
	return oms.WMSEvent{EventID: EventID(id, typ), Type: typ, ShipmentID: id, OccurredAt: time.Now().UTC()}
}

// handle decides the answers to one request.
func (s *sim) handle(m kafka.Message) []oms.WMSEvent {
	var kind struct {
		Type oms.EventType `json:"type"`
	}
	if err := json.Unmarshal(m.Value, &kind); err == nil && kind.Type == oms.EventReturnExpected {
		return s.expect(m)
	}
	var req oms.ShipmentEvent
	if err := json.Unmarshal(m.Value, &req); err != nil || req.ShipmentID == "" {
		s.log.Warn("wms-sim: malformed shipment message skipped", "offset", m.Offset, "err", err)
		return nil
	}
	if len(s.cfg.Nodes) > 0 && !slices.Contains(s.cfg.Nodes, req.NodeID) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := req.ShipmentID
	sh := s.ships[id]
	switch req.Type {
	case "shipment.requested":
		if sh != nil {
			// A redelivery: answer again what was answered (same ids).
			switch sh.state {
			case stRejected:
				ev := s.event(id, oms.WMSRejected)
				ev.Reason = "short-pick"
				return []oms.WMSEvent{ev}
			case stCancelled:
				return nil
			default:
				return []oms.WMSEvent{s.event(id, oms.WMSAcknowledged)}
			}
		}
		if ShortPicked(s.cfg.Seed, s.cfg.ShortPickShare, id) {
			s.ships[id] = &shipment{state: stRejected}
			ev := s.event(id, oms.WMSRejected)
			ev.Reason = "short-pick"
			return []oms.WMSEvent{ev}
		}
		sh = &shipment{state: stRequested, tracking: TrackingNumber(id)}
		s.ships[id] = sh
		out := []oms.WMSEvent{s.event(id, oms.WMSAcknowledged)}
		if s.cfg.ShipAfter <= 0 {
			sh.state = stShipped
			ev := s.event(id, oms.WMSShipped)
			ev.TrackingNumber = sh.tracking
			return append(out, ev)
		}
		sh.timer = time.AfterFunc(s.cfg.ShipAfter, func() { s.shipNow(id) })
		return out
	case "shipment.cancel_requested":
		if sh == nil {
			// Never seen (or forgotten by a restart): nothing to ship.
			s.ships[id] = &shipment{state: stCancelled}
			return []oms.WMSEvent{s.event(id, oms.WMSCancelled)}
		}
		switch sh.state {
		case stRequested:
			if sh.timer != nil {
				sh.timer.Stop()
			}
			sh.state = stCancelled
			return []oms.WMSEvent{s.event(id, oms.WMSCancelled)}
		case stCancelled:
			return []oms.WMSEvent{s.event(id, oms.WMSCancelled)}
		case stShipped:
			ev := s.event(id, oms.WMSCancelRefused)
			ev.TrackingNumber = sh.tracking
			ev.Reason = "already shipped"
			return []oms.WMSEvent{ev}
		}
		return nil // rejected: nothing to cancel
	default:
		return nil
	}
}

// shipNow ships a shipment whose time has come, unless it was cancelled.
func (s *sim) shipNow(id string) {
	s.mu.Lock()
	sh := s.ships[id]
	if sh == nil || sh.state != stRequested {
		s.mu.Unlock()
		return
	}
	sh.state = stShipped
	ev := s.event(id, oms.WMSShipped)
	ev.TrackingNumber = sh.tracking
	s.mu.Unlock()
	select {
	case s.late <- ev:
	case <-s.done:
	}
}

// shipper writes the shipped events of the timers, in batches.
func (s *sim) shipper(ctx context.Context) {
	for {
		var ev oms.WMSEvent
		select {
		case <-ctx.Done():
			return
		case ev = <-s.late:
		}
		batch := []kafka.Message{message(ev)}
	drain:
		for len(batch) < 500 {
			select {
			case ev := <-s.late:
				batch = append(batch, message(ev))
			default:
				break drain
			}
		}
		for ctx.Err() == nil {
			err := s.w.WriteMessages(ctx, batch...)
			if err == nil {
				break
			}
			s.log.Warn("wms-sim: write shipped events", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// Damaged reports whether the simulator with this seed and share receives
// unit n of sku in a return damaged.
func Damaged(seed int64, share float64, returnID, sku string, n int64) bool {
	return ShortPicked(seed, share, returnID+"\x00"+sku+"\x00"+strconv.FormatInt(n, 10))
}

// expect answers a return.expected of a node it serves: acknowledged at
// once, received after ReceiveAfter with every expected unit, a share of
// them damaged. A redelivery answers again what was answered (same ids).
func (s *sim) expect(m kafka.Message) []oms.WMSEvent {
	var req oms.ReturnExpectedEvent
	if err := json.Unmarshal(m.Value, &req); err != nil || req.ReturnID == "" {
		s.log.Warn("wms-sim: malformed return message skipped", "offset", m.Offset, "err", err)
		return nil
	}
	if len(s.cfg.Nodes) > 0 && !slices.Contains(s.cfg.Nodes, req.NodeID) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := req.ReturnID
	ack := oms.WMSEvent{EventID: EventID(id, oms.WMSReturnAcknowledged), Type: oms.WMSReturnAcknowledged, ReturnID: id, OccurredAt: time.Now().UTC()}
	if r := s.returns[id]; r != nil {
		if r.received {
			return []oms.WMSEvent{ack, s.receipt(id, r.lines)}
		}
		return []oms.WMSEvent{ack}
	}
	var lines []oms.ReceivedLine
	for _, l := range req.Lines {
		var damaged int64
		for n := range l.Qty {
			if Damaged(s.cfg.Seed, s.cfg.DamagedShare, id, l.SKU, n) {
				damaged++
			}
		}
		if l.Qty > damaged {
			lines = append(lines, oms.ReceivedLine{SKU: l.SKU, Qty: l.Qty - damaged, Condition: oms.ConditionSellable})
		}
		if damaged > 0 {
			lines = append(lines, oms.ReceivedLine{SKU: l.SKU, Qty: damaged, Condition: oms.ConditionDamaged})
		}
	}
	r := &returned{lines: lines}
	s.returns[id] = r
	if s.cfg.ReceiveAfter <= 0 {
		r.received = true
		return []oms.WMSEvent{ack, s.receipt(id, lines)}
	}
	r.timer = time.AfterFunc(s.cfg.ReceiveAfter, func() { s.receiveNow(id) })
	return []oms.WMSEvent{ack}
}

func (s *sim) receipt(id string, lines []oms.ReceivedLine) oms.WMSEvent {
	return oms.WMSEvent{EventID: EventID(id, oms.WMSReturnReceived), Type: oms.WMSReturnReceived, ReturnID: id,
		Lines: lines, OccurredAt: time.Now().UTC()}
}

// receiveNow sends the receipt of a return whose time has come.
func (s *sim) receiveNow(id string) {
	s.mu.Lock()
	r := s.returns[id]
	if r == nil || r.received {
		s.mu.Unlock()
		return
	}
	r.received = true
	ev := s.receipt(id, r.lines)
	s.mu.Unlock()
	select {
	case s.late <- ev:
	case <-s.done:
	}
}
