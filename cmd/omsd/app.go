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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/httpapi"
	"github.com/omsd/omsd/oms/kafkabus"
	"github.com/omsd/omsd/oms/pgstore"
)

// app is one omsd instance wired from a config.
type app struct {
	cfg   config
	log   *slog.Logger
	reg   *prometheus.Registry
	store *pgstore.Store
	rdb   redis.UniversalClient
	http  *httpapi.Server
	// catalog is the in-memory view intake plans with.
	catalog *oms.CatalogCache

	// workers are the long-running parts (Run(ctx) error), started by run.
	workers map[string]func(ctx context.Context) error
	closers []func()
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

// newApp connects to every service and wires the components. Close undoes
// it.
func newApp(ctx context.Context, cfg config, log *slog.Logger) (_ *app, err error) {
	a := &app{cfg: cfg, log: log, reg: prometheus.NewRegistry(), workers: map[string]func(context.Context) error{}}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	a.store, err = pgstore.Open(ctx, pgstore.Config{URL: cfg.DatabaseURL, MaxConns: int32(cfg.PGMaxConns)})
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.store.Close)
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
	a.closers = append(a.closers, func() { _ = a.rdb.Close() })
	brokers := strings.Split(cfg.Brokers, ",")

	a.http, err = httpapi.New(httpapi.Config{
		Addr:         cfg.HTTPAddr,
		AdminKey:     cfg.AdminKey,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Log:          log,
		Registerer:   a.reg,
		Gatherer:     a.reg,
		ReadyChecks: map[string]func(context.Context) error{
			"database": a.store.Ping,
			"redis":    func(ctx context.Context) error { return a.rdb.Ping(ctx).Err() },
			"kafka":    func(ctx context.Context) error { return kafkabus.Ping(ctx, brokers) },
		},
	}, a.store)
	if err != nil {
		return nil, err
	}
	if err := a.wire(ctx, brokers); err != nil {
		return nil, err
	}
	return a, nil
}

// run serves until ctx ends, then shuts down in dependency order: stop
// intake, let the workers finish, close the pools.
func (a *app) run(ctx context.Context, ready func(url string)) error {
	if err := a.http.Listen(); err != nil {
		return err
	}
	if a.cfg.DebugAddr != "" {
		// Profiling on its own listener, never on the public API.
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		dbg := &http.Server{Addr: a.cfg.DebugAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := dbg.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Warn("debug listener", "err", err)
			}
		}()
		defer dbg.Close()
	}
	if ready != nil {
		ready(a.http.URL())
	}
	wctx, cancelWorkers := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(wctx)
	for name, w := range a.workers {
		g.Go(func() error {
			if err := w(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	select {
	case <-ctx.Done():
	case <-gctx.Done():
	}
	a.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := a.http.Shutdown(sctx)
	cancelWorkers()
	if werr := g.Wait(); werr != nil {
		err = errors.Join(err, werr)
	}
	return err
}

func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
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
