package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/sourcing"
)

// Orders is what the order routes need.
type Orders interface {
	Submit(ctx context.Context, channel, idemKey string, req *oms.OrderRequest) (oms.Result, error)
	GetOrder(ctx context.Context, id string) (*oms.Order, []byte, error)
}

// AdminAPI is what the admin routes need.
type AdminAPI interface {
	PutNode(ctx context.Context, n oms.Node) (bool, error)
	GetNode(ctx context.Context, id string) (oms.Node, error)
	ListNodes(ctx context.Context) ([]oms.Node, error)
	SetStock(ctx context.Context, node, sku string, s oms.StockSnapshot) (oms.LevelView, error)
	StockBySKU(ctx context.Context, sku string) (oms.SKUStock, error)
	Rules() *sourcing.RuleSet
	ActivateRules(ctx context.Context, doc []byte) (*sourcing.RuleSet, error)
	Simulate(ctx context.Context, channel string, req *oms.OrderRequest, draft *sourcing.RuleSet) (*sourcing.Result, error)
	PutPromotion(ctx context.Context, p oms.Promotion) error
	ClearReview(ctx context.Context, id string) (*oms.Order, error)
}

// RateConfig is the default token bucket of a channel; a channel's own
// rate_per_sec and burst override it.
type RateConfig struct {
	PerSec float64 // 0: no limit
	Burst  int
}

// limiters keeps one token bucket per channel.
type limiters struct {
	def RateConfig
	mu  sync.Mutex
	m   map[string]*rate.Limiter
}

func (l *limiters) get(c oms.Channel) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim, ok := l.m[c.ID]; ok {
		return lim
	}
	r, b := l.def.PerSec, l.def.Burst
	if c.RatePerSec > 0 {
		r = c.RatePerSec
	}
	if c.Burst > 0 {
		b = c.Burst
	}
	lim := rate.NewLimiter(rate.Inf, 0)
	if r > 0 {
		if b <= 0 {
			b = int(math.Max(1, r))
		}
		lim = rate.NewLimiter(rate.Limit(r), b)
	}
	l.m[c.ID] = lim
	return lim
}

// allow takes a token or returns the 429 error with Retry-After.
func (l *limiters) allow(c oms.Channel) error {
	lim := l.get(c)
	if lim.Allow() {
		return nil
	}
	wait := time.Duration(float64(time.Second) / math.Max(float64(lim.Limit()), 1e-9))
	return &oms.Error{Kind: oms.KindRateLimited, Slug: oms.SlugRateLimited,
		Detail: "the channel's order rate limit is exceeded", RetryAfter: max(wait, time.Second)}
}

// OrderRoutes registers the order and admin routes.
func OrderRoutes(orders Orders, admin AdminAPI, rates RateConfig) func(mux *http.ServeMux, s *Server) {
	lims := &limiters{def: rates, m: map[string]*rate.Limiter{}}
	return func(mux *http.ServeMux, s *Server) {
		h := &orderHandlers{s: s, orders: orders, admin: admin, lims: lims}
		mux.HandleFunc("POST /v1/orders", s.ChannelAuth(h.submit))
		mux.HandleFunc("GET /v1/orders/{id}", s.ChannelAuth(h.get))
		mux.HandleFunc("GET /v1/orders", s.ChannelAuth(h.byExternal))
		mux.HandleFunc("POST /v1/orders/{id}/release", s.Admin(h.release))

		mux.HandleFunc("PUT /v1/nodes/{id}", s.Admin(h.putNode))
		mux.HandleFunc("GET /v1/nodes/{id}", s.Admin(h.getNode))
		mux.HandleFunc("GET /v1/nodes", s.Admin(h.listNodes))
		mux.HandleFunc("PUT /v1/inventory/{node}/{sku}", s.Admin(h.putStock))
		mux.HandleFunc("GET /v1/inventory/{sku}", s.Admin(h.getStock))
		mux.HandleFunc("GET /v1/sourcing/rules", s.Admin(h.getRules))
		mux.HandleFunc("PUT /v1/sourcing/rules", s.Admin(h.putRules))
		mux.HandleFunc("POST /v1/sourcing/simulate", s.Admin(h.simulate))
		mux.HandleFunc("PUT /v1/promotions/{id}", s.Admin(h.putPromotion))
	}
}

type orderHandlers struct {
	s      *Server
	orders Orders
	admin  AdminAPI
	lims   *limiters
}

func (h *orderHandlers) submit(w http.ResponseWriter, r *http.Request) {
	ch, _ := ChannelOf(r.Context())
	if err := h.lims.allow(ch); err != nil {
		h.s.writeError(w, r, err)
		return
	}
	body, err := h.s.readBody(w, r)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	var req oms.OrderRequest
	if err := decodeStrict(body, &req); err != nil {
		h.s.writeError(w, r, err)
		return
	}
	res, err := h.orders.Submit(r.Context(), ch.ID, r.Header.Get("Idempotency-Key"), &req)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/orders/"+res.Order.ID)
	}
	if b := res.Order.Encoded(); b != nil {
		writeRaw(w, status, b)
		return
	}
	writeJSON(w, status, res.Order)
}

