package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/redisstock"
	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/httpapi"
	"github.com/omsd/omsd/oms/kafkabus"
	"github.com/omsd/omsd/oms/pgstore"
	"github.com/omsd/omsd/oms/relay"
	"github.com/omsd/omsd/oms/wmsevents"
)

// app is one omsd instance: its connections and its components, each
// named. newApp builds it, run serves and shuts it down in one explicit
// sequence, close releases the connections.
type app struct {
	cfg   config
	log   *slog.Logger
	reg   *prometheus.Registry
	store *pgstore.Store
	rdb   redis.UniversalClient
	kafka *kafka.Writer
	http  *httpapi.Server

	catalog     *oms.CatalogCache
	stock       *redisstock.Store
	lease       *inventory.Heartbeat
	reconciler  *inventory.Reconciler
	committer   *oms.Committer
	customers   *oms.Customers
	fulfillment *oms.FulfillmentService
	relay       *relay.Relay
	consumer    *wmsevents.Consumer
}

// newRedis opens a single-server or cluster client.
func newRedis(cfg config) (redis.UniversalClient, error) {
	if cfg.RedisCluster {
		var addrs []string
		for _, a := range strings.Split(cfg.RedisURL, ",") {
			a = strings.TrimPrefix(strings.TrimSpace(a), "redis://")
			addrs = append(addrs, strings.TrimSuffix(a, "/0"))
		}
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, PoolSize: 64}), nil
	}
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	opt.PoolSize = 64
	return redis.NewClient(opt), nil
}

// newApp connects to every service and wires the components (wire.go).
// On error everything opened so far is closed.
func newApp(ctx context.Context, cfg config, log *slog.Logger) (_ *app, err error) {
	a := &app{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if err := a.reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, err
	}
	if err := a.reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	if a.store, err = pgstore.Open(ctx, pgstore.Config{URL: cfg.DatabaseURL, MaxConns: int32(cfg.PGMaxConns)}); err != nil {
		return nil, err
	}
	if cfg.Migrate {
		applied, err := a.store.Migrate(ctx)
		if err != nil {
			return nil, err
		}
		if len(applied) > 0 {
			log.Info("migrations applied", "versions", applied)
		}
	}
	if a.rdb, err = newRedis(cfg); err != nil {
		return nil, err
	}
	brokers := strings.Split(cfg.Brokers, ",")
	if a.kafka, err = kafkabus.NewWriter(kafkabus.WriterConfig{Brokers: brokers}); err != nil {
		return nil, err
	}
	return a, a.wire(ctx, brokers)
}

// run serves until ctx ends or a component fails, then shuts down in
// dependency order, each stage finished before the next starts:
//
//  1. the HTTP API stops taking requests and finishes those in flight
//     (each waits for its order's commit);
//  2. the committers commit what is queued;
//  3. the fulfillment pipeline stops: the relay after its current
//     publication, the wms.events consumer after its current event, the
//     expiry worker;
//  4. the stock lease stops beating (nothing reserves any more) and ends;
//  5. the background work stops: catalog refresh, reconciler, sweeper.
//
// close then flushes the Kafka writer and closes the pools.
func (a *app) run(ctx context.Context, ready func(url string)) error {
	if err := a.http.Listen(); err != nil {
		return err
	}
	if a.cfg.DebugAddr != "" {
		dbg := debugServer(a.cfg.DebugAddr, a.log)
		defer dbg.Close()
	}
	failed := make(chan error, 16)
	lease := a.start("lease", failed, map[string]func(context.Context) error{
		"inventory: stock lease heartbeat": a.lease.Run,
	})
	intakeLoops := map[string]func(context.Context) error{"oms: group commit": a.committer.Run}
	if a.customers != nil {
		intakeLoops["oms: customer lookups"] = a.customers.Run
	}
	intake := a.start("intake", failed, intakeLoops)
	pipeline := a.start("pipeline", failed, map[string]func(context.Context) error{
		"oms.relay: publish outbox":               a.relay.Run,
		"oms.wmsevents: consume warehouse events": a.consumer.Run,
		"oms.fulfillment: expire unpaid orders":   a.fulfillment.RunExpiry,
	})
	background := a.start("background", failed, map[string]func(context.Context) error{
		"catalog: refresh":               func(ctx context.Context) error { return a.catalog.Run(ctx, time.Second) },
		"inventory: reconcile":           a.reconciler.Run,
		"inventory: sweep expired holds": a.sweep,
	})
	if ready != nil {
		ready(a.http.URL())
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-failed:
		a.log.Error("a component failed; shutting down", "err", err)
	}
	a.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = errors.Join(err, a.http.Shutdown(sctx))
	err = errors.Join(err, intake(), pipeline(), lease(), background())
	a.lease.Stop()
	return err
}

// start runs workers until the returned stop is called; stop cancels them,
// waits for every one and returns their errors. A worker that fails while
// running is also reported on failed, so that run shuts down.
func (a *app) start(stage string, failed chan<- error, workers map[string]func(context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, len(workers))
	for name, w := range workers {
		wg.Go(func() {
			if err := w(ctx); err != nil && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("%s: %s: %w", stage, name, err)
				errs <- err
				select {
				case failed <- err:
				default:
				}
			}
		})
	}
	return func() error {
		cancel()
		wg.Wait()
		close(errs)
		var all []error
		for err := range errs {
			all = append(all, err)
		}
		return errors.Join(all...)
	}
}

// sweep releases Redis holds past their deadline every second (the
// backstop of the SQL-driven expiry).
func (a *app) sweep(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := a.stock.SweepExpired(ctx, time.Now(), 0); err != nil && ctx.Err() == nil {
				a.log.Warn("sweep expired holds", "err", err)
			}
		}
	}
}

// close flushes the Kafka writer, then closes the Redis and database pools.
func (a *app) close() {
	if a.kafka != nil {
		if err := a.kafka.Close(); err != nil {
			a.log.Warn("close kafka writer", "err", err)
		}
	}
	if a.rdb != nil {
		_ = a.rdb.Close()
	}
	if a.store != nil {
		a.store.Close()
	}
}

// debugServer serves pprof on its own listener, never on the public API.
func debugServer(addr string, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	dbg := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := dbg.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("debug listener", "err", err)
		}
	}()
	return dbg
}

func cmdServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg config
	fs := flag.NewFlagSet("omsd serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flagSet(fs, getenv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.close()
	return a.run(ctx, nil)
}

func cmdMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg config
	fs := flag.NewFlagSet("omsd migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flagSet(fs, getenv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.DatabaseURL == "" {
		return errors.New("missing -pg.url (OMS_DATABASE_URL)")
	}
	s, err := pgstore.Open(ctx, pgstore.Config{URL: cfg.DatabaseURL})
	if err != nil {
		return err
	}
	defer s.Close()
	applied, err := s.Migrate(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "migrations applied: %v\n", applied)
	return nil
}
