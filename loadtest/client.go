package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// ClientConfig configures a Client. The zero value (plus a Target) is
// usable; defaults are given per field.
type ClientConfig struct {
	// Timeout bounds one attempt (connect, send, answer). Default 5s.
	Timeout time.Duration
	// Retries is how many times a request is sent again after a network
	// error or a 5xx/429 answer, with the same body and Idempotency-Key.
	// Default 0 (one attempt).
	Retries int
	// Backoff is the first pause between attempts; it doubles per attempt
	// (with jitter) up to 2s. A Retry-After of at most 5s on a 429/503
	// replaces it. Default 50ms.
	Backoff time.Duration
	// MaxConns is the number of idle keep-alive connections kept to the API
	// host: it should be at least the number of concurrent requests, or
	// connections churn (and each new one costs a handshake and a
	// TIME_WAIT socket). Default 512.
	MaxConns int
	// NoRetry503 returns a 503 that carries a Retry-After (the server's
	// admission control shedding load) as the answer instead of retrying
	// it: for overload measurements, where the share of 503s is the
	// result. A 503 without Retry-After is still retried.
	NoRetry503 bool
	// Transport replaces the tuned default transport (tests).
	Transport http.RoundTripper
}

func (c *ClientConfig) setDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Retries < 0 {
		c.Retries = 0
	}
	if c.Backoff <= 0 {
		c.Backoff = 50 * time.Millisecond
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 512
	}
}

// Client speaks the public omsd API (the v1 API) and nothing else.
type Client struct {
	bases []string
	next  atomic.Uint64 // round robin over bases
	admin string
	cfg   ClientConfig
	hc    *http.Client
}

// NewClient returns a client for the API at t.URLs(): each request starts
// at the next URL in turn, and a retry after a network error or a 5xx
// goes to the following one, as a channel behind a load balancer would.
// It does not contact the server.
func NewClient(t Target, cfg ClientConfig) *Client {
	cfg.setDefaults()
	rt := cfg.Transport
	if rt == nil {
		rt = newTransport(cfg.MaxConns, cfg.Timeout)
	}
	c := &Client{admin: t.AdminKey, cfg: cfg, hc: &http.Client{Transport: rt}}
	for _, u := range t.URLs() {
		c.bases = append(c.bases, strings.TrimRight(u, "/"))
	}
	if len(c.bases) == 0 {
		c.bases = []string{""}
	}
	return c
}

// newTransport is tuned for many concurrent requests to one host: the
// stdlib default keeps only 2 idle connections per host, so a load
// generator with hundreds of workers would open and close a connection for
// nearly every request and measure its own handshakes.
func newTransport(maxConns int, timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy: nil, // never send load through a proxy from the environment
		DialContext: (&net.Dialer{
			Timeout:   timeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          maxConns,
		MaxIdleConnsPerHost:   maxConns,
		MaxConnsPerHost:       0, // no cap: the worker count is the cap
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: 0,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
		WriteBufferSize:       16 << 10,
		ReadBufferSize:        16 << 10,
	}
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Response is the final answer to a request after retries.
type Response struct {
	Status   int
	Body     []byte
	Attempts int
	// Tries is the status of every attempt in order (0: no answer).
	Tries []int
	// RetryAfter is the final answer's Retry-After (0 when absent or
	// beyond 5s).
	RetryAfter time.Duration

	retryAfter    time.Duration // from a Retry-After header of at most 5s
	hasRetryAfter bool
}

// APIError is a non-2xx answer, with the problem+json fields when present.
type APIError struct {
	Method, Path string
	Status       int
	Type, Title  string
	Detail       string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("loadtest: %s %s: %d", e.Method, e.Path, e.Status)
	if e.Type != "" {
		s += " " + e.Type
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	} else if e.Title != "" {
		s += ": " + e.Title
	}
	return s
}

// problem is the subset of RFC 9457 we read.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
}

func apiError(method, path string, r Response) *APIError {
	e := &APIError{Method: method, Path: path, Status: r.Status}
	var p problem
	if json.Unmarshal(r.Body, &p) == nil {
		e.Type, e.Title, e.Detail = p.Type, p.Title, p.Detail
	}
	return e
}

// retryable says whether an answer may be retried with the same key.
func retryable(status int) bool { return status >= 500 || status == http.StatusTooManyRequests }

const maxBody = 8 << 20

// Do sends one request with bearer key and, when idemKey is set, an
// Idempotency-Key header, and retries it (same bytes, same key) on a
// network error or a 5xx/429 answer up to cfg.Retries times. It returns the
// last answer; the error is non-nil only when no HTTP answer came back at
// all (then Response.Attempts still says how many were tried). A cancelled
// ctx stops retrying.
func (c *Client) Do(ctx context.Context, method, path, key, idemKey string, body []byte) (Response, error) {
	var (
		last    Response
		lastErr error
		pause   = c.cfg.Backoff
		tries   []int
		base    = int(c.next.Add(1) - 1)
	)
	for attempt := 1; ; attempt++ {
		last, lastErr = c.once(ctx, c.bases[base%len(c.bases)], method, path, key, idemKey, body)
		tries = append(tries, last.Status)
		last.Attempts, last.Tries = attempt, tries
		last.RetryAfter = last.retryAfter
		if lastErr == nil && !retryable(last.Status) {
			return last, nil
		}
		if lastErr == nil && c.cfg.NoRetry503 && last.Status == http.StatusServiceUnavailable && last.hasRetryAfter {
			return last, nil
		}
		if lastErr != nil || last.Status >= 500 {
			base++ // that instance may be down: try the next one
		}
		if attempt > c.cfg.Retries || ctx.Err() != nil {
			return last, lastErr
		}
		wait := pause/2 + rand.N(pause/2+1)
		if lastErr == nil && last.retryAfter > 0 {
			wait = last.retryAfter
		}
		pause = min(pause*2, 2*time.Second)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return last, lastErr
		case <-t.C:
		}
	}
}

