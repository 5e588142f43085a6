package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/redisstock"
	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/httpapi"
	"github.com/omsd/omsd/oms/kafkabus"
	"github.com/omsd/omsd/oms/pgstore"
	"github.com/omsd/omsd/oms/redisrecent"
	"github.com/omsd/omsd/oms/relay"
	"github.com/omsd/omsd/oms/wmsevents"
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

// wire builds the components on top of the connections, in the order
// they depend on each other: stock, the catalog, intake, the fulfillment
// pipeline, and the HTTP API over all of them.
func (a *app) wire(ctx context.Context, brokers []string) error {
	var err error
	// Stock: Redis counters rebuilt from the SQL ledger, and the reconciler.
	if a.stock, err = redisstock.New(a.rdb, redisstock.Config{Logger: a.log, Registerer: a.reg}); err != nil {
		return err
	}
	// The stock lease: every hold names this instance, and while it beats
	// the other instances leave its in-flight holds alone; when it stops,
	// theirs release them within seconds.
	if a.lease, err = inventory.NewHeartbeat(a.stock, instanceName(), inventory.HeartbeatConfig{Logger: a.log}); err != nil {
		return err
	}
	if err := a.lease.Beat(ctx); err != nil {
		return fmt.Errorf("stock lease: %w", err)
	}
	limits, err := redisstock.NewLimits(a.rdb, redisstock.Config{Logger: a.log, Registerer: a.reg})
	if err != nil {
		return err
	}
	if a.reconciler, err = inventory.NewReconciler(a.store, a.stock, inventory.ReconcilerConfig{
		Interval: a.cfg.ReconcileEvery, Logger: a.log, Registerer: a.reg,
		// A hold that cannot be restored puts its order in review (the
		// fulfillment service is wired below; the reconciler runs later).
		OnUnfitHold: func(ctx context.Context, node, holdID string) error {
			return a.fulfillment.ReviewUnfitHold(ctx, node, holdID)
		},
	}); err != nil {
		return err
	}
	// Load every node Redis lacks (a fresh or restarted Redis) before the
	// first order. Nodes another instance is loading are left to it.
	if nodes, err := inventory.RebuildNotReady(ctx, a.store, a.stock); err != nil {
		return err
	} else if len(nodes) > 0 {
		a.log.Info("loaded stock counters from the ledger", "nodes", len(nodes))
	}
	if a.catalog, err = oms.NewCatalogCache(ctx, a.store, a.log); err != nil {
		return err
	}

	// Intake: checks, review memory, placement, group commit.
	if a.committer, err = oms.NewCommitter(oms.CommitterConfig{
		Shards: a.cfg.IntakeShards, Window: a.cfg.BatchWindow, MaxBatch: a.cfg.BatchMax, Lease: a.lease, Registerer: a.reg,
	}, a.store); err != nil {
		return err
	}
	// Customers across channels: matched by keyed hashes of phone and
	// email, with the B2B2C binding.
	if a.cfg.CustomerMatch {
		hashKeys, err := oms.ParseHashKeys(a.cfg.CustomerHashKeys)
		if err != nil {
			return fmt.Errorf("-customers.hash-keys (OMS_CUSTOMER_HASH_KEYS): %w", err)
		}
		hasher, err := oms.NewCustomerHasher(hashKeys)
		if err != nil {
			return err
		}
		if a.customers, err = oms.NewCustomers(oms.CustomerConfig{Policy: a.cfg.BindingPolicy, Period: a.cfg.BindingPeriod,
			Registerer: a.reg, Log: a.log}, hasher, a.store); err != nil {
			return err
		}
	}
	var view *oms.AvailabilityView
	if a.cfg.AvailabilityTTL > 0 {
		if view, err = oms.NewAvailabilityView(a.stock, a.cfg.AvailabilityTTL, 0, a.reg); err != nil {
			return err
		}
	}
	intake, err := oms.NewIntake(oms.IntakeConfig{
		PaymentTimeout: a.cfg.PaymentTimeout, MaxInFlight: a.cfg.MaxInFlight, MinInFlight: a.cfg.MinInFlight, LatencyBudget: a.cfg.LatencyBudget, Registerer: a.reg, Log: a.log,
	}, oms.IntakeDeps{Catalog: a.catalog, Stock: a.stock, Limits: limits, Recent: redisrecent.New(a.rdb),
		Committer: a.committer, Store: a.store, Lease: a.lease, View: view, Customers: a.customers})
	if err != nil {
		return err
	}

	// Fulfillment: payment, cancellation, warehouse events, expiry; the
	// outbox relay and the wms.events consumer.
	if a.fulfillment, err = oms.NewFulfillmentService(oms.FulfillmentConfig{EventBatch: a.cfg.EventBatch, Lease: a.lease, Logger: a.log, Registerer: a.reg},
		a.store, a.stock, a.catalog); err != nil {
		return err
	}
	a.fulfillment.GiveBack = oms.GiveBackLimits(limits, a.catalog, a.log)
	if a.relay, err = relay.New(relay.Config{Logger: a.log, Registerer: a.reg}, a.store, a.kafka); err != nil {
		return err
	}
	// After-sales: returns, refunds, exchanges (exchange orders go through
	// intake like any order).
	restocker, _ := any(a.stock).(oms.Restocker)
	returns, err := oms.NewReturnService(oms.ReturnsConfig{Store: a.store, Stock: restocker, Intake: intake, Cancel: a.fulfillment,
		Catalog: a.catalog, Limits: limits, Promos: a.catalog, Logger: a.log, Registry: a.reg})
	if err != nil {
		return err
	}
	if a.consumer, err = wmsevents.New(wmsevents.Config{
		Brokers: brokers, GroupID: consumerGroup(a.cfg.DatabaseURL), Workers: a.cfg.WMSWorkers, Logger: a.log, Registerer: a.reg,
	}, oms.WMSRouter{Shipments: a.fulfillment, Returns: returns}); err != nil {
		return err
	}

	// The HTTP API. Readiness needs the database and Redis; a broker
	// outage is absorbed by the outbox, so it only makes /readyz say
	// "degraded" (and omsd_dependency_up{dependency="broker"} 0).
	if a.deps, err = newDependencies(a.reg, a.log, map[string]func(context.Context) error{
		"database": a.store.Ping,
		"redis":    func(ctx context.Context) error { return a.rdb.Ping(ctx).Err() },
		"broker":   func(ctx context.Context) error { return kafkabus.Ping(ctx, brokers) },
	}, downAtStart(a.brokerDown, "broker")...); err != nil {
		return err
	}
	var ln net.Listener
	if a.cfg.HTTPListenFD > 0 {
		f := os.NewFile(uintptr(a.cfg.HTTPListenFD), "http-listener")
		ln, err = net.FileListener(f)
		f.Close() // FileListener holds its own duplicate
		if err != nil {
			return fmt.Errorf("-http.listen-fd %d: %w", a.cfg.HTTPListenFD, err)
		}
	}
	if a.http, err = httpapi.New(httpapi.Config{
		Addr: a.cfg.HTTPAddr, Listener: ln, AdminKey: a.cfg.AdminKey, MaxBodyBytes: a.cfg.MaxBodyBytes, Log: a.log,
		Registerer: a.reg, Gatherer: a.reg, AccessLog: a.cfg.AccessLog,
		ReadyChecks:    map[string]func(context.Context) error{"database": a.deps.check("database"), "redis": a.deps.check("redis")},
		DegradedChecks: map[string]func(context.Context) error{"broker": a.deps.check("broker")},
	}, a.store); err != nil {
		return err
	}
	admin := oms.NewAdmin(a.store, a.stock, nodeLoader{a.store, a.stock}, a.catalog, a.log)
	a.http.Register(httpapi.OrderRoutes(orderService{intake, a.store}, admin,
		httpapi.RateConfig{PerSec: a.cfg.ChannelRate, Burst: a.cfg.ChannelBurst}))
	a.http.Register(httpapi.FulfillmentRoutes(a.fulfillment))
	a.http.Register(httpapi.ReturnRoutes(returns))
	a.http.Register(httpapi.CustomerRoutes(a.store))
	return nil
}

