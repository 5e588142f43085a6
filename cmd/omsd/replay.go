package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/redisstock"
	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/pgstore"
	"github.com/omsd/omsd/sourcing"
)

// cmdReplay runs a draft rule set and the active one over past orders
// (JSON lines) against today's nodes and live availability, and prints how
// the plans differ, before anyone activates the draft.
func cmdReplay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var draftPath, ordersPath *string
	var limit *int
	cfg, _, err := parseCommand("omsd sourcing replay", args, getenv, stderr, func(fs *flag.FlagSet) {
		draftPath = fs.String("draft", "", "draft rule-set document (JSON)")
		ordersPath = fs.String("orders", "", "past orders, one sourcing order per line (JSON lines)")
		limit = fs.Int("limit", 100000, "most lines read from -orders")
	}, "pg.url", "redis.url", "redis.cluster")
	if err != nil {
		return err
	}
	if *draftPath == "" || *ordersPath == "" {
		return usageError{errors.New("omsd sourcing replay: -draft and -orders are required")}
	}
	if cfg.DatabaseURL == "" || cfg.RedisURL == "" {
		return usageError{errors.New("omsd sourcing replay: missing -pg.url (OMS_DATABASE_URL) or -redis.url (OMS_REDIS_URL)")}
	}
	if err := cfg.checkRedis(); err != nil {
		return usageError{err}
	}
	doc, err := os.ReadFile(*draftPath)
	if err != nil {
		return err
	}
	draft, err := sourcing.ParseRules(doc)
	if err != nil {
		return fmt.Errorf("draft %s: %w", *draftPath, err)
	}
	f, err := os.Open(*ordersPath)
	if err != nil {
		return err
	}
	defer f.Close()
	orders, err := sourcing.ReadReplayOrders(f, *limit)
	if err != nil {
		return err
	}
	store, err := pgstore.Open(ctx, pgstore.Config{URL: cfg.DatabaseURL})
	if err != nil {
		return err
	}
	defer store.Close()
	catalog, err := oms.NewCatalogCache(ctx, store, nil)
	if err != nil {
		return err
	}
	rdb, err := newRedis(*cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	stock, err := redisstock.New(rdb, redisstock.Config{})
	if err != nil {
		return err
	}
	nodes := catalog.Candidates()
	skus := map[string]bool{}
	for _, o := range orders {
		for _, l := range o.Order.Lines {
			skus[l.SKU] = true
		}
	}
	var keys []inventory.Key
	for _, n := range nodes {
		for s := range skus {
			keys = append(keys, inventory.Key{Node: n.ID, SKU: s})
		}
	}
	avail, _, err := oms.ReadAvailability(ctx, stock, keys)
	if err != nil {
		return err
	}
	for i := range orders {
		orders[i].Nodes, orders[i].Avail = nodes, avail
	}
	report := sourcing.Replay(catalog.Rules(), draft, orders)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(report)
}
