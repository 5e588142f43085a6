package loadtest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Returns mixed into a run (RunConfig.ReturnShare): for a share of the
// accepted, paid orders, chosen by a hash of the seed and the order id,
// a returner waits until the order has shipped, requests the return of
// every shipped unit (resolution refund), approves it, waits until the
// warehouse has received it, and records the refund. It runs while the
// load runs (so faults hit it too) and stops by itself: ReturnTimeout
// after the load's last answer at the latest.

// TopicReturns is the after-sales topic of the v1 contract.
const TopicReturns = "oms.returns"

// ReceivedLine is a received quantity of one SKU in one condition.
type ReceivedLine struct {
	SKU       string `json:"sku"`
	Qty       int64  `json:"qty"`
	Condition string `json:"condition"`
}

// ReturnView is the part of a return the load test reads.
type ReturnView struct {
	ID            string         `json:"id"`
	OrderID       string         `json:"order_id"`
	Status        string         `json:"status"`
	NodeID        string         `json:"node_id"`
	Lines         []Line         `json:"lines"`
	ReceivedLines []ReceivedLine `json:"received_lines"`
	Refund        struct {
		Amount int64  `json:"amount"`
		Status string `json:"status"`
	} `json:"refund"`
}

// ReturnRecord is one return the load test made, with what the order had
// shipped when it was requested.
type ReturnRecord struct {
	OrderID string           `json:"order_id"`
	Channel string           `json:"channel"`
	Shipped map[string]int64 `json:"shipped"`
	Return  ReturnView       `json:"return"`
	// Refunded: the load test's refund call was answered 200.
	Refunded bool `json:"refunded"`
}

// ReturnStats counts what the returner did.
type ReturnStats struct {
	Selected  int64 `json:"selected"`
	Requested int64 `json:"requested"`
	Approved  int64 `json:"approved"`
	Received  int64 `json:"received"`
	Refunded  int64 `json:"refunded"`
	// NotShipped: the order never shipped in time (or was cancelled).
	NotShipped int64 `json:"not_shipped"`
	// Failed: a call got no definite answer or an unexpected one.
	Failed int64    `json:"failed"`
	Errors []string `json:"errors,omitempty"`
}

// returnSelected reports whether order id is returned in a run with seed
// and share.
func returnSelected(seed uint64, share float64, id string) bool {
	if share <= 0 {
		return false
	}
	h := fnv.New64a()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seed)
	h.Write(b[:])
	h.Write([]byte(id))
	return float64(h.Sum64()%1_000_000)/1_000_000 < share
}

type returner struct {
	c     *Client
	keys  map[string]string // channel id -> key
	poll  time.Duration
	in    chan AcceptedOrder
	wg    sync.WaitGroup
	mu    sync.Mutex
	recs  []ReturnRecord
	stats ReturnStats
}

func newReturner(ctx context.Context, c *Client, gen *orderGen, workers int, poll time.Duration) *returner {
	r := &returner{c: c, keys: map[string]string{}, poll: poll, in: make(chan AcceptedOrder, 1<<16)}
	for _, ch := range gen.channels {
		r.keys[ch.ID] = ch.APIKey
	}
	for range workers {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for o := range r.in {
				r.one(ctx, o)
			}
		}()
	}
	return r
}

// offer hands an accepted order to the returner without blocking.
func (r *returner) offer(o AcceptedOrder) {
	select {
	case r.in <- o:
		r.count(func(s *ReturnStats) { s.Selected++ })
	default:
	}
}

func (r *returner) count(f func(s *ReturnStats)) {
	r.mu.Lock()
	f(&r.stats)
	r.mu.Unlock()
}

func (r *returner) fail(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	r.count(func(s *ReturnStats) {
		s.Failed++
		if len(s.Errors) < 10 {
			s.Errors = append(s.Errors, msg)
		}
	})
}

