package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/omsd/omsd/deploy/localstack"
	"github.com/omsd/omsd/oms/wmssim"
)

// cmdDev starts the local stack and omsd on it, writes DIR/stack.env once
// everything answers, and on SIGINT/SIGTERM removes it and stops
// everything.
func cmdDev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("omsd dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", ".oms-dev", "directory for the services' data and stack.env")
	httpAddr := fs.String("http.addr", "127.0.0.1:0", "listen address of omsd")
	debugAddr := fs.String("debug.addr", "", "listen address of net/http/pprof (off when empty)")
	demo := fs.Bool("demo", false, "seed nodes, channels and stock, run a flash-sale load test, print the report and exit")
	logLevel := fs.String("log.level", "info", "log level of omsd")
	withSim := fs.Bool("wms-sim", true, "run the warehouse simulator on the stack's broker")
	shipAfter := fs.Duration("wms.ship-after", 2*time.Second, "simulated time from shipment request to shipment")
	shortPick := fs.Float64("wms.short-pick-share", 0.02, "share of shipments the simulator short-picks (re-sourced by omsd)")
	var dc demoConfig
	fs.Float64Var(&dc.Rate, "demo.rate", 1000, "peak offered rate of the demo's flash sale, orders/s")
	fs.DurationVar(&dc.Duration, "demo.duration", 40*time.Second, "length of the demo's flash sale")
	fs.IntVar(&dc.SKUs, "demo.skus", 300, "catalogue size of the demo")
	fs.IntVar(&dc.Nodes, "demo.nodes", 12, "nodes of the demo")
	fs.Int64Var(&dc.Stock, "demo.stock", 40, "units per warehouse and SKU in the demo (small, so hot SKUs sell out)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(stderr, *logLevel)
	if err := os.MkdirAll(*stateDir, 0o755); err != nil {
		return err
	}
	envPath := filepath.Join(*stateDir, "stack.env")
	_ = os.Remove(envPath)

	start := time.Now()
	fmt.Fprintln(stdout, "omsd dev: starting PostgreSQL, redis-server and the Kafka broker ...")
	stack, err := localstack.Start(ctx, localstack.Config{
		StateDir: *stateDir, Getenv: getenv, KafkaPersist: true, Log: log,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := stack.Close(); err != nil {
			log.Error("stopping the local stack", "err", err)
		}
	}()

	key := make([]byte, 24)
	_, _ = rand.Read(key)
	var cfg config
	cfs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.flagSet(cfs, func(string) string { return "" })
	cfg.HTTPAddr = *httpAddr
	cfg.DebugAddr = *debugAddr
	cfg.DatabaseURL = stack.DatabaseURL()
	cfg.RedisURL = stack.RedisURL()
	cfg.Brokers = strings.Join(stack.Brokers(), ",")
	cfg.AdminKey = "adm_" + hex.EncodeToString(key)
	cfg.LogLevel = *logLevel

	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.close()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	urlc := make(chan string, 1)
	go func() { errc <- a.run(runCtx, func(u string) { urlc <- u }) }()
	var apiURL string
	select {
	case apiURL = <-urlc:
	case err := <-errc:
		return err
	}
	simDone := make(chan error, 1)
	if *withSim {
		go func() {
			simDone <- wmssim.Run(runCtx, wmssim.Config{Brokers: stack.Brokers(), ShipAfter: *shipAfter, ShortPickShare: *shortPick, Logger: log})
		}()
		fmt.Fprintf(stdout, "omsd dev: warehouse simulator ships every request after %s (short-picks %.0f%%)\n", *shipAfter, *shortPick*100)
	} else {
		simDone <- nil
	}
	defer func() {
		cancel()
		if err := <-simDone; err != nil && !errors.Is(err, context.Canceled) {
			log.Error("warehouse simulator", "err", err)
		}
	}()
	env := fmt.Sprintf("OMS_API_URL=%s\nOMS_ADMIN_KEY=%s\nOMS_DATABASE_URL=%s\nOMS_REDIS_URL=%s\nOMS_KAFKA_BROKERS=%s\n",
		apiURL, cfg.AdminKey, cfg.DatabaseURL, cfg.RedisURL, cfg.Brokers)
	if err := os.WriteFile(envPath, []byte(env), 0o600); err != nil {
		return err
	}
	defer os.Remove(envPath)
	fmt.Fprintf(stdout, "omsd dev: ready in %s\n%s\nomsd dev: settings written to %s; Ctrl-C stops everything\n",
		time.Since(start).Round(time.Millisecond), env, envPath)

	if *demo {
		err := runDemo(runCtx, apiURL, cfg.AdminKey, stack.Brokers(), *stateDir, dc, stdout)
		cancel()
		if rerr := <-errc; rerr != nil && err == nil {
			err = rerr
		}
		return err
	}
	err = <-errc
	fmt.Fprintln(stdout, "omsd dev: stopped")
	return err
}
