package httpapi

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/omsd/omsd/oms"
)

// AuthConfig tunes how the server remembers keys and slows down callers
// that fail to authenticate. The zero value means defaults.
type AuthConfig struct {
	// UnknownKeyTTL is how long a key the channel store does not know is
	// answered 401 from memory, without asking the store again; default
	// 10s, negative: never remembered. A key created through this server
	// works at once; a key created through another instance works here at
	// the latest UnknownKeyTTL after its first failed use.
	UnknownKeyTTL time.Duration
	// UnknownKeys caps the unknown keys remembered (least recently used
	// first out); default 10000.
	UnknownKeys int
	// FailuresPerSec and FailureBurst are the token bucket of failed
	// authentications per source address (an IPv4 address, an IPv6 /64):
	// past it, requests from the source that do not carry an already
	// verified key are answered 429 with Retry-After, and the channel store
	// is not asked. Defaults 1 and 20; FailuresPerSec < 0: no limit.
	FailuresPerSec float64
	FailureBurst   int
	// Sources caps the source addresses tracked (least recently used first
	// out); default 10000.
	Sources int
}

func (c *AuthConfig) setDefaults() {
	if c.UnknownKeyTTL == 0 {
		c.UnknownKeyTTL = 10 * time.Second
	}
	if c.UnknownKeys <= 0 {
		c.UnknownKeys = 10000
	}
	if c.FailuresPerSec == 0 {
		c.FailuresPerSec = 1
	}
	if c.FailureBurst <= 0 {
		c.FailureBurst = 20
	}
	if c.Sources <= 0 {
		c.Sources = 10000
	}
}

// maxKeyLen bounds a bearer token; longer ones are refused unhashed.
const maxKeyLen = 256

// Reasons of failed authentications (the reason label of
// omsd_http_auth_failures_total).
const (
	failMissing   = "missing_key"   // no bearer token
	failMalformed = "malformed_key" // a token longer than any key
	failUnknown   = "unknown_key"   // no channel has this key (from the store or from memory)
	failNotAdmin  = "not_admin_key" // an admin route called without the admin key
	failThrottled = "throttled"     // the source is past its failure budget: 429
)

var errUnauthorized = &oms.Error{Kind: oms.KindUnauthorized, Slug: oms.SlugUnauthorized, Detail: "a valid API key is required (Authorization: Bearer <key>)"}

// auth holds what authentication remembers between requests.
type auth struct {
	now      func() time.Time
	unknown  *unknownKeys
	failures *failureLimiter // nil: no limit
	known    sync.Map        // string(key hash) -> oms.Channel

	failed  *prometheus.CounterVec
	negHits prometheus.Counter
}

func newAuth(cfg AuthConfig, now func() time.Time) *auth {
	a := &auth{now: now, unknown: &unknownKeys{ttl: cfg.UnknownKeyTTL, m: newLRU[string, time.Time](cfg.UnknownKeys)}}
	if cfg.FailuresPerSec > 0 {
		a.failures = &failureLimiter{every: rate.Limit(cfg.FailuresPerSec), burst: cfg.FailureBurst,
			m: newLRU[string, *rate.Limiter](cfg.Sources)}
	}
	a.failed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_http_auth_failures_total", Help: "Failed authentications by reason.",
	}, []string{"reason"})
	for _, r := range []string{failMissing, failMalformed, failUnknown, failNotAdmin, failThrottled} {
		a.failed.WithLabelValues(r)
	}
	a.negHits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "omsd_http_auth_unknown_key_cache_hits_total",
		Help: "Unknown API keys answered from memory without asking the channel store.",
	})
	return a
}

func (a *auth) collectors() []prometheus.Collector {
	return []prometheus.Collector{a.failed, a.negHits}
}

// unknownKeys remembers, for a while, key hashes the channel store did not
// know (a negative cache). gen is bumped whenever a key is created, so that
// a lookup that began before the creation cannot store its stale answer
// after it.
type unknownKeys struct {
	ttl time.Duration // <= 0: nothing is remembered
	mu  sync.Mutex
	gen uint64
	m   *lru[string, time.Time] // hash -> expiry
}

func (u *unknownKeys) generation() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.gen
}

// has reports whether hash is remembered as unknown at now.
func (u *unknownKeys) has(hash string, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	exp, ok := u.m.get(hash)
	if ok && !now.Before(exp) {
		u.m.remove(hash)
		return false
	}
	return ok
}

// add remembers hash as unknown, unless a key was created since gen.
func (u *unknownKeys) add(hash string, gen uint64, now time.Time) {
	if u.ttl <= 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if gen == u.gen {
		u.m.put(hash, now.Add(u.ttl))
	}
}

// created forgets hash (a key just created) and voids lookups in flight.
func (u *unknownKeys) created(hash string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.gen++
	u.m.remove(hash)
}

func (u *unknownKeys) len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.m.len()
}

// failureLimiter keeps a token bucket of failed authentications per source.
type failureLimiter struct {
	every rate.Limit
	burst int
	mu    sync.Mutex
	m     *lru[string, *rate.Limiter]
}

