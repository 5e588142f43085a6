package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/omsd/omsd/oms"
)

// Config configures the HTTP API. The zero value means defaults, except
// AdminKey, which is required.
type Config struct {
	// Addr to listen on; default "127.0.0.1:8080".
	Addr string
	// Listener, when set, is served instead of listening on Addr (a
	// socket handed down by a supervisor, which keeps the port across
	// restarts of the process).
	Listener net.Listener
	// AdminKey authorizes the admin endpoints (required).
	AdminKey string
	// MaxBodyBytes caps request bodies; default 1 MiB.
	MaxBodyBytes int64
	// ReadyChecks are run by /readyz; each must answer within a second.
	ReadyChecks map[string]func(ctx context.Context) error
	// DegradedChecks are run by /readyz too, but a failing one only
	// reports the instance "degraded" (200): a dependency whose outage
	// the instance absorbs (the broker, behind the outbox).
	DegradedChecks map[string]func(ctx context.Context) error
	// AccessLog logs every request at info level: method, route pattern,
	// status, duration, response bytes and request id; never the query
	// string, a header or a body.
	AccessLog bool
	Log       *slog.Logger
	// Auth tunes the memory of keys and the limit on failed
	// authentications.
	Auth AuthConfig
	// Now is the clock of the authentication memory and limits; default
	// time.Now.
	Now func() time.Time
	// Registerer receives the HTTP metrics; Gatherer serves /metrics.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
}

// Server is omsd's HTTP API: the mux, the middleware, authentication and
// the one error mapper. Each route group's handlers are methods on a small
// struct holding the interfaces that group needs (orderHandlers,
// adminHandlers, fulfillmentHandlers).
type Server struct {
	cfg      Config
	log      *slog.Logger
	channels Channels
	mux      *http.ServeMux
	handler  http.Handler
	srv      *http.Server
	ln       net.Listener

	auth   *auth
	newKey func() (key string, hash []byte) // oms.NewAPIKey; tests fix it

	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inflight prometheus.Gauge
}

// New builds a server; call Register to add route groups, then Listen.
func New(cfg Config, channels Channels) (*Server, error) {
	if cfg.AdminKey == "" {
		return nil, errors.New("httpapi: an admin key is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Auth.setDefaults()
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Gatherer == nil {
		if g, ok := cfg.Registerer.(prometheus.Gatherer); ok {
			cfg.Gatherer = g
		} else {
			cfg.Gatherer = prometheus.NewRegistry()
		}
	}
	s := &Server{cfg: cfg, log: cfg.Log, channels: channels, mux: http.NewServeMux(),
		auth: newAuth(cfg.Auth, cfg.Now), newKey: oms.NewAPIKey}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_http_requests_total", Help: "HTTP requests by route and status.",
	}, []string{"route", "status"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "omsd_http_request_duration_seconds", Help: "HTTP request latency by route and status.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
	}, []string{"route", "status"})
	s.inflight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "omsd_http_requests_in_flight", Help: "HTTP requests being served.",
	})
	for _, c := range append([]prometheus.Collector{s.requests, s.latency, s.inflight}, s.auth.collectors()...) {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("httpapi: register metrics: %w", err)
		}
	}
	return s, nil
}

// Register adds a group of routes (OrderRoutes, FulfillmentRoutes). Call
// it before Handler or Listen; a pattern registered twice panics, as
// http.ServeMux does.
func (s *Server) Register(fn func(mux *http.ServeMux, s *Server)) { fn(s.mux, s) }

// Handler returns the complete handler (routes plus middleware).
func (s *Server) Handler() http.Handler {
	if s.handler == nil {
		s.routes()
		s.handler = s.middleware(s.mux)
	}
	return s.handler
}

// routes registers the foundation routes in one place.
func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("POST /v1/channels", s.Admin(handleJSON(s, http.StatusCreated, s.createChannel)))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, oms.Errorf(oms.KindNotFound, oms.SlugNotFound, "no route for %s %s", r.Method, r.URL.Path))
	})
}

// Listen opens the listener synchronously (errors come back here) and
// serves in a goroutine.
func (s *Server) Listen() error {
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("httpapi: listen %s: %w", s.cfg.Addr, err)
		}
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http serve", "err", err)
		}
	}()
	s.log.Info("http listening", "addr", ln.Addr().String())
	return nil
}

// URL is the base URL of the listening server.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Shutdown stops accepting requests and waits for those in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyChannel
)

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(keyRequestID).(string)
	return id
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// middleware adds the request id, recovers panics and records metrics by
// route pattern (never by raw path, which would explode the label set).
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if id == "" || len(id) > 128 {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(context.WithValue(r.Context(), keyRequestID, id))
		sw := &statusWriter{ResponseWriter: w}
		s.inflight.Inc()
		defer func() {
			s.inflight.Dec()
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in handler", "request_id", id, "route", r.Pattern, "panic", fmt.Sprint(v))
				if sw.status == 0 {
					s.writeError(sw, r, fmt.Errorf("panic: %v", v))
				}
			}
			route := r.Pattern
			if route == "" || route == "/" {
				route = "unmatched"
			}
			status := strconv.Itoa(sw.status)
			took := time.Since(start)
			s.requests.WithLabelValues(route, status).Inc()
			s.latency.WithLabelValues(route, status).Observe(took.Seconds())
			if s.cfg.AccessLog {
				s.log.Info("http request", "method", r.Method, "route", route, "status", sw.status,
					"duration_ms", float64(took.Microseconds())/1000, "bytes", sw.bytes, "request_id", id)
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz really pings every dependency; a failing ReadyCheck is a 503
// naming it, a failing DegradedCheck a 200 "degraded" naming it.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	type result struct {
		name     string
		degraded bool
		err      error
	}
	n := len(s.cfg.ReadyChecks) + len(s.cfg.DegradedChecks)
	results := make(chan result, n)
	for degraded, checks := range []map[string]func(context.Context) error{s.cfg.ReadyChecks, s.cfg.DegradedChecks} {
		for name, check := range checks {
			go func() {
				ctx, cancel := context.WithTimeout(r.Context(), time.Second)
				defer cancel()
				results <- result{name, degraded == 1, check(ctx)}
			}()
		}
	}
	checks := map[string]string{}
	ok, degraded := true, false
	for range n {
		res := <-results
		switch {
		case res.err == nil:
			checks[res.name] = "ok"
		case res.degraded:
			degraded = true
			checks[res.name] = "degraded: " + res.err.Error()
		default:
			ok = false
			checks[res.name] = "failing: " + res.err.Error()
		}
	}
	if !ok {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = jsonEncode(w, map[string]any{
			"type": TypeURI(oms.SlugNotReady), "title": "Service Unavailable", "status": 503,
			"detail": "a dependency is not reachable", "checks": checks,
		})
		return
	}
	status := "ready"
	if degraded {
		status = "degraded"
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": status, "checks": checks})
}