// wait polls until ctx ends; false when it ended.
func (r *returner) wait(ctx context.Context) bool {
	t := time.NewTimer(r.poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *returner) one(ctx context.Context, o AcceptedOrder) {
	key := r.keys[o.Channel]
	var shipped map[string]int64
	for {
		v, err := r.c.Order(ctx, key, o.ID)
		if err == nil {
			if v.Status == "cancelled" || v.Status == "expired" {
				r.count(func(s *ReturnStats) { s.NotShipped++ })
				return
			}
			shipped = map[string]int64{}
			for _, s := range v.Shipments {
				if s.Status == "shipped" {
					for _, l := range s.Lines {
						shipped[l.SKU] += l.Qty
					}
				}
			}
			if v.Status == "shipped" && len(shipped) > 0 {
				break
			}
		}
		if !r.wait(ctx) {
			r.count(func(s *ReturnStats) { s.NotShipped++ })
			return
		}
	}
	req := struct {
		ExternalID string `json:"external_id"`
		Reason     string `json:"reason"`
		Resolution string `json:"resolution"`
		Lines      []Line `json:"lines"`
	}{ExternalID: "RET-" + o.ExternalID, Reason: "changed_mind", Resolution: "refund"}
	for sku, q := range shipped {
		req.Lines = append(req.Lines, Line{SKU: sku, Qty: q})
	}
	sort.Slice(req.Lines, func(i, j int) bool { return req.Lines[i].SKU < req.Lines[j].SKU })
	body, _ := json.Marshal(req)
	var ret ReturnView
	if !r.call(ctx, http.MethodPost, "/v1/orders/"+url.PathEscape(o.ID)+"/returns", key, req.ExternalID, body, &ret, http.StatusCreated, http.StatusOK) {
		return
	}
	rec := ReturnRecord{OrderID: o.ID, Channel: o.Channel, Shipped: shipped, Return: ret}
	r.mu.Lock()
	i := len(r.recs)
	r.recs = append(r.recs, rec)
	r.stats.Requested++
	r.mu.Unlock()
	update := func(f func(rec *ReturnRecord)) {
		r.mu.Lock()
		f(&r.recs[i])
		r.mu.Unlock()
	}
	path := "/v1/returns/" + url.PathEscape(ret.ID)
	if !r.call(ctx, http.MethodPost, path+"/approve", key, "", nil, &ret, http.StatusOK) {
		return
	}
	r.count(func(s *ReturnStats) { s.Approved++ })
	for ret.Status != "received" {
		if !r.wait(ctx) {
			r.fail("return %s: not received in time (status %s)", ret.ID, ret.Status)
			return
		}
		if !r.call(ctx, http.MethodGet, path, key, "", nil, &ret, http.StatusOK) {
			return
		}
	}
	update(func(rec *ReturnRecord) { rec.Return = ret })
	r.count(func(s *ReturnStats) { s.Received++ })
	body, _ = json.Marshal(map[string]string{"status": "refunded", "reference": "LT-" + ret.ID})
	if !r.call(ctx, http.MethodPost, path+"/refund", key, "", body, &ret, http.StatusOK) {
		return
	}
	update(func(rec *ReturnRecord) { rec.Return, rec.Refunded = ret, true })
	r.count(func(s *ReturnStats) { s.Refunded++ })
}

// call sends one request (retried by the client on 5xx and network
// errors) and decodes the answer into out when its status is one of want.
func (r *returner) call(ctx context.Context, method, path, key, idemKey string, body []byte, out any, want ...int) bool {
	resp, err := r.c.Do(ctx, method, path, key, idemKey, body)
	if err != nil {
		if ctx.Err() == nil {
			r.fail("%s %s: %v", method, path, err)
		}
		return false
	}
	for _, w := range want {
		if resp.Status == w {
			if err := json.Unmarshal(resp.Body, out); err != nil {
				r.fail("%s %s: %v", method, path, err)
				return false
			}
			return true
		}
	}
	r.fail("%s %s: answered %d: %.200s", method, path, resp.Status, resp.Body)
	return false
}

// finish waits for the workers and returns what they did.
func (r *returner) finish() ([]ReturnRecord, ReturnStats) {
	close(r.in)
	r.wg.Wait()
	return r.recs, r.stats
}

// ReturnEvent is a message of oms.returns as the audit reads it.
type ReturnEvent struct {
	EventID  string `json:"event_id"`
	Type     string `json:"type"`
	ReturnID string `json:"return_id"`
	OrderID  string `json:"order_id"`
}

// ReadReturnEvents reads oms.returns to its end, sorted by partition and
// offset: the events of one order (its key) in the order published.
func ReadReturnEvents(ctx context.Context, brokers []string) ([]ReturnEvent, error) {
	type at struct {
		part int
		off  int64
		ev   ReturnEvent
	}
	var (
		mu  sync.Mutex
		all []at
	)
	err := ReadTopic(ctx, brokers, TopicReturns, func(m kafka.Message) error {
		var e ReturnEvent
		if err := json.Unmarshal(m.Value, &e); err != nil {
			return fmt.Errorf("oms.returns partition %d offset %d: %w", m.Partition, m.Offset, err)
		}
		mu.Lock()
		all = append(all, at{m.Partition, m.Offset, e})
		mu.Unlock()
		return nil
	})
	sort.Slice(all, func(i, j int) bool {
		if all[i].part != all[j].part {
			return all[i].part < all[j].part
		}
		return all[i].off < all[j].off
	})
	out := make([]ReturnEvent, len(all))
	for i, a := range all {
		out[i] = a.ev
	}
	return out, err
}

// GatherReturns reads the final state of each return the run made.
func GatherReturns(ctx context.Context, c *Client, recs []ReturnRecord, keys map[string]string) []ReturnRecord {
	out := make([]ReturnRecord, len(recs))
	copy(out, recs)
	for i := range out {
		var v ReturnView
		status, err := c.doJSON(ctx, http.MethodGet, "/v1/returns/"+url.PathEscape(out[i].Return.ID), keys[out[i].Channel], nil, &v)
		if err == nil && status == http.StatusOK {
			out[i].Return = v
		}
	}
	return out
}

// auditReturns adds the after-sales checks to res and returns the
// sellable units received back per SKU (they are in on hand again).
func auditReturns(res *AuditResult, recs []ReturnRecord, events []ReturnEvent, eventsRead bool) map[string]int64 {
	restocked := map[string]int64{}
	claimed := map[[2]string]int64{}
	for _, rec := range recs {
		r := rec.Return
		res.Returns++
		for _, l := range r.ReceivedLines {
			if l.Condition == "sellable" {
				restocked[l.SKU] += l.Qty
			}
			res.ReturnedUnits += l.Qty
		}
		if r.Status == "refunded" && len(r.ReceivedLines) == 0 {
			res.RefundsWithoutReceipt++
			res.find(Finding{Check: "refunds_without_receipt", Key: r.ID, Detail: "refunded with nothing received"})
		}
		if r.Status != "rejected" {
			for _, l := range r.Lines {
				claimed[[2]string{rec.OrderID, l.SKU}] += l.Qty
			}
		}
		for _, l := range r.Lines {
			k := [2]string{rec.OrderID, l.SKU}
			if claimed[k] > rec.Shipped[l.SKU] {
				res.ReturnsPastShipped++
				res.find(Finding{Check: "returns_past_shipped", Key: r.ID, Units: claimed[k] - rec.Shipped[l.SKU],
					Detail: fmt.Sprintf("order %s: %d of %s returned, %d shipped", rec.OrderID, claimed[k], l.SKU, rec.Shipped[l.SKU])})
			}
		}
	}
	if !eventsRead {
		if len(recs) > 0 {
			res.Notes = append(res.Notes, "topic oms.returns not read (no brokers): refunds checked from the API only")
		}
		return restocked
	}
	ours := map[string]bool{}
	for _, rec := range recs {
		ours[rec.Return.ID] = true
	}
	received := map[string]bool{}
	ids := map[[2]string]map[string]bool{}
	for _, e := range events {
		if !ours[e.ReturnID] {
			continue
		}
		res.ReturnEvents++
		k := [2]string{e.ReturnID, e.Type}
		if ids[k] == nil {
			ids[k] = map[string]bool{}
		}
		ids[k][e.EventID] = true
		switch e.Type {
		case "return.received":
			received[e.ReturnID] = true
		case "return.refunded":
			if !received[e.ReturnID] {
				res.RefundsWithoutReceipt++
				res.find(Finding{Check: "refunds_without_receipt", Key: e.ReturnID, Detail: "return.refunded on oms.returns before any return.received"})
			}
		}
	}
	for k, evs := range ids {
		if n := len(evs); n > 1 {
			res.DuplicateReturnEvents += n - 1
			res.find(Finding{Check: "duplicate_return_events", Key: k[0], Detail: fmt.Sprintf("%s under %d distinct event ids", k[1], n)})
		}
	}
	return restocked
}
