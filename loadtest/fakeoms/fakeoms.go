// Package fakeoms is an in-memory stand-in for the omsd HTTP API (the
// subset of the v1 API that the load test uses), for the load test's
// own tests. It reserves stock greedily across nodes, honours
// Idempotency-Key and (channel, external_id), and lets a test inject
// latency, failures and ledger faults. It is not a model of omsd's
// sourcing rules.
package fakeoms

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ProblemBase prefixes problem types, as omsd's do.
const ProblemBase = "https://omsd.dev/problems/"

// Interceptor runs first on every request; returning true means it wrote
// the answer (fault injection).
type Interceptor func(w http.ResponseWriter, r *http.Request, body []byte) bool

// Server is the fake API. Set AdminKey before serving; the faults can be
// changed at any time.
type Server struct {
	// AdminKey is the admin bearer key. Default "admin".
	AdminKey string

	delay     atomic.Int64 // time.Duration slept before each POST /v1/orders
	intercept atomic.Pointer[Interceptor]

	// OrderPosts counts POST /v1/orders requests that reached the handler.
	OrderPosts atomic.Int64

	mu       sync.Mutex
	channels map[string]string // key -> channel id
	chanIDs  map[string]bool
	nodes    map[string]json.RawMessage
	stock    map[stockKey]*level
	orders   map[string]*order
	byExt    map[string]string // channel/external_id -> order id
	byIdem   map[string]idem   // channel/key -> first body and order id
	seq      int
}

type stockKey struct{ node, sku string }

type level struct{ onHand, reserved, safety int64 }

type alloc struct {
	node string
	sku  string
	qty  int64
}

type order struct {
	ID            string          `json:"id"`
	ExternalID    string          `json:"external_id"`
	Channel       string          `json:"channel"`
	Status        string          `json:"status"`
	PaymentStatus string          `json:"payment_status"`
	ReservedUntil *time.Time      `json:"reserved_until,omitempty"`
	Lines         json.RawMessage `json:"lines"`
	Shipments     []shipment      `json:"shipments"`
	allocs        []alloc
	body          []byte
}

type shipment struct {
	ID     string         `json:"id"`
	NodeID string         `json:"node_id"`
	Status string         `json:"status"`
	Lines  []shipmentLine `json:"lines"`
}

type shipmentLine struct {
	SKU string `json:"sku"`
	Qty int64  `json:"qty"`
}

type idem struct {
	body []byte
	id   string
}

// New returns an empty fake with admin key "admin".
func New() *Server {
	return &Server{
		AdminKey: "admin",
		channels: map[string]string{}, chanIDs: map[string]bool{}, nodes: map[string]json.RawMessage{},
		stock: map[stockKey]*level{}, orders: map[string]*order{}, byExt: map[string]string{}, byIdem: map[string]idem{},
	}
}

func problem(w http.ResponseWriter, status int, typ, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": ProblemBase + typ, "title": http.StatusText(status), "status": status, "detail": detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ServeHTTP implements the API subset.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if ic := s.intercept.Load(); ic != nil && (*ic)(w, r, body) {
		return
	}
	key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	admin := key != "" && key == s.AdminKey
	s.mu.Lock()
	channel, isChannel := s.channels[key]
	s.mu.Unlock()
	if !admin && !isChannel {
		problem(w, http.StatusUnauthorized, "unauthorized", "unknown key")
		return
	}
	mux := http.NewServeMux()
	adminOnly := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !admin {
				problem(w, http.StatusForbidden, "forbidden", "admin key required")
				return
			}
			h(w, r)
		}
	}
	chanOnly := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !isChannel {
				problem(w, http.StatusForbidden, "forbidden", "channel key required")
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST /v1/channels", adminOnly(func(w http.ResponseWriter, r *http.Request) { s.createChannel(w, body) }))
	mux.HandleFunc("PUT /v1/nodes/{id}", adminOnly(func(w http.ResponseWriter, r *http.Request) { s.putNode(w, r.PathValue("id"), body) }))
	mux.HandleFunc("PUT /v1/inventory/{node}/{sku}", adminOnly(func(w http.ResponseWriter, r *http.Request) {
		s.putStock(w, r.PathValue("node"), r.PathValue("sku"), body)
	}))
	mux.HandleFunc("GET /v1/inventory/{sku}", adminOnly(func(w http.ResponseWriter, r *http.Request) { s.getInventory(w, r.PathValue("sku")) }))
	mux.HandleFunc("POST /v1/orders", chanOnly(func(w http.ResponseWriter, r *http.Request) {
		s.OrderPosts.Add(1)
		if d := time.Duration(s.delay.Load()); d > 0 {
			time.Sleep(d)
		}
		s.postOrder(w, channel, r.Header.Get("Idempotency-Key"), body)
	}))
	mux.HandleFunc("GET /v1/orders/{id}", chanOnly(func(w http.ResponseWriter, r *http.Request) { s.getOrder(w, channel, r.PathValue("id")) }))
	mux.HandleFunc("GET /v1/orders", chanOnly(func(w http.ResponseWriter, r *http.Request) {
		s.findOrder(w, channel, r.URL.Query().Get("external_id"))
	}))
	mux.ServeHTTP(w, r)
}

