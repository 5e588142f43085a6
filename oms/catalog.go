package oms

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/omsd/omsd/sourcing"
)

// CatalogSource is where the catalog reads nodes, rules and promotions.
type CatalogSource interface {
	ListNodes(ctx context.Context) ([]Node, error)
	ActiveRules(ctx context.Context) (int64, []byte, error)
	Promotions(ctx context.Context, now time.Time) ([]Promotion, error)
}

type catalogSnap struct {
	nodes  map[string]Node
	cands  []sourcing.Node
	rules  *sourcing.RuleSet
	promos map[string][]Promotion
}

// CatalogCache is the Catalog intake plans with: an immutable snapshot
// swapped atomically, so that planning never waits on a lock and a new
// rule set becomes active for the next order without a restart.
type CatalogCache struct {
	src  CatalogSource
	snap atomic.Pointer[catalogSnap]
	log  *slog.Logger
	now  func() time.Time
}

// NewCatalogCache loads the first snapshot.
func NewCatalogCache(ctx context.Context, src CatalogSource, log *slog.Logger) (*CatalogCache, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &CatalogCache{src: src, log: log, now: time.Now}
	if err := c.Refresh(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Refresh reloads nodes, the active rule set and promotions.
func (c *CatalogCache) Refresh(ctx context.Context) error {
	nodes, err := c.src.ListNodes(ctx)
	if err != nil {
		return err
	}
	version, doc, err := c.src.ActiveRules(ctx)
	if err != nil {
		return err
	}
	rules := sourcing.DefaultRules()
	if doc != nil {
		rules, err = sourcing.ParseRules(doc)
		if err != nil {
			return fmt.Errorf("oms: stored rule set %d does not parse: %w", version, err)
		}
	}
	promos, err := c.src.Promotions(ctx, c.now())
	if err != nil {
		return err
	}
	s := &catalogSnap{nodes: make(map[string]Node, len(nodes)), rules: rules, promos: map[string][]Promotion{}}
	for _, n := range nodes {
		s.nodes[n.ID] = n
		if n.Active {
			s.cands = append(s.cands, ToSourcingNode(n))
		}
	}
	for _, p := range promos {
		s.promos[p.SKU] = append(s.promos[p.SKU], p)
	}
	c.snap.Store(s)
	return nil
}

// Run refreshes every period until ctx ends, so that changes made through
// another instance arrive within a period.
func (c *CatalogCache) Run(ctx context.Context, period time.Duration) error {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := c.Refresh(rctx); err != nil && ctx.Err() == nil {
				c.log.Warn("catalog refresh failed", "err", err)
			}
			cancel()
		}
	}
}

// Node implements Catalog.
func (c *CatalogCache) Node(id string) (Node, bool) {
	n, ok := c.snap.Load().nodes[id]
	return n, ok
}

// Candidates implements Catalog.
func (c *CatalogCache) Candidates() []sourcing.Node { return c.snap.Load().cands }

// Rules implements Catalog.
func (c *CatalogCache) Rules() *sourcing.RuleSet { return c.snap.Load().rules }

// Promotion implements Catalog.
func (c *CatalogCache) Promotion(sku string, now time.Time) (Promotion, bool) {
	for _, p := range c.snap.Load().promos[sku] {
		if !now.Before(p.StartsAt) && now.Before(p.EndsAt) {
			return p, true
		}
	}
	return Promotion{}, false
}
