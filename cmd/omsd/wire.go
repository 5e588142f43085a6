package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/redisstock"
	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/httpapi"
	"github.com/omsd/omsd/oms/pgstore"
	"github.com/omsd/omsd/oms/redisrecent"
)

// orderService joins intake (writes) and the store (reads) for the API.
type orderService struct {
	*oms.Intake
	store *pgstore.Store
}

func (o orderService) GetOrder(ctx context.Context, id string) (*oms.Order, []byte, error) {
	return o.store.GetOrder(ctx, id)
}

// nodeLoader loads a new node's counters at once (no settle wait: nothing
// can have reserved on a node that did not exist).
type nodeLoader struct {
	ledger inventory.Ledger
	stock  inventory.Rebuildable
}

func (l nodeLoader) Rebuild(ctx context.Context, nodes ...string) error {
	return inventory.Rebuild(ctx, l.ledger, l.stock, nodes...)
}

// wire builds the domain components on top of the connections: inventory,
// sourcing, intake and the fulfillment pipeline, and registers their
// routes and workers.
func (a *app) wire(ctx context.Context, brokers []string) error {
	stock, err := redisstock.New(a.rdb, redisstock.Config{Logger: a.log, Registerer: a.reg})
	if err != nil {
		return err
	}
	limits, err := redisstock.NewLimits(a.rdb, redisstock.Config{Logger: a.log, Registerer: a.reg})
	if err != nil {
		return err
	}
	rec, err := inventory.NewReconciler(a.store, stock, inventory.ReconcilerConfig{
		Interval: a.cfg.ReconcileEvery, Logger: a.log, Registerer: a.reg,
	})
	if err != nil {
		return err
	}
	// Load every node Redis lacks (a fresh or restarted Redis) before the
	// first order. Nodes another instance is loading are left to it.
	if nodes, err := inventory.RebuildNotReady(ctx, a.store, stock); err != nil {
		return err
	} else if len(nodes) > 0 {
		a.log.Info("loaded stock counters from the ledger", "nodes", len(nodes))
	}
	catalog, err := oms.NewCatalogCache(ctx, a.store, a.log)
	if err != nil {
		return err
	}
	a.catalog = catalog
	committer := oms.NewCommitter(oms.CommitterConfig{
		Shards: a.cfg.IntakeShards, Window: a.cfg.BatchWindow, MaxBatch: a.cfg.BatchMax,
	}, a.store, a.reg)
	a.closers = append(a.closers, committer.Close)
	intake := oms.NewIntake(oms.IntakeConfig{PaymentTimeout: a.cfg.PaymentTimeout}, oms.IntakeDeps{
		Catalog: catalog, Stock: stock, Limits: limits, Committer: committer, Store: a.store, Orders: a.store, Log: a.log,
	}, a.reg)
	intake.HoldChecks = oms.DefaultHoldChecks(oms.HoldConfig{}, redisrecent.New(a.rdb), func(in *oms.CheckInput) string {
		return oms.OrderID(in.Channel, in.Req.ExternalID)
	})
	admin := oms.NewAdmin(a.store, stock, nodeLoader{a.store, stock}, catalog, a.log)
	a.http.Register(httpapi.OrderRoutes(orderService{intake, a.store}, admin, httpapi.RateConfig{PerSec: a.cfg.ChannelRate, Burst: a.cfg.ChannelBurst}))
	if err := a.wirePipeline(ctx, brokers, stock, catalog, limits); err != nil {
		return err
	}

	a.workers["catalog: refresh"] = func(ctx context.Context) error { return catalog.Run(ctx, time.Second) }
	a.workers["inventory: reconcile"] = func(ctx context.Context) error { return rec.Run(ctx) }
	a.workers["inventory: sweep expired holds"] = func(ctx context.Context) error {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				if _, err := stock.SweepExpired(ctx, time.Now(), 0); err != nil && ctx.Err() == nil {
					a.log.Warn("sweep expired holds", "err", err)
				}
			}
		}
	}
	return nil
}

// cmdRebuild recomputes every Redis counter from the SQL ledger.
func cmdRebuild(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg config
	fs := flag.NewFlagSet("omsd inventory rebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flagSet(fs, getenv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.DatabaseURL == "" || cfg.RedisURL == "" {
		return fmt.Errorf("missing -pg.url (OMS_DATABASE_URL) or -redis.url (OMS_REDIS_URL)")
	}
	store, err := pgstore.Open(ctx, pgstore.Config{URL: cfg.DatabaseURL})
	if err != nil {
		return err
	}
	defer store.Close()
	rdb, err := newRedis(cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	stock, err := redisstock.New(rdb, redisstock.Config{})
	if err != nil {
		return err
	}
	rec, err := inventory.NewReconciler(store, stock, inventory.ReconcilerConfig{})
	if err != nil {
		return err
	}
	start := time.Now()
	fmt.Fprintln(stdout, "rebuilding every node from the SQL ledger ...")
	if err := rec.Rebuild(ctx); err != nil {
		return err
	}
	report, err := rec.Reconcile(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rebuilt %d nodes in %s; drift after rebuild: %d\n", report.Nodes, time.Since(start).Round(time.Millisecond), len(report.Drifts))
	return nil
}