func (c *Client) once(ctx context.Context, base, method, path, key, idemKey string, body []byte) (Response, error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, method, base+path, rd)
	if err != nil {
		return Response{}, fmt.Errorf("loadtest: %s %s: %w", method, path, err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("loadtest: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return Response{}, fmt.Errorf("loadtest: %s %s: reading answer: %w", method, path, err)
	}
	r := Response{Status: resp.StatusCode, Body: b}
	if v := resp.Header.Get("Retry-After"); v != "" {
		r.hasRetryAfter = true
		if s, err := strconv.Atoi(v); err == nil && s >= 0 && s <= 5 {
			r.retryAfter = time.Duration(s) * time.Second
		}
	}
	return r, nil
}

// doJSON sends in (if not nil) as JSON and decodes a 2xx answer into out
// (if not nil). A non-2xx answer is an *APIError.
func (c *Client) doJSON(ctx context.Context, method, path, key string, in, out any) (int, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return 0, fmt.Errorf("loadtest: %s %s: %w", method, path, err)
		}
	}
	r, err := c.Do(ctx, method, path, key, "", body)
	if err != nil {
		return 0, err
	}
	if r.Status < 200 || r.Status > 299 {
		return r.Status, apiError(method, path, r)
	}
	if out != nil {
		if err := json.Unmarshal(r.Body, out); err != nil {
			return r.Status, fmt.Errorf("loadtest: %s %s: decoding answer: %w", method, path, err)
		}
	}
	return r.Status, nil
}

// Channel is a sales channel with the key the API showed once.
type Channel struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	APIKey string `json:"api_key"`
	// Weight is the channel's share of generated orders (relative).
	Weight float64 `json:"weight,omitempty"`
	// OrderPrefix starts the channel's external order ids (TM-...).
	OrderPrefix string `json:"order_prefix,omitempty"`
}

// CreateChannel creates a channel (admin key) and returns it with its key.
func (c *Client) CreateChannel(ctx context.Context, id, name string) (Channel, error) {
	var ch Channel
	_, err := c.doJSON(ctx, http.MethodPost, "/v1/channels", c.admin, map[string]string{"id": id, "name": name}, &ch)
	if err == nil && ch.APIKey == "" {
		err = fmt.Errorf("loadtest: POST /v1/channels: answer for %q has no api_key", id)
	}
	return ch, err
}

// Location is a point on the map.
type Location struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

