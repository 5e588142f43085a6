package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// AuditConfig configures Gather. The zero value reads every accepted order
// up to 20,000 (a random sample of that size beyond), 32 at a time, and
// skips the topic audit when there are no brokers.
type AuditConfig struct {
	// Concurrency bounds the API reads in flight. Default 32.
	Concurrency int
	// SampleMax is the largest number of orders read back; above it a
	// random sample of SampleMax is read. Default 20000; negative: all.
	SampleMax int
	// Brokers and Topic locate oms.shipments; no brokers: not read.
	Brokers []string
	Topic   string
	// Now is the clock used to infer expiry of unread pending orders.
	Now func() time.Time
}

func (c *AuditConfig) setDefaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
	if c.SampleMax == 0 {
		c.SampleMax = 20000
	}
	if c.Topic == "" {
		c.Topic = TopicShipments
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// InitialStock turns the seed file's rows into levels (reserved 0).
func InitialStock(s *SeedFile) []StockLevel {
	out := make([]StockLevel, len(s.Stock))
	for i, r := range s.Stock {
		out[i] = StockLevel{NodeID: r.NodeID, SKU: r.SKU, OnHand: r.OnHand, Available: r.OnHand}
	}
	return out
}

// Snapshot reads GET /v1/inventory/{sku} for every SKU, concurrency at a
// time, and returns every node's level.
func Snapshot(ctx context.Context, c *Client, skus []SKU, concurrency int) ([]StockLevel, error) {
	if concurrency <= 0 {
		concurrency = 32
	}
	var (
		mu  sync.Mutex
		out []StockLevel
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for _, s := range skus {
		g.Go(func() error {
			inv, err := c.Inventory(gctx, s.ID)
			if err != nil {
				return err
			}
			mu.Lock()
			out = append(out, inv.Nodes...)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// UnknownOrder is an order whose POST got no definite answer (a network
// error or a 5xx after the retries): it may or may not exist.
type UnknownOrder struct {
	Channel    string `json:"channel"`
	ExternalID string `json:"external_id"`
	Pending    bool   `json:"pending"`
	Lines      []Line `json:"lines"`
}

// GatherStats says how the audit data was gathered.
type GatherStats struct {
	// Recovered counts orders with no definite answer that the API has
	// after all (found by external id): they are audited as accepted.
	Recovered int
	// Unresolved counts those whose existence could not be established.
	Unresolved int
	// NotStored counts those the API does not have (404 by external id).
	NotStored int
}

// Gather reads what Audit needs from the API and the topic: the current
// stock of every seeded SKU, each accepted order's status (all, or a
// sample; see AuditConfig.SampleMax), the fate of orders that got no
// definite answer, and oms.shipments. Unread orders keep the status of
// their creation answer, except pending ones past their reserved_until,
// taken as expired. An error means the audit could not be done (an
// inventory read failed, or the topic could not be read); an order read
// that fails for another reason than 404 marks the order Unreadable.
func Gather(ctx context.Context, c *Client, seed *SeedFile, accepted []AcceptedOrder, unknown []UnknownOrder,
	initial []StockLevel, cfg AuditConfig) (AuditInput, GatherStats, error) {
	cfg.setDefaults()
	in := AuditInput{Initial: initial}
	var st GatherStats
	keys := map[string]string{}
	for _, ch := range seed.Channels {
		keys[ch.ID] = ch.APIKey
	}

	// Orders with no definite answer: look them up by external id. One
	// that exists holds stock and joins the accepted ones.
	accepted = append([]AcceptedOrder(nil), accepted...) // not the caller's array
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.Concurrency)
	for _, u := range unknown {
		g.Go(func() error {
			v, found, err := c.OrderByExternalID(gctx, keys[u.Channel], u.ExternalID)
			mu.Lock()
			defer mu.Unlock()
			g := GaveUpOrder{Channel: u.Channel, ExternalID: u.ExternalID}
			switch {
			case err != nil:
				st.Unresolved++
				g.Unresolved = true
			case found:
				st.Recovered++
				g.Found, g.ID, g.Status, g.Shipments = true, v.ID, v.Status, len(v.Shipments)
				accepted = append(accepted, AcceptedOrder{ID: v.ID, Channel: u.Channel, ExternalID: u.ExternalID,
					Status: v.Status, Pending: u.Pending, ReservedUntil: v.ReservedUntil.Time, Lines: u.Lines})
			default:
				st.NotStored++
			}
			in.GaveUp = append(in.GaveUp, g)
			return nil
		})
	}
	_ = g.Wait()

	in.Orders = make([]AuditOrder, len(accepted))
	now := cfg.Now()
	for i, a := range accepted {
		status := a.Status
		if a.Pending && !a.ReservedUntil.IsZero() && now.After(a.ReservedUntil) && !deadStatuses[status] {
			status = "expired"
		}
		in.Orders[i] = AuditOrder{ID: a.ID, Lines: a.Lines, Pending: a.Pending, Status: status}
	}
	idx := make([]int, len(accepted))
	for i := range idx {
		idx[i] = i
	}
	if cfg.SampleMax > 0 && len(idx) > cfg.SampleMax {
		rand.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		idx = idx[:cfg.SampleMax]
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(cfg.Concurrency)
	for _, i := range idx {
		a := accepted[i]
		g.Go(func() error {
			v, err := c.Order(gctx, keys[a.Channel], a.ID)
			mu.Lock()
			defer mu.Unlock()
			o := &in.Orders[i]
			switch {
			case errors.Is(err, ErrNotFound):
				o.Checked, o.Found = true, false
			case err != nil:
				o.Unreadable = true
			default:
				o.Checked, o.Found = true, true
				if v.Status != "" {
					o.Status = v.Status
				}
				// Audit what the OMS holds (its live shipments), not the
				// order lines: a line backordered after a short pick holds
				// no stock, and a re-sourced one is held elsewhere.
				if len(v.Shipments) > 0 {
					o.Lines = v.HeldLines()
				}
			}
			return nil
		})
	}
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		return in, st, err
	}

	cur, err := Snapshot(ctx, c, seed.SKUs, cfg.Concurrency)
	if err != nil {
		return in, st, fmt.Errorf("loadtest: audit: inventory: %w", err)
	}
	in.Current = cur

	if len(cfg.Brokers) > 0 {
		ev, err := ReadShipmentEvents(ctx, cfg.Brokers, cfg.Topic)
		if err != nil {
			return in, st, fmt.Errorf("loadtest: audit: %w", err)
		}
		in.Shipments, in.ShipmentsRead = ev, true
	}
	return in, st, nil
}

// OrderByExternalID looks an order up with GET /v1/orders?external_id=…
// and the channel's key. The answer may be a list, an object with a list
// under "orders", "items" or "data", or a single order; found is false
// when it holds no order with that external id.
func (c *Client) OrderByExternalID(ctx context.Context, channelKey, externalID string) (OrderView, bool, error) {
	r, err := c.Do(ctx, http.MethodGet, "/v1/orders?external_id="+url.QueryEscape(externalID), channelKey, "", nil)
	if err != nil {
		return OrderView{}, false, err
	}
	if r.Status == http.StatusNotFound {
		return OrderView{}, false, nil
	}
	if r.Status < 200 || r.Status > 299 {
		return OrderView{}, false, apiError(http.MethodGet, "/v1/orders", r)
	}
	var list []OrderView
	if json.Unmarshal(r.Body, &list) != nil {
		var wrap struct {
			Orders, Items, Data []OrderView
		}
		if json.Unmarshal(r.Body, &wrap) == nil && (wrap.Orders != nil || wrap.Items != nil || wrap.Data != nil) {
			list = append(append(append(list, wrap.Orders...), wrap.Items...), wrap.Data...)
		} else {
			var one OrderView
			if err := json.Unmarshal(r.Body, &one); err != nil {
				return OrderView{}, false, fmt.Errorf("loadtest: GET /v1/orders: %w", err)
			}
			list = []OrderView{one}
		}
	}
	for _, o := range list {
		if o.ExternalID == externalID && o.ID != "" {
			return o, true, nil
		}
	}
	return OrderView{}, false, nil
}
