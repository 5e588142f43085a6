package oms

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/sourcing"
)

// AvailabilityView is this instance's picture of available stock, which
// intake plans from instead of reading every level before every plan.
// Redis stays the authority: the reservation script refuses a hold the
// stock cannot cover, whatever the view said. A view that is too high
// (another instance reserved since) costs a lost reservation and a plan
// again on levels read fresh; one that is too low (a release, a restock)
// could refuse an order that the stock can fill, so a plan that does not
// fill its order from the view is made again on fresh levels before the
// answer. Every level read refreshes the view; every hold this instance
// takes lowers it by the hold's lines; a lost reservation forgets the
// node's entries for its SKUs. Entries older than TTL are read again.
// Nodes whose counters are not loaded are never kept (their readiness is
// read every time).
//
// It is safe for concurrent use.
type AvailabilityView struct {
	src LevelReader
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	m  map[inventory.Key]viewEntry

	lookups *prometheus.CounterVec
}

type viewEntry struct {
	avail int64
	at    time.Time
}

// NewAvailabilityView builds a view over src whose entries live for ttl
// (> 0); it holds at most maxEntries (default 1,000,000; past it the view
// starts again empty). The metric omsd_intake_availability_lookups_total
// (result hit or miss, per key) is registered on reg when it is not nil.
func NewAvailabilityView(src LevelReader, ttl time.Duration, maxEntries int, reg prometheus.Registerer) (*AvailabilityView, error) {
	if src == nil || ttl <= 0 {
		return nil, errors.New("oms: an availability view needs a level reader and a positive TTL")
	}
	v := &AvailabilityView{src: src, ttl: ttl, max: cmpOr(maxEntries, 1_000_000), now: time.Now, m: map[inventory.Key]viewEntry{},
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omsd_intake_availability_lookups_total",
			Help: "Stock levels intake planned with, by result: hit (from the instance's availability view) or miss (read from the stock engine).",
		}, []string{"result"})}
	if reg != nil {
		if err := reg.Register(v.lookups); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// read returns the availability of keys: from the view where it holds a
// live entry (unless fresh), the rest read from the stock engine in one
// round trip. cached reports whether any key came from the view. notReady
// and err are as ReadAvailability's.
func (v *AvailabilityView) read(ctx context.Context, keys []inventory.Key, fresh bool) (avail sourcing.StockMap, cached bool, notReady, err error) {
	avail = sourcing.StockMap{}
	missing := keys
	if !fresh {
		missing = make([]inventory.Key, 0, len(keys))
		now := v.now()
		v.mu.Lock()
		for _, k := range keys {
			e, ok := v.m[k]
			if !ok || now.Sub(e.at) >= v.ttl {
				missing = append(missing, k)
				continue
			}
			cached = true
			if e.avail > 0 {
				avail.Set(k.Node, k.SKU, e.avail)
			}
		}
		v.mu.Unlock()
	}
	v.lookups.WithLabelValues("hit").Add(float64(len(keys) - len(missing)))
	v.lookups.WithLabelValues("miss").Add(float64(len(missing)))
	if len(missing) == 0 {
		return avail, cached, nil, nil
	}
	at := v.now()
	levels, err := v.src.Levels(ctx, missing)
	if err != nil && (levels == nil || !errors.Is(err, inventory.ErrNotReady)) {
		return nil, false, nil, err
	}
	notReady = err
	unloaded := map[string]bool{}
	if notReady != nil {
		var nr *inventory.NotReadyError
		if errors.As(notReady, &nr) {
			for _, n := range nr.Nodes {
				unloaded[n] = true
			}
		}
	}
	v.mu.Lock()
	if len(v.m)+len(levels) > v.max {
		clear(v.m)
	}
	for _, l := range levels {
		if l.Available > 0 {
			avail.Set(l.Node, l.SKU, l.Available)
		}
		if notReady == nil || (len(unloaded) > 0 && !unloaded[l.Node]) {
			v.m[inventory.Key{Node: l.Node, SKU: l.SKU}] = viewEntry{avail: l.Available, at: at}
		}
	}
	v.mu.Unlock()
	return avail, cached, notReady, nil
}

// reserved lowers the view by a hold this instance took.
func (v *AvailabilityView) reserved(node string, lines []inventory.Line) {
	v.mu.Lock()
	for _, l := range lines {
		k := inventory.Key{Node: node, SKU: l.SKU}
		if e, ok := v.m[k]; ok {
			e.avail = max(e.avail-l.Qty, 0)
			v.m[k] = e
		}
	}
	v.mu.Unlock()
}

// forget drops the entries of a hold that lost its race, so that the next
// plan reads them fresh.
func (v *AvailabilityView) forget(node string, lines []inventory.Line) {
	v.mu.Lock()
	for _, l := range lines {
		delete(v.m, inventory.Key{Node: node, SKU: l.SKU})
	}
	v.mu.Unlock()
}
