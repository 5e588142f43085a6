package oms

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nyaruka/phonenumbers"
	"github.com/prometheus/client_golang/prometheus"
)

// Customers across channels. Every order is matched to one omsd customer
// by its buyer's normalized phone (E.164) or lowercased email; an order
// with neither is matched by its channel's own customer id, within that
// channel. The matching keys are stored only as keyed hashes (HMAC-SHA256
// under a server secret, see CustomerHasher), so the database holds no
// phone or email outside the orders themselves, and the hashes never leave
// it.
//
// Intake looks an order's keys up before its review checks, batched across
// concurrent orders (one SQL round trip per batch, read only); the commit
// writes the new keys, new customers, merges, bindings and the attribution
// aggregate in the order's own transaction, inside the round trip that
// already carries the order's rows.

// Attribution sources recorded on every stored order.
const (
	AttributionFromOrder   = "order"   // the order carried its own attribution
	AttributionFromBinding = "binding" // inherited from the customer's binding
	AttributionNone        = "none"    // neither
)

// Binding policies: whether an order with its own attribution moves a
// live binding.
const (
	BindKeepFirst = "keep_first"
	BindLatest    = "latest"
)

// Customer events on oms.orders, keyed by customer id (a customer's
// binding history stays in order on one partition).
const (
	EventCustomerBound   EventType = "customer.bound"
	EventCustomerRebound EventType = "customer.rebound"
)

// Reasons of a customer.rebound event.
const (
	RebindExpired = "expired" // the previous binding had run out
	RebindLatest  = "latest"  // policy latest: a newer attributed order
	RebindMerged  = "merged"  // adopted from a customer merged into this one
)

// CustomerHashKey is one secret of the customer hasher, named by its id.
type CustomerHashKey struct {
	ID     string
	Secret []byte
}

// ParseHashKeys reads "id:secret,id:secret" (the first hashes new keys).
func ParseHashKeys(s string) ([]CustomerHashKey, error) {
	var keys []CustomerHashKey
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, secret, ok := strings.Cut(part, ":")
		switch {
		case !ok || id == "":
			return nil, errors.New("each customer hash key is id:secret")
		case len(secret) < 16:
			return nil, fmt.Errorf("customer hash key %q: the secret must be at least 16 bytes", id)
		case len(id) > 32 || strings.ContainsAny(id, " \t"):
			return nil, fmt.Errorf("customer hash key %q: the id must be at most 32 characters without spaces", id)
		case seen[id]:
			return nil, fmt.Errorf("customer hash key %q is listed twice", id)
		}
		seen[id] = true
		keys = append(keys, CustomerHashKey{ID: id, Secret: []byte(secret)})
	}
	if len(keys) == 0 {
		return nil, errors.New("no customer hash key")
	}
	return keys, nil
}

// CustomerHasher turns a buyer's phone and email into matching keys. The
// first key hashes what is stored; every key is tried when matching, so
// that a key is rotated by putting a new one first: a customer found under
// an older key gets the new key's hash stored with its next order, and the
// key id on each stored hash says how many still depend on an old key.
type CustomerHasher struct {
	keys []CustomerHashKey
	pool []sync.Pool // of hmac hash.Hash, per key
}

// NewCustomerHasher returns a hasher over keys (at least one).
func NewCustomerHasher(keys []CustomerHashKey) (*CustomerHasher, error) {
	if len(keys) == 0 {
		return nil, errors.New("oms: the customer hasher needs a key")
	}
	h := &CustomerHasher{keys: keys, pool: make([]sync.Pool, len(keys))}
	for i := range keys {
		secret := keys[i].Secret
		h.pool[i].New = func() any { return hmac.New(sha256.New, secret) }
	}
	return h, nil
}

// CurrentKeyID is the id of the key that hashes new keys.
func (h *CustomerHasher) CurrentKeyID() string { return h.keys[0].ID }

func (h *CustomerHasher) hash(key int, kind, value string) []byte {
	m := h.pool[key].Get().(hash.Hash)
	m.Reset()
	_, _ = m.Write([]byte(kind))
	_, _ = m.Write([]byte{0})
	_, _ = m.Write([]byte(value))
	sum := m.Sum(nil)
	h.pool[key].Put(m)
	return sum
}

// Identity is one matching key of a buyer, hashed under every key of the
// hasher (Hashes[0] under the current one).
type Identity struct {
	Kind   string // phone, email or channel
	Hashes [][]byte
}