// channelOrder reads an order of the caller's channel; another channel's
// order is a 404, like a missing one.
func (h *orderHandlers) channelOrder(r *http.Request, id string) (*oms.Order, error) {
	ch, _ := ChannelOf(r.Context())
	o, _, err := h.orders.GetOrder(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if o.Channel != ch.ID {
		return nil, oms.Errorf(oms.KindNotFound, oms.SlugNotFound, "no such order")
	}
	return o, nil
}

func (h *orderHandlers) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if len(id) != 36 {
		h.s.writeError(w, r, oms.Errorf(oms.KindNotFound, oms.SlugNotFound, "no such order"))
		return
	}
	o, err := h.channelOrder(r, id)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (h *orderHandlers) byExternal(w http.ResponseWriter, r *http.Request) {
	ext := r.URL.Query().Get("external_id")
	if ext == "" || len(ext) > 128 {
		h.s.writeError(w, r, oms.Invalid("external_id is required", oms.FieldError{Field: "external_id", Message: "is required (query parameter)"}))
		return
	}
	ch, _ := ChannelOf(r.Context())
	o, err := h.channelOrder(r, oms.OrderID(ch.ID, ext))
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (h *orderHandlers) release(w http.ResponseWriter, r *http.Request) {
	o, err := h.admin.ClearReview(r.Context(), r.PathValue("id"))
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (h *orderHandlers) putNode(w http.ResponseWriter, r *http.Request) {
	body, err := h.s.readBody(w, r)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	var n oms.Node
	if err := decodeStrict(body, &n); err != nil {
		h.s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	if n.ID == "" {
		n.ID = id
	}
	if n.ID != id {
		h.s.writeError(w, r, oms.Invalid("the node id differs from the path", oms.FieldError{Field: "id", Message: "must equal the id in the path"}))
		return
	}
	created, err := h.admin.PutNode(r.Context(), n)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, n)
}

func (h *orderHandlers) getNode(w http.ResponseWriter, r *http.Request) {
	n, err := h.admin.GetNode(r.Context(), r.PathValue("id"))
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

func (h *orderHandlers) listNodes(w http.ResponseWriter, r *http.Request) {
	ns, err := h.admin.ListNodes(r.Context())
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": ns})
}

func (h *orderHandlers) putStock(w http.ResponseWriter, r *http.Request) {
	body, err := h.s.readBody(w, r)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	var snap oms.StockSnapshot
	if err := decodeStrict(body, &snap); err != nil {
		h.s.writeError(w, r, err)
		return
	}
	l, err := h.admin.SetStock(r.Context(), r.PathValue("node"), r.PathValue("sku"), snap)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (h *orderHandlers) getStock(w http.ResponseWriter, r *http.Request) {
	st, err := h.admin.StockBySKU(r.Context(), r.PathValue("sku"))
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *orderHandlers) getRules(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.admin.Rules())
}

func (h *orderHandlers) putRules(w http.ResponseWriter, r *http.Request) {
	body, err := h.s.readBody(w, r)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	rs, err := h.admin.ActivateRules(r.Context(), body)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rs)
}

// simulateRequest is an order body, with the channel to plan for and an
// optional draft rule set.
type simulateRequest struct {
	oms.OrderRequest
	Channel string          `json:"channel"`
	Rules   json.RawMessage `json:"rules,omitempty"`
}

func (h *orderHandlers) simulate(w http.ResponseWriter, r *http.Request) {
	body, err := h.s.readBody(w, r)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	var req simulateRequest
	if err := decodeStrict(body, &req); err != nil {
		h.s.writeError(w, r, err)
		return
	}
	if req.Channel == "" {
		req.Channel = "simulation"
	}
	var draft *sourcing.RuleSet
	if len(req.Rules) > 0 {
		rs, err := sourcing.ParseRules(req.Rules)
		if err != nil {
			h.s.writeError(w, r, rulesError(err))
			return
		}
		draft = rs
	}
	res, err := h.admin.Simulate(r.Context(), req.Channel, &req.OrderRequest, draft)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func rulesError(err error) error {
	var ve *sourcing.ValidationError
	if errors.As(err, &ve) {
		e := oms.Invalid("the rule set is not valid")
		for _, f := range ve.Errors {
			e.Fields = append(e.Fields, oms.FieldError{Field: "rules." + f.Field, Message: f.Message})
		}
		return e
	}
	return oms.Invalid("the rule set is not valid", oms.FieldError{Field: "rules", Message: err.Error()})
}

func (h *orderHandlers) putPromotion(w http.ResponseWriter, r *http.Request) {
	body, err := h.s.readBody(w, r)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	var p oms.Promotion
	if err := decodeStrict(body, &p); err != nil {
		h.s.writeError(w, r, err)
		return
	}
	p.ID = r.PathValue("id")
	if err := h.admin.PutPromotion(r.Context(), p); err != nil {
		h.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}
