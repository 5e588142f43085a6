package httpapi

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/omsd/omsd/oms"
)

// Orders is what the order routes need.
type Orders interface {
	Submit(ctx context.Context, channel, idemKey string, req *oms.OrderRequest) (oms.Result, error)
	GetOrder(ctx context.Context, id string) (*oms.Order, []byte, error)
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

// OrderRoutes registers the order routes (channel key) and the admin
// routes (admin key: nodes, stock, rules, simulation, promotions, review
// clearing); see registerAdminRoutes.
func OrderRoutes(orders Orders, admin AdminAPI, rates RateConfig) func(mux *http.ServeMux, s *Server) {
	lims := &limiters{def: rates, m: map[string]*rate.Limiter{}}
	return func(mux *http.ServeMux, s *Server) {
		registerOrderRoutes(mux, &orderHandlers{s: s, orders: orders, lims: lims})
		registerAdminRoutes(mux, &adminHandlers{s: s, admin: admin})
	}
}

// registerOrderRoutes registers what a channel does with its orders.
// Payment and cancellation are in FulfillmentRoutes.
func registerOrderRoutes(mux *http.ServeMux, h *orderHandlers) {
	s := h.s
	mux.HandleFunc("POST /v1/orders", s.ChannelAuth(h.limited(handleJSON(s, http.StatusOK, h.submit))))
	mux.HandleFunc("GET /v1/orders/{id}", s.ChannelAuth(handleJSON(s, http.StatusOK, h.get)))
	mux.HandleFunc("GET /v1/orders", s.ChannelAuth(handleJSON(s, http.StatusOK, h.byExternal)))
}

type orderHandlers struct {
	s      *Server
	orders Orders
	lims   *limiters
}

// overloaded is implemented by an Orders that refuses work past an
// admission limit (oms.Intake.Overloaded).
type overloaded interface{ Overloaded() bool }

// limited takes a token of the channel's bucket before anything else, and
// answers 503 at once when intake is at its admission limit, so that a
// channel past its rate or an instance past its capacity costs no
// decoding.
func (h *orderHandlers) limited(next http.HandlerFunc) http.HandlerFunc {
	ov, _ := h.orders.(overloaded)
	return func(w http.ResponseWriter, r *http.Request) {
		ch, _ := ChannelOf(r.Context())
		if err := h.lims.allow(ch); err != nil {
			h.s.writeError(w, r, err)
			return
		}
		if ov != nil && ov.Overloaded() {
			h.s.writeError(w, r, oms.ErrOverloaded)
			return
		}
		next(w, r)
	}
}

// submit answers 201 with a Location for a new order, 200 for a repeat.
func (h *orderHandlers) submit(r *http.Request, req *oms.OrderRequest) (reply, error) {
	ch, _ := ChannelOf(r.Context())
	key, err := idempotencyKey(r.Header)
	if err != nil {
		return reply{}, err
	}
	res, err := h.orders.Submit(r.Context(), ch.ID, key, req)
	if err != nil {
		return reply{}, err
	}
	rp := reply{status: http.StatusOK, body: res.Order, raw: res.Order.Encoded()}
	if res.Created {
		rp.status = http.StatusCreated
		rp.location = "/v1/orders/" + res.Order.ID
	}
	return rp, nil
}

// idempotencyKey returns the request's Idempotency-Key ("" if none). A key
// given twice, or one oms.CheckIdempotencyKey refuses (too long, not
// UTF-8, control characters), is a 400 naming the header: it is stored and
// compared byte for byte, so it must be one exact, printable value.
func idempotencyKey(h http.Header) (string, error) {
	vals := h.Values("Idempotency-Key")
	if len(vals) == 0 {
		return "", nil
	}
	if len(vals) > 1 {
		return "", &oms.Error{Kind: oms.KindBadRequest, Slug: oms.SlugBadHeader,
			Detail: "the Idempotency-Key header is not valid", Fields: []oms.FieldError{{Field: "Idempotency-Key", Message: "must be given once"}}}
	}
	return vals[0], oms.CheckIdempotencyKey(vals[0])
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

func (h *orderHandlers) get(r *http.Request, _ *noBody) (*oms.Order, error) {
	id := r.PathValue("id")
	if len(id) != 36 {
		return nil, oms.Errorf(oms.KindNotFound, oms.SlugNotFound, "no such order")
	}
	return h.channelOrder(r, id)
}

func (h *orderHandlers) byExternal(r *http.Request, _ *noBody) (*oms.Order, error) {
	ext := r.URL.Query().Get("external_id")
	if ext == "" || len(ext) > 128 {
		return nil, oms.Invalid("external_id is required", oms.FieldError{Field: "external_id", Message: "is required (query parameter)"})
	}
	ch, _ := ChannelOf(r.Context())
	return h.channelOrder(r, oms.OrderID(ch.ID, ext))
}