func (s *Server) createChannel(w http.ResponseWriter, body []byte) {
	var in struct{ ID, Name string }
	if err := json.Unmarshal(body, &in); err != nil || in.ID == "" {
		problem(w, http.StatusUnprocessableEntity, "validation", "id required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.chanIDs[in.ID] {
		problem(w, http.StatusConflict, "conflict", "channel exists")
		return
	}
	s.chanIDs[in.ID] = true
	key := fmt.Sprintf("ch_%s_%d", in.ID, len(s.chanIDs))
	s.channels[key] = in.ID
	writeJSON(w, http.StatusCreated, map[string]string{"id": in.ID, "name": in.Name, "api_key": key})
}

func (s *Server) putNode(w http.ResponseWriter, id string, body []byte) {
	s.mu.Lock()
	_, existed := s.nodes[id]
	s.nodes[id] = append(json.RawMessage(nil), body...)
	s.mu.Unlock()
	status := http.StatusCreated
	if existed {
		status = http.StatusOK
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (l *level) view(node, sku string) map[string]any {
	return map[string]any{"node_id": node, "sku": sku, "on_hand": l.onHand, "reserved": l.reserved,
		"safety_stock": l.safety, "available": l.onHand - l.reserved - l.safety}
}

func (s *Server) putStock(w http.ResponseWriter, node, sku string, body []byte) {
	var in struct {
		OnHand      int64 `json:"on_hand"`
		SafetyStock int64 `json:"safety_stock"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.OnHand < 0 {
		problem(w, http.StatusUnprocessableEntity, "validation", "bad stock")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.nodes[node]; !ok {
		problem(w, http.StatusNotFound, "not-found", "no such node")
		return
	}
	l := s.stock[stockKey{node, sku}]
	if l == nil {
		l = &level{}
		s.stock[stockKey{node, sku}] = l
	}
	l.onHand, l.safety = in.OnHand, in.SafetyStock
	writeJSON(w, http.StatusOK, l.view(node, sku))
}

func (s *Server) getInventory(w http.ResponseWriter, sku string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var nodes []map[string]any
	var avail int64
	for _, n := range s.nodesOf(sku) {
		l := s.stock[stockKey{n, sku}]
		nodes = append(nodes, l.view(n, sku))
		avail += max(0, l.onHand-l.reserved-l.safety)
	}
	if nodes == nil {
		problem(w, http.StatusNotFound, "not-found", "unknown sku")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sku": sku, "available": avail, "nodes": nodes})
}

func (s *Server) nodesOf(sku string) []string {
	var ns []string
	for k := range s.stock {
		if k.sku == sku {
			ns = append(ns, k.node)
		}
	}
	sort.Strings(ns)
	return ns
}

func (s *Server) postOrder(w http.ResponseWriter, channel, idemKey string, body []byte) {
	var in struct {
		ExternalID string `json:"external_id"`
		Lines      []struct {
			SKU string `json:"sku"`
			Qty int64  `json:"qty"`
		} `json:"lines"`
		Payment struct {
			Status string `json:"status"`
		} `json:"payment"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.ExternalID == "" || len(in.Lines) == 0 {
		problem(w, http.StatusUnprocessableEntity, "validation", "bad order")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if idemKey != "" {
		if prev, ok := s.byIdem[channel+"/"+idemKey]; ok {
			if !bytes.Equal(prev.body, body) {
				problem(w, http.StatusConflict, "idempotency-conflict", "same key, different body")
				return
			}
			writeJSON(w, http.StatusOK, s.orders[prev.id])
			return
		}
	}
	if id, ok := s.byExt[channel+"/"+in.ExternalID]; ok {
		writeJSON(w, http.StatusOK, s.orders[id])
		return
	}
	var allocs []alloc
	for _, ln := range in.Lines {
		need := ln.Qty
		for _, n := range s.nodesOf(ln.SKU) {
			l := s.stock[stockKey{n, ln.SKU}]
			take := min(need, max(0, l.onHand-l.reserved-l.safety))
			if take > 0 {
				l.reserved += take
				allocs = append(allocs, alloc{n, ln.SKU, take})
				need -= take
			}
			if need == 0 {
				break
			}
		}
		if need > 0 {
			for _, a := range allocs {
				s.stock[stockKey{a.node, a.sku}].reserved -= a.qty
			}
			problem(w, http.StatusConflict, "insufficient-stock", "not enough stock for "+ln.SKU)
			return
		}
	}
	s.seq++
	o := &order{ID: fmt.Sprintf("ord-%06d", s.seq), ExternalID: in.ExternalID, Channel: channel,
		Lines: json.RawMessage(mustJSON(in.Lines)), allocs: allocs, body: body, Shipments: []shipment{}}
	if in.Payment.Status == "paid" {
		o.Status, o.PaymentStatus = "released", "paid"
	} else {
		o.Status, o.PaymentStatus = "pending_payment", "pending"
		t := time.Now().Add(15 * time.Minute).UTC()
		o.ReservedUntil = &t
	}
	shipStatus := "requested"
	if o.Status == "pending_payment" {
		shipStatus = "pending"
	}
	for _, a := range allocs { // one shipment per node, in allocation order
		var sh *shipment
		for i := range o.Shipments {
			if o.Shipments[i].NodeID == a.node {
				sh = &o.Shipments[i]
			}
		}
		if sh == nil {
			o.Shipments = append(o.Shipments, shipment{ID: fmt.Sprintf("%s-S%d", o.ID, len(o.Shipments)+1), NodeID: a.node, Status: shipStatus})
			sh = &o.Shipments[len(o.Shipments)-1]
		}
		sh.Lines = append(sh.Lines, shipmentLine{SKU: a.sku, Qty: a.qty})
	}
	s.orders[o.ID] = o
	s.byExt[channel+"/"+in.ExternalID] = o.ID
	if idemKey != "" {
		s.byIdem[channel+"/"+idemKey] = idem{body: body, id: o.ID}
	}
	writeJSON(w, http.StatusCreated, o)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func (s *Server) getOrder(w http.ResponseWriter, channel, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[id]
	if !ok || o.Channel != channel {
		problem(w, http.StatusNotFound, "not-found", "no such order")
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (s *Server) findOrder(w http.ResponseWriter, channel, ext string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*order{}
	if id, ok := s.byExt[channel+"/"+ext]; ok {
		out = append(out, s.orders[id])
	}
	writeJSON(w, http.StatusOK, map[string]any{"orders": out})
}

// --- test controls -------------------------------------------------------

// SetDelay makes every POST /v1/orders sleep d before it is handled.
func (s *Server) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

// SetIntercept installs (or, with nil, removes) an interceptor.
func (s *Server) SetIntercept(fn Interceptor) {
	if fn == nil {
		s.intercept.Store(nil)
		return
	}
	s.intercept.Store(&fn)
}

// OrderIDs lists the orders, sorted.
func (s *Server) OrderIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.orders))
	for id := range s.orders {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// ShipReleased ships every released order: on-hand and reserved both drop
// by the allocated units, and the order becomes shipped.
func (s *Server) ShipReleased() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.orders {
		if o.Status != "released" {
			continue
		}
		for _, a := range o.allocs {
			l := s.stock[stockKey{a.node, a.sku}]
			l.onHand -= a.qty
			l.reserved -= a.qty
		}
		o.Status = "shipped"
		for i := range o.Shipments {
			o.Shipments[i].Status = "shipped"
		}
	}
}

// ExpirePending expires every pending-payment order; with release false
// its reservation is kept (a leak for the audit to find).
func (s *Server) ExpirePending(release bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.orders {
		if o.Status != "pending_payment" {
			continue
		}
		if release {
			for _, a := range o.allocs {
				s.stock[stockKey{a.node, a.sku}].reserved -= a.qty
			}
			for i := range o.Shipments {
				o.Shipments[i].Status = "cancelled"
			}
		}
		o.Status = "expired"
	}
}

// DeleteOrder forgets an order (its stock stays reserved).
func (s *Server) DeleteOrder(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.orders[id]; ok {
		delete(s.byExt, o.Channel+"/"+o.ExternalID)
		delete(s.orders, id)
	}
}

// AdjustReserved adds delta to a node's reserved count of sku.
func (s *Server) AdjustReserved(node, sku string, delta int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.stock[stockKey{node, sku}]; l != nil {
		l.reserved += delta
	}
}

// StripShipments keeps the order but releases its reservation and drops
// its shipments: an order stored without its stock.
func (s *Server) StripShipments(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[id]
	if !ok {
		return
	}
	for _, a := range o.allocs {
		s.stock[stockKey{a.node, a.sku}].reserved -= a.qty
	}
	o.allocs, o.Shipments = nil, []shipment{}
}
