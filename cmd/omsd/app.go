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
	deps        *dependencies
	brokerDown  bool // at start-up
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
// The database and Redis are waited for up to -start.timeout (an init job
// or the database itself may still be starting), the broker for 5 s at
// most: the outbox keeps events until it is up. On error everything opened
// so far is closed.
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
	if err := registerBuildInfo(a.reg, readBuildInfo()); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(cfg.StartTimeout)
	redact := func(s string) string { return redactIn(s, cfg.DatabaseURL, cfg.RedisURL) }
	if err := waitForDependency(ctx, log, "database", deadline, redact, func(ctx context.Context) error {
		s, err := pgstore.Open(ctx, pgstore.Config{URL: cfg.DatabaseURL, MaxConns: int32(cfg.PGMaxConns)})
		a.store = s
		return err
	}); err != nil {
		return nil, err
	}
	if err := a.reg.Register(newTxCollector(a.store.TxStats)); err != nil {
		return nil, err
	}
	if err := a.reg.Register(newPGPoolCollector(a.store.Pool())); err != nil {
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
	if err := waitForDependency(ctx, log, "redis", deadline, redact, func(ctx context.Context) error {
		return a.rdb.Ping(ctx).Err()
	}); err != nil {
		return nil, err
	}
	if err := a.reg.Register(newRedisPoolCollector(a.rdb)); err != nil {
		return nil, err
	}
	brokers := strings.Split(cfg.Brokers, ",")
	for i := range brokers {
		brokers[i] = strings.TrimSpace(brokers[i])
	}
	if err := waitForDependency(ctx, log, "broker", minTime(deadline, time.Now().Add(brokerStartWait)), redact, func(ctx context.Context) error {
		return kafkabus.Ping(ctx, brokers)
	}); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		log.Warn("starting without the broker: the outbox keeps events until it is reachable", "err", err)
		a.brokerDown = true
	}
	if a.kafka, err = kafkabus.NewWriter(kafkabus.WriterConfig{Brokers: brokers}); err != nil {
		return nil, err
	}
	if err := a.reg.Register(newKafkaWriterCollector(a.kafka)); err != nil {
		return nil, err
	}
	return a, a.wire(ctx, brokers)
}

// brokerStartWait is how long start-up waits for the broker.
const brokerStartWait = 5 * time.Second

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
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
		"attribution: fold total slots":  a.foldAttribution,
		"omsd: check dependencies":       func(ctx context.Context) error { return a.deps.Run(ctx, 10*time.Second) },
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
	return every(ctx, time.Second, func() {
		if _, err := a.stock.SweepExpired(ctx, time.Now(), 0); err != nil && ctx.Err() == nil {
			a.log.Warn("sweep expired holds", "err", err)
		}
	})
}

// every runs fn every period until ctx ends.
func every(ctx context.Context, period time.Duration, fn func()) error {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			fn()
		}
	}
}

// foldAttribution folds the attribution totals of past hours into one row
// per key (pgstore.FoldAttributionSlots), every minute, for the hours that
// ended at least five minutes ago.
func (a *app) foldAttribution(ctx context.Context) error {
	folded := prometheus.NewCounter(prometheus.CounterOpts{Name: "omsd_attribution_rows_folded_total",
		Help: "Attribution total rows of past hours folded into one row per key (the summary reads fewer rows)."})
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "omsd_attribution_fold_errors_total",
		Help: "Failed folds of attribution totals (retried the next minute; the summary stays right, only slower)."})
	for _, c := range []prometheus.Collector{folded, errs} {
		if err := a.reg.Register(c); err != nil {
			return err
		}
	}
	return every(ctx, time.Minute, func() {
		n, err := a.store.FoldAttributionSlots(ctx, time.Now().Add(-5*time.Minute).Truncate(time.Hour))
		if err != nil && ctx.Err() == nil {
			errs.Inc()
			a.log.Warn("fold attribution totals", "err", err)
		}
		folded.Add(float64(n))
	})
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

// parseCommand parses a command's flags: the named settings (every one
// when none is named) and the command's own (extra). A bad value is a
// usageError naming the setting.
func parseCommand(name string, args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet), names ...string) (*config, *settings, error) {
	cfg := &config{}
	ss := declareSettings(cfg)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	ss.bind(fs, names...)
	if extra != nil {
		extra(fs)
	}
	if err := ss.parse(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, err
		}
		return nil, nil, usageError{fmt.Errorf("%s: %w", name, err)}
	}
	return cfg, ss, nil
}

func cmdServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, ss, err := parseCommand("omsd serve", args, getenv, stderr, nil)
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return usageError{fmt.Errorf("omsd serve: %w", err)}
	}
	log := newLogger(stderr, cfg.LogLevel)
	b := readBuildInfo()
	log.Info("omsd starting", append([]any{"version", b.Version, "revision", b.Revision, "go", b.GoVersion},
		slog.Group("config", ss.redacted()...))...)
	a, err := newApp(ctx, *cfg, log)
	if err != nil {
		return err
	}
	defer a.close()
	return a.run(ctx, nil)
}

func cmdMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, _, err := parseCommand("omsd migrate", args, getenv, stderr, nil, "pg.url", "start.timeout", "log.level")
	if err != nil {
		return err
	}
	if cfg.DatabaseURL == "" {
		return usageError{errors.New("omsd migrate: missing -pg.url (OMS_DATABASE_URL)")}
	}
	log := newLogger(stderr, cfg.LogLevel)
	var s *pgstore.Store
	if err := waitForDependency(ctx, log, "database", time.Now().Add(cfg.StartTimeout),
		func(m string) string { return redactIn(m, cfg.DatabaseURL) },
		func(ctx context.Context) (err error) {
			s, err = pgstore.Open(ctx, pgstore.Config{URL: cfg.DatabaseURL})
			return err
		}); err != nil {
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