// Node is a stock location as PUT /v1/nodes/{id} takes it.
type Node struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Type          string   `json:"type"`
	City          string   `json:"-"`
	Location      Location `json:"location"`
	Regions       []string `json:"regions"`
	Priority      int      `json:"priority"`
	DailyCapacity int      `json:"daily_capacity"`
	Channels      []string `json:"channels"`
	Active        bool     `json:"active"`
}

// PutNode creates or replaces a node (admin key).
func (c *Client) PutNode(ctx context.Context, n Node) error {
	_, err := c.doJSON(ctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(n.ID), c.admin, n, nil)
	return err
}

// StockLevel is one node's counters for one SKU.
type StockLevel struct {
	NodeID      string `json:"node_id"`
	SKU         string `json:"sku"`
	OnHand      int64  `json:"on_hand"`
	Reserved    int64  `json:"reserved"`
	SafetyStock int64  `json:"safety_stock"`
	Available   int64  `json:"available"`
}

// PutStock sets the absolute on-hand snapshot of sku at node (admin key).
func (c *Client) PutStock(ctx context.Context, node, sku string, onHand, safety int64) (StockLevel, error) {
	var l StockLevel
	_, err := c.doJSON(ctx, http.MethodPut, "/v1/inventory/"+url.PathEscape(node)+"/"+url.PathEscape(sku),
		c.admin, map[string]int64{"on_hand": onHand, "safety_stock": safety}, &l)
	return l, err
}

// SKUInventory is GET /v1/inventory/{sku}.
type SKUInventory struct {
	SKU       string       `json:"sku"`
	Available int64        `json:"available"`
	Nodes     []StockLevel `json:"nodes"`
}

// Inventory reads every node's counters for sku (admin key). A SKU the
// server does not know (404) is returned empty, without error.
func (c *Client) Inventory(ctx context.Context, sku string) (SKUInventory, error) {
	var inv SKUInventory
	status, err := c.doJSON(ctx, http.MethodGet, "/v1/inventory/"+url.PathEscape(sku), c.admin, nil, &inv)
	if status == http.StatusNotFound {
		return SKUInventory{SKU: sku}, nil
	}
	for i := range inv.Nodes {
		if inv.Nodes[i].SKU == "" {
			inv.Nodes[i].SKU = sku
		}
	}
	return inv, err
}

// OrderView is the part of an order the load test reads back. It decodes
// leniently: only these fields are read, and a reserved_until that is
// null, empty or not RFC 3339 is left zero rather than failing the order.
type OrderView struct {
	ID            string      `json:"id"`
	ExternalID    string      `json:"external_id"`
	Channel       string      `json:"channel"`
	Status        string      `json:"status"`
	PaymentStatus string      `json:"payment_status"`
	ReservedUntil lenientTime `json:"reserved_until"`
	Customer      struct {
		OmsdID string `json:"omsd_id"`
	} `json:"customer"`
	Attribution struct {
		Associate string `json:"associate"`
		Source    string `json:"source"`
	} `json:"attribution"`
	Shipments []struct {
		Status string `json:"status"`
		Lines  []Line `json:"lines"`
	} `json:"shipments"`
}

// HeldLines are the units the OMS holds for the order: the lines of its
// shipments that were neither rejected nor cancelled. A line the OMS
// could not re-source after a short pick (backordered) is in no such
// shipment and holds nothing.
func (v OrderView) HeldLines() []Line {
	var out []Line
	for _, s := range v.Shipments {
		if s.Status == "rejected" || s.Status == "cancelled" {
			continue
		}
		out = append(out, s.Lines...)
	}
	return out
}

// lenientTime is a time.Time that decodes anything without error.
type lenientTime struct{ time.Time }

func (t *lenientTime) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		if v, err := time.Parse(time.RFC3339Nano, s); err == nil {
			t.Time = v
		}
	}
	return nil
}

// ErrNotFound is returned by Order for a 404.
var ErrNotFound = errors.New("loadtest: not found")

// Order reads an order with its channel's key. A 404 is ErrNotFound.
func (c *Client) Order(ctx context.Context, channelKey, id string) (OrderView, error) {
	var o OrderView
	status, err := c.doJSON(ctx, http.MethodGet, "/v1/orders/"+url.PathEscape(id), channelKey, nil, &o)
	if status == http.StatusNotFound {
		return o, ErrNotFound
	}
	return o, err
}