func (l *failureLimiter) bucket(src string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m.get(src)
	if !ok {
		lim = rate.NewLimiter(l.every, l.burst)
		l.m.put(src, lim)
	}
	return lim
}

// blocked reports whether src has no failure left at now, and how long
// until it has one.
func (l *failureLimiter) blocked(src string, now time.Time) (time.Duration, bool) {
	tokens := l.bucket(src).TokensAt(now)
	if tokens >= 1 {
		return 0, false
	}
	return time.Duration((1 - tokens) / float64(l.every) * float64(time.Second)), true
}

// fail spends one failure of src.
func (l *failureLimiter) fail(src string, now time.Time) { l.bucket(src).AllowN(now, 1) }

func (l *failureLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m.len()
}

// sourceOf is the address failures are counted by: the peer's IP (proxies'
// X-Forwarded-For is not trusted), an IPv6 peer by its /64, since one host
// commonly holds a whole /64.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.String()
		}
	}
	return ip.String()
}

// throttled answers 429 if the request's source has used up its failures.
func (s *Server) throttled(w http.ResponseWriter, r *http.Request, src string) bool {
	if s.auth.failures == nil {
		return false
	}
	wait, blocked := s.auth.failures.blocked(src, s.auth.now())
	if !blocked {
		return false
	}
	s.auth.failed.WithLabelValues(failThrottled).Inc()
	s.writeError(w, r, &oms.Error{Kind: oms.KindRateLimited, Slug: oms.SlugRateLimited,
		Detail: "too many failed authentications from this address", RetryAfter: max(wait, time.Second)})
	return true
}

// refuse answers 401, counting the failure against the source.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, src, reason string) {
	s.auth.failed.WithLabelValues(reason).Inc()
	if s.auth.failures != nil {
		s.auth.failures.fail(src, s.auth.now())
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="omsd"`)
	s.writeError(w, r, errUnauthorized)
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Admin wraps a handler that only the admin key may call. A failure is a
// 401, or a 429 once the source has failed too often.
func (s *Server) Admin(h http.HandlerFunc) http.HandlerFunc {
	admin := []byte(s.cfg.AdminKey)
	return func(w http.ResponseWriter, r *http.Request) {
		k := bearer(r)
		if k != "" && subtle.ConstantTimeCompare([]byte(k), admin) == 1 {
			h(w, r)
			return
		}
		src := sourceOf(r)
		if s.throttled(w, r, src) {
			return
		}
		reason := failNotAdmin
		if k == "" {
			reason = failMissing
		}
		s.refuse(w, r, src, reason)
	}
}

// ChannelAuth wraps a handler that a channel key calls; the channel is put
// in the context. Keys are looked up by their SHA-256 and remembered: a
// known key for the life of the server, an unknown one for
// AuthConfig.UnknownKeyTTL. A failure is a 401, or a 429 once the source
// has failed too often; an error of the store other than "not found" is
// answered as that error (a 503 for an unreachable database).
func (s *Server) ChannelAuth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k := bearer(r)
		var hash []byte
		if k != "" && len(k) <= maxKeyLen {
			hash = oms.HashKey(k)
			if v, ok := s.auth.known.Load(string(hash)); ok {
				h(w, withChannel(r, v.(oms.Channel)))
				return
			}
		}
		src := sourceOf(r)
		if s.throttled(w, r, src) {
			return
		}
		switch {
		case k == "":
			s.refuse(w, r, src, failMissing)
			return
		case hash == nil:
			s.refuse(w, r, src, failMalformed)
			return
		}
		if s.auth.unknown.has(string(hash), s.auth.now()) {
			s.auth.negHits.Inc()
			s.refuse(w, r, src, failUnknown)
			return
		}
		gen := s.auth.unknown.generation()
		c, err := s.channels.ChannelByKeyHash(r.Context(), hash)
		if err != nil {
			if oms.KindOf(err) != oms.KindNotFound {
				s.writeError(w, r, fmt.Errorf("httpapi: look up channel key: %w", err))
				return
			}
			s.auth.unknown.add(string(hash), gen, s.auth.now())
			s.refuse(w, r, src, failUnknown)
			return
		}
		s.auth.known.Store(string(hash), c)
		h(w, withChannel(r, c))
	}
}

func withChannel(r *http.Request, c oms.Channel) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), keyChannel, c))
}

// ChannelOf returns the channel authenticated for this request.
func ChannelOf(ctx context.Context) (oms.Channel, bool) {
	c, ok := ctx.Value(keyChannel).(oms.Channel)
	return c, ok
}

// AdminOrChannel wraps a handler that the admin key (no channel in the
// context: every channel's resources) or a channel key (its own only)
// calls.
func (s *Server) AdminOrChannel(h http.HandlerFunc) http.HandlerFunc {
	admin := []byte(s.cfg.AdminKey)
	channel := s.ChannelAuth(h)
	return func(w http.ResponseWriter, r *http.Request) {
		if k := bearer(r); k != "" && subtle.ConstantTimeCompare([]byte(k), admin) == 1 {
			h(w, r)
			return
		}
		channel(w, r)
	}
}