// Identities are the matching keys of an order's buyer: the phone in
// E.164 (a number without a country code read as the ship-to country's),
// the lowercased email, and, only when the order has neither, the
// channel's own customer id within that channel. A phone that does not
// parse as a possible number is not a key (the order is still taken).
func (h *CustomerHasher) Identities(channel string, req *OrderRequest) []Identity {
	var vals [3]struct{ kind, v string }
	n := 0
	if p := NormalizePhone(req.Customer.Phone, shipCountry(req)); p != "" {
		vals[n].kind, vals[n].v = "phone", p
		n++
	}
	if e := NormalizeEmail(req.Customer.Email); e != "" {
		vals[n].kind, vals[n].v = "email", e
		n++
	}
	if n == 0 && req.Customer.ID != "" {
		vals[n].kind, vals[n].v = "channel", channel+"\x00"+req.Customer.ID
		n++
	}
	ids := make([]Identity, n)
	for i := range n {
		ids[i].Kind = vals[i].kind
		ids[i].Hashes = make([][]byte, len(h.keys))
		for k := range h.keys {
			ids[i].Hashes[k] = h.hash(k, vals[i].kind, vals[i].v)
		}
	}
	return ids
}

func shipCountry(req *OrderRequest) string {
	if req.ShipTo != nil {
		return strings.ToUpper(req.ShipTo.Country)
	}
	return ""
}

// NormalizePhone returns phone in E.164, reading a number without a
// country code as region's (ISO 3166-1 alpha-2); "" when it is not a
// possible phone number.
func NormalizePhone(phone, region string) string {
	phone = strings.TrimSpace(phone)
	if phone == "" {
		return ""
	}
	if isE164(phone) {
		// Already normalized, as most channels send it: the parser (about
		// 20 µs) only checks what E.164 already says.
		return phone
	}
	if strings.HasPrefix(phone, "00") {
		phone = "+" + phone[2:]
	}
	num, err := phonenumbers.Parse(phone, region)
	if err != nil || !phonenumbers.IsPossibleNumber(num) {
		return ""
	}
	return phonenumbers.Format(num, phonenumbers.E164)
}