func downAtStart(down bool, name string) []string {
	if down {
		return []string{name}
	}
	return nil
}

// instanceName names this process in stock-lease owner ids: host, process
// id and a random suffix, unique across restarts.
func instanceName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "omsd"
	}
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), uuid.NewString()[:8])
}

// consumerGroup names the wms.events consumer group of a deployment after
// its database: every omsd instance on one database shares the partitions,
// and deployments (or test servers) with their own database never consume
// each other's events from a shared broker. A database URL without a
// database name gives "omsd".
func consumerGroup(databaseURL string) string {
	name := ""
	if u, err := url.Parse(databaseURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		name = strings.Trim(u.Path, "/")
	} else {
		for _, kv := range strings.Fields(databaseURL) {
			if v, ok := strings.CutPrefix(kv, "dbname="); ok {
				name = v
			}
		}
	}
	if name == "" {
		return "omsd"
	}
	return "omsd." + name
}

// cmdRebuild recomputes every Redis counter from the SQL ledger.
func cmdRebuild(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, _, err := parseCommand("omsd inventory rebuild", args, getenv, stderr, nil, "pg.url", "redis.url", "redis.cluster")
	if err != nil {
		return err
	}
	if cfg.DatabaseURL == "" || cfg.RedisURL == "" {
		return usageError{fmt.Errorf("omsd inventory rebuild: missing -pg.url (OMS_DATABASE_URL) or -redis.url (OMS_REDIS_URL)")}
	}
	if err := cfg.checkRedis(); err != nil {
		return usageError{err}
	}
	store, err := pgstore.Open(ctx, pgstore.Config{URL: cfg.DatabaseURL})
	if err != nil {
		return err
	}
	defer store.Close()
	rdb, err := newRedis(*cfg)
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