// isE164 reports a + followed by 8 to 15 digits, the first not 0.
func isE164(p string) bool {
	if len(p) < 9 || len(p) > 16 || p[0] != '+' || p[1] == '0' {
		return false
	}
	for i := 1; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// NormalizeEmail lowercases and trims an email; "" when it has no @.
func NormalizeEmail(email string) string {
	email = strings.ToLower(strings.TrimSpace(email))
	if !strings.Contains(email, "@") {
		return ""
	}
	return email
}

// Binding ties a customer to who brought them, for a period.
type Binding struct {
	Associate   string    `json:"associate,omitempty"`
	Store       string    `json:"store,omitempty"`
	Distributor string    `json:"distributor,omitempty"`
	BoundAt     time.Time `json:"bound_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	// OrderID is the order that made the binding.
	OrderID string `json:"source_order_id,omitempty"`
}

func (b *Binding) liveAt(t time.Time) bool { return b != nil && t.Before(b.ExpiresAt) }

func (b *Binding) sameParty(a *Attribution) bool {
	return b.Associate == a.Associate && b.Store == a.Store && b.Distributor == a.Distributor
}

// CustomerRecord is what a lookup finds for one stored key: the customer
// it leads to (after merges) with that customer's binding.
type CustomerRecord struct {
	Hash       []byte
	CustomerID string // the surviving customer
	CreatedAt  time.Time
	// Binding is the survivor's binding, nil when it never had one
	// (possibly expired); BindingVersion counts its changes.
	Binding        *Binding
	BindingVersion int
}

// CustomerStore is the customers' seam to the database.
type CustomerStore interface {
	// LookupCustomers finds the customers the hashes are stored for, in
	// one round trip.
	LookupCustomers(ctx context.Context, hashes [][]byte) ([]CustomerRecord, error)
}

// CustomerMatch is an order's customer as intake found it, and what the
// commit writes for it.
type CustomerMatch struct {
	ID  string // the omsd customer of the order
	New bool   // created by this order
	// Keys are the current-key hashes of the order's identities; the
	// commit stores those that are not stored yet.
	Keys  [][]byte
	KeyID string
	// Merge are customers this order links to ID (their orders and ids
	// then answer as ID's).
	Merge []string
	// Binding is the customer's binding as found (nil: never bound);
	// BindingVersion its version.
	Binding        *Binding
	BindingVersion int
	// Adopt is the live binding of a merged customer, for a survivor
	// without one.
	Adopt *Binding
	// Bind is what the order changes in the binding, nil: nothing.
	Bind *BindChange
}

// BindChange is a binding an order makes; the commit applies it only if
// the customer's binding version is still Expect (a concurrent change
// wins, and then no event is written).
type BindChange struct {
	Binding  Binding
	Previous *Binding
	Type     EventType
	Reason   string
	Expect   int
	// Replace: a later order's change in the same commit replaces this
	// one (policy latest); otherwise the first one stands.
	Replace bool
	Event   OutboxEvent
}

// CustomerConfig configures customer matching and attribution.
type CustomerConfig struct {
	// Policy is BindKeepFirst (default) or BindLatest.
	Policy string
	// Period is how long a binding lasts; default 365 days.
	Period time.Duration
	// Workers are the lookups in flight at once; default 1: orders that
	// arrive while a lookup runs gather into the next one, so lookups grow
	// with the load (5 orders per lookup against 3 per commit at 1,100
	// orders/s on 64 clients; 4 workers made it 1.7).
	Workers int
	// MaxBatch bounds the orders of one lookup; default 256.
	MaxBatch   int
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

// Customers matches orders to customers and decides their attribution.
type Customers struct {
	cfg    CustomerConfig
	hasher *CustomerHasher
	store  CustomerStore
	reqs   chan *matchReq
	m      customerMetrics
	once   sync.Once
}

type matchReq struct {
	ids  []Identity
	done chan struct{}
	res  *CustomerMatch
	err  error
}

type customerMetrics struct {
	matched  *prometheus.CounterVec
	batch    prometheus.Histogram
	bindings *prometheus.CounterVec
	errors   prometheus.Counter
}

// NewCustomers returns the matcher; Run must be running for Match to
// answer.
func NewCustomers(cfg CustomerConfig, hasher *CustomerHasher, store CustomerStore) (*Customers, error) {
	if hasher == nil || store == nil {
		return nil, errors.New("oms: customers need a hasher and a store")
	}
	switch cfg.Policy {
	case "":
		cfg.Policy = BindKeepFirst
	case BindKeepFirst, BindLatest:
	default:
		return nil, fmt.Errorf("oms: binding policy %q: want %s or %s", cfg.Policy, BindKeepFirst, BindLatest)
	}
	if cfg.Period < 0 {
		return nil, errors.New("oms: the binding period must not be negative")
	}
	cfg.Period = cmpOr(cfg.Period, 365*24*time.Hour)
	cfg.Workers = cmpOr(cfg.Workers, 1)
	cfg.MaxBatch = cmpOr(cfg.MaxBatch, 256)
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c := &Customers{cfg: cfg, hasher: hasher, store: store, reqs: make(chan *matchReq, 4*cfg.MaxBatch)}
	c.m = customerMetrics{
		matched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "omsd_customer_matches_total",
			Help: "Orders matched to a customer, by result: new (a customer created), matched (one found), merged (several found and linked)."}, []string{"result"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "omsd_customer_lookup_batch_size",
			Help: "Orders per customer lookup (one SQL round trip).", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}}),
		bindings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "omsd_customer_binding_changes_total",
			Help: "Binding changes orders asked for at intake, by event type and reason (the commit keeps one per customer and version)."}, []string{"type", "reason"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "omsd_customer_lookup_errors_total",
			Help: "Customer lookups that failed (the orders are answered 503)."}),
	}
	if err := register(cfg.Registerer, c.m.matched, c.m.batch, c.m.bindings, c.m.errors); err != nil {
		return nil, err
	}
	return c, nil
}

// Hasher returns the hasher.
func (c *Customers) Hasher() *CustomerHasher { return c.hasher }

// Run answers lookups until ctx ends.
func (c *Customers) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Go(func() { c.loop(ctx) })
	}
	wg.Wait()
	return nil
}

func (c *Customers) loop(ctx context.Context) {
	batch := make([]*matchReq, 0, c.cfg.MaxBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-c.reqs:
			batch = append(batch[:0], r)
		}
	gather:
		for len(batch) < c.cfg.MaxBatch {
			select {
			case r := <-c.reqs:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		c.lookup(ctx, batch)
	}
}

// lookup answers a batch of requests with one round trip.
func (c *Customers) lookup(ctx context.Context, batch []*matchReq) {
	c.m.batch.Observe(float64(len(batch)))
	var hashes [][]byte
	for _, r := range batch {
		for _, id := range r.ids {
			hashes = append(hashes, id.Hashes...)
		}
	}
	var recs []CustomerRecord
	var err error
	if len(hashes) > 0 {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		recs, err = c.store.LookupCustomers(lctx, hashes)
		cancel()
	}
	if err != nil {
		c.m.errors.Inc()
		for _, r := range batch {
			r.err = err
			close(r.done)
		}
		return
	}
	byHash := make(map[string]*CustomerRecord, len(recs))
	for i := range recs {
		byHash[string(recs[i].Hash)] = &recs[i]
	}
	// New customers that share a key within the batch are one customer.
	fresh := map[string]string{}
	for _, r := range batch {
		r.res = c.decide(r.ids, byHash, fresh)
		close(r.done)
	}
}

// decide makes the match of one order from what the lookup found.
func (c *Customers) decide(ids []Identity, byHash map[string]*CustomerRecord, fresh map[string]string) *CustomerMatch {
	m := &CustomerMatch{KeyID: c.hasher.CurrentKeyID()}
	var found []*CustomerRecord
	for _, id := range ids {
		m.Keys = append(m.Keys, id.Hashes[0])
		for _, h := range id.Hashes {
			if rec, ok := byHash[string(h)]; ok && !containsCustomer(found, rec.CustomerID) {
				found = append(found, rec)
			}
		}
	}
	if len(found) == 0 {
		for _, k := range m.Keys {
			if id, ok := fresh[string(k)]; ok {
				m.ID = id
				break
			}
		}
		if m.ID == "" {
			m.ID = uuid.NewString()
		}
		for _, k := range m.Keys {
			fresh[string(k)] = m.ID
		}
		m.New = true
		c.m.matched.WithLabelValues("new").Inc()
		return m
	}
	// The oldest customer survives a merge (ties: the smaller id).
	s := found[0]
	for _, r := range found[1:] {
		if r.CreatedAt.Before(s.CreatedAt) || (r.CreatedAt.Equal(s.CreatedAt) && r.CustomerID < s.CustomerID) {
			s = r
		}
	}
	m.ID, m.Binding, m.BindingVersion = s.CustomerID, s.Binding, s.BindingVersion
	for _, r := range found {
		if r.CustomerID == s.CustomerID {
			continue
		}
		m.Merge = append(m.Merge, r.CustomerID)
		if r.Binding != nil && (m.Adopt == nil || r.Binding.BoundAt.Before(m.Adopt.BoundAt)) {
			b := *r.Binding
			m.Adopt = &b
		}
	}
	if len(m.Merge) > 0 {
		c.m.matched.WithLabelValues("merged").Inc()
	} else {
		c.m.matched.WithLabelValues("matched").Inc()
	}
	return m
}

func containsCustomer(rs []*CustomerRecord, id string) bool {
	for _, r := range rs {
		if r.CustomerID == id {
			return true
		}
	}
	return false
}

// Match finds the customer of an order: one lookup, shared with the
// orders that arrive meanwhile.
func (c *Customers) Match(ctx context.Context, channel string, req *OrderRequest) (*CustomerMatch, error) {
	r := &matchReq{ids: c.hasher.Identities(channel, req), done: make(chan struct{})}
	if len(r.ids) == 0 {
		return nil, nil
	}
	select {
	case c.reqs <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Attribute decides an order's attribution from its own and the
// customer's binding, and the binding change it makes (m.Bind).
func (c *Customers) Attribute(m *CustomerMatch, orderID string, own *Attribution, now time.Time) *Attribution {
	a, bind := decideAttribution(c.cfg.Policy, c.cfg.Period, m, orderID, own, now)
	if bind != nil {
		bind.Replace = c.cfg.Policy == BindLatest
		bind.Event = bindingEvent(m.ID, orderID, bind, now)
		m.Bind = bind
		c.m.bindings.WithLabelValues(string(bind.Type), bind.Reason).Inc()
	}
	return a
}

// decideAttribution is the binding rule, without side effects: an order
// with its own attribution keeps it (source order) and binds a customer
// that has no live binding, or, under policy latest, rebinds one bound to
// someone else; an order without one inherits a live binding (source
// binding). A customer without a binding of its own adopts the live
// binding of a customer merged into it.
func decideAttribution(policy string, period time.Duration, m *CustomerMatch, orderID string, own *Attribution, now time.Time) (*Attribution, *BindChange) {
	now = now.UTC()
	live := m.Binding
	if !live.liveAt(now) {
		live = nil
	}
	if own != nil && (own.Associate != "" || own.Store != "" || own.Distributor != "") {
		a := &Attribution{Associate: own.Associate, Store: own.Store, Distributor: own.Distributor, Source: AttributionFromOrder}
		nb := Binding{Associate: a.Associate, Store: a.Store, Distributor: a.Distributor, BoundAt: now, ExpiresAt: now.Add(period), OrderID: orderID}
		switch {
		case live == nil && m.Adopt.liveAt(now) && policy == BindKeepFirst:
			// The merged customer's live binding comes first.
			return a, &BindChange{Binding: *m.Adopt, Previous: m.Binding, Type: EventCustomerRebound, Reason: RebindMerged, Expect: m.BindingVersion}
		case live == nil && m.Binding == nil:
			return a, &BindChange{Binding: nb, Type: EventCustomerBound, Expect: m.BindingVersion}
		case live == nil:
			return a, &BindChange{Binding: nb, Previous: m.Binding, Type: EventCustomerRebound, Reason: RebindExpired, Expect: m.BindingVersion}
		case policy == BindLatest && !live.sameParty(a):
			return a, &BindChange{Binding: nb, Previous: live, Type: EventCustomerRebound, Reason: RebindLatest, Expect: m.BindingVersion}
		}
		return a, nil
	}
	var bind *BindChange
	if live == nil && m.Adopt.liveAt(now) {
		live = m.Adopt
		bind = &BindChange{Binding: *m.Adopt, Previous: m.Binding, Type: EventCustomerRebound, Reason: RebindMerged, Expect: m.BindingVersion}
	}
	if live == nil {
		return &Attribution{Source: AttributionNone}, nil
	}
	return &Attribution{Associate: live.Associate, Store: live.Store, Distributor: live.Distributor, Source: AttributionFromBinding}, bind
}

// CustomerEvent is the payload of customer.bound and customer.rebound.
type CustomerEvent struct {
	EventID    string    `json:"event_id"`
	Type       EventType `json:"type"`
	CustomerID string    `json:"customer_id"`
	// OrderID is the order whose commit made the change.
	OrderID    string    `json:"order_id"`
	Binding    Binding   `json:"binding"`
	Previous   *Binding  `json:"previous,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Version    int       `json:"version"`
	OccurredAt time.Time `json:"occurred_at"`
}

func bindingEvent(customer, orderID string, b *BindChange, now time.Time) OutboxEvent {
	ver := b.Expect + 1
	id := EventID(customer, "binding", itoa64(int64(ver)))
	payload, _ := json.Marshal(CustomerEvent{EventID: id, Type: b.Type, CustomerID: customer, OrderID: orderID,
		Binding: b.Binding, Previous: b.Previous, Reason: b.Reason, Version: ver, OccurredAt: now})
	return OutboxEvent{ID: id, Topic: TopicOrders, Key: customer, Seq: int64(ver), Payload: payload, At: now}
}

// CustomerView is a customer as GET /v1/customers/{id} answers it.
type CustomerView struct {
	ID            string           `json:"id"`
	MergedFrom    string           `json:"merged_from,omitempty"`
	Channels      []string         `json:"channels"`
	Orders        int64            `json:"orders"`
	GMV           int64            `json:"gmv"`
	Currency      string           `json:"currency,omitempty"`
	GMVByCurrency map[string]int64 `json:"gmv_by_currency,omitempty"`
	FirstOrderAt  *time.Time       `json:"first_order_at"`
	LastOrderAt   *time.Time       `json:"last_order_at"`
	Binding       *Binding         `json:"binding"`
}

// CustomerOrder is one line of a customer's order list.
type CustomerOrder struct {
	ID         string    `json:"id"`
	Channel    string    `json:"channel"`
	ExternalID string    `json:"external_id"`
	Status     string    `json:"status"`
	Total      int64     `json:"total"`
	Currency   string    `json:"currency"`
	CreatedAt  time.Time `json:"created_at"`
}

// AttributionRow is one line of the attribution summary.
type AttributionRow struct {
	Key      string `json:"key"`
	Currency string `json:"currency"`
	Orders   int64  `json:"orders"`
	GMV      int64  `json:"gmv"`
	Refunded int64  `json:"refunded"`
	Net      int64  `json:"net"`
}
