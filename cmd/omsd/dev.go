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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/omsd/omsd/deploy/localstack"
	"github.com/omsd/omsd/oms/wmssim"
)

// cmdDev starts the local stack and --instances `omsd serve` processes on
// it (children of this process, started from its own binary), writes
// DIR/stack.env once everything answers, carries out faults on request
// (see devfaults.go), and on SIGINT/SIGTERM removes stack.env and stops
// everything.
func cmdDev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("omsd dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", ".oms-dev", "directory for the services' data, the omsd logs and stack.env")
	httpAddr := fs.String("http.addr", "127.0.0.1:0", "listen address of the first omsd instance (the others take free ports)")
	instances := fs.Int("instances", 1, "number of omsd serve processes, each on its own port")
	redisCluster := fs.Bool("redis-cluster", false, "run a 3-master Redis Cluster instead of one redis-server")
	kafkaBrokers := fs.Int("kafka-brokers", 1, "number of brokers of the Kafka-protocol cluster (partition leaders spread over them)")
	debugAddr := fs.String("debug.addr", "", "listen address of net/http/pprof of the first instance (off when empty)")
	demo := fs.Bool("demo", false, "seed nodes, channels and stock, run a flash-sale load test, print the report and exit")
	logLevel := new("info")
	fs.Var(&enumValue{logLevel, logLevels}, "log.level", "log level of omsd dev and the omsd instances: debug, info, warn or error")
	withSim := fs.Bool("wms-sim", true, "run the warehouse simulator on the stack's broker")
	shipAfter := fs.Duration("wms.ship-after", 2*time.Second, "simulated time from shipment request to shipment")
	shortPick := fs.Float64("wms.short-pick-share", 0.02, "share of shipments the simulator short-picks (re-sourced by omsd)")
	receiveAfter := fs.Duration("wms.receive-after", 2*time.Second, "simulated time from return.expected to return.received")
	damaged := fs.Float64("wms.return-damaged-share", 0.2, "share of returned units the simulator receives damaged")
	var dc demoConfig
	fs.Float64Var(&dc.Rate, "demo.rate", 400, "peak offered rate of the demo's flash sale, orders/s (default: a rate a 2-core box of the reference kind carries at p99 <= 100 ms with the warehouse simulator running; the ramp of make bench finds the highest one on this box)")
	fs.DurationVar(&dc.Duration, "demo.duration", 40*time.Second, "length of the demo's flash sale")
	fs.IntVar(&dc.SKUs, "demo.skus", 300, "catalogue size of the demo")
	fs.IntVar(&dc.Nodes, "demo.nodes", 12, "nodes of the demo")
	fs.Int64Var(&dc.Stock, "demo.stock", 40, "units per warehouse and SKU in the demo (small, so hot SKUs sell out)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("omsd dev: unexpected arguments %q", fs.Args())}
	}
	if *instances < 1 || *instances > 64 {
		return usageError{errors.New("omsd dev: --instances must be in [1, 64]")}
	}
	if *kafkaBrokers < 1 || *kafkaBrokers > 9 {
		return usageError{errors.New("omsd dev: --kafka-brokers must be in [1, 9]")}
	}
	redisMasters := 0
	if *redisCluster {
		redisMasters = 3
	}
	firstPort, err := portOf(*httpAddr)
	if err != nil {
		return fmt.Errorf("omsd dev: --http.addr: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("omsd dev: cannot find its own binary to start omsd serve: %w", err)
	}
	log := newLogger(stderr, *logLevel)
	if err := os.MkdirAll(*stateDir, 0o755); err != nil {
		return err
	}
	absState, err := filepath.Abs(*stateDir)
	if err != nil {
		return err
	}
	envPath := filepath.Join(absState, "stack.env")
	_ = os.Remove(envPath)

	start := time.Now()
	fmt.Fprintln(stdout, "omsd dev: starting PostgreSQL, redis-server and the Kafka broker ...")
	stack, err := localstack.Start(ctx, localstack.Config{
		StateDir: absState, Getenv: getenv, KafkaPersist: true, Log: log,
		RedisMasters: redisMasters, KafkaBrokers: *kafkaBrokers,
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
	adminKey := "adm_" + hex.EncodeToString(key)
	brokers := strings.Join(stack.Brokers(), ",")
	// The children get the settings as flags (which beat the environment)
	// and the admin key through the environment, out of the process list.
	hashKey, err := devCustomerHashKey(absState)
	if err != nil {
		return err
	}
	childEnv := append(os.Environ(), devChildEnv+"=1", "OMS_ADMIN_KEY="+adminKey, "OMS_CUSTOMER_HASH_KEYS="+hashKey)
	mctx, mcancel := context.WithTimeout(ctx, 2*time.Minute)
	err = runChild(mctx, exe, childEnv, "migrate", "--pg.url", stack.DatabaseURL())
	mcancel()
	if err != nil {
		return err
	}

	exited := make(chan instanceExit, *instances)
	ins := make([]*instance, *instances)
	// omsd dev listens for every instance itself and hands the socket
	// down (fd 3): the port is never free between a kill and the restart,
	// so nothing else can take it (picking a free port and letting the
	// child bind it later loses, now and then, to an ephemeral port of
	// another client), and connections made meanwhile wait in the backlog.
	var listeners []*os.File
	defer func() {
		for _, f := range listeners {
			f.Close()
		}
	}()
	for i := range ins {
		addr := "127.0.0.1:0"
		if i == 0 && firstPort != 0 {
			addr = *httpAddr
		}
		lf, port, err := listenFile(addr)
		if err != nil {
			return fmt.Errorf("omsd dev: listen for omsd serve instance %d: %w", i, err)
		}
		listeners = append(listeners, lf)
		args := []string{"serve", "--http.addr", "127.0.0.1:" + strconv.Itoa(port), "--http.listen-fd", "3",
			"--pg.url", stack.DatabaseURL(), "--redis.url", stack.RedisURL(), "--kafka.brokers", brokers,
			"--log.level", *logLevel, "--migrate=false"}
		if stack.RedisIsCluster() {
			args = append(args, "--redis.cluster")
		}
		if i == 0 && *debugAddr != "" {
			args = append(args, "--debug.addr", *debugAddr)
		}
		ins[i] = &instance{idx: i, port: port, listener: lf, exe: exe, args: args, env: childEnv,
			logPath: filepath.Join(absState, fmt.Sprintf("omsd-%d.log", i)), log: log, exited: exited}
	}
	defer func() {
		if err := stopAll(ins); err != nil {
			log.Error("stopping omsd serve", "err", err)
		}
	}()
	rctx, rcancel := context.WithTimeout(ctx, 90*time.Second)
	var wg sync.WaitGroup
	readyErrs := make([]error, len(ins))
	for i, in := range ins {
		if err := in.start(); err != nil {
			rcancel()
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			readyErrs[i] = in.waitReady(rctx)
		}()
	}
	wg.Wait()
	rcancel()
	if err := errors.Join(readyErrs...); err != nil {
		return err
	}
	urls := make([]string, len(ins))
	for i, in := range ins {
		urls[i] = in.URL()
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	simDone := make(chan error, 1)
	if *withSim {
		go func() {
			simDone <- wmssim.Run(runCtx, wmssim.Config{Brokers: stack.Brokers(), ShipAfter: *shipAfter, ShortPickShare: *shortPick,
				ReceiveAfter: *receiveAfter, DamagedShare: *damaged, Logger: log})
		}()
		fmt.Fprintf(stdout, "omsd dev: warehouse simulator ships every request after %s (short-picks %.0f%%), receives returns after %s (%.0f%% damaged)\n",
			*shipAfter, *shortPick*100, *receiveAfter, *damaged*100)
	} else {
		simDone <- nil
	}
	defer func() {
		cancel()
		if err := <-simDone; err != nil && !errors.Is(err, context.Canceled) {
			log.Error("warehouse simulator", "err", err)
		}
	}()

	faults := newFaultController(stack, ins, defaultFaultTimes, log)
	defer faults.close()
	controlURL, err := faults.serve(runCtx)
	if err != nil {
		return err
	}

	env := fmt.Sprintf("OMS_API_URL=%s\nOMS_API_URLS=%s\nOMS_ADMIN_KEY=%s\nOMS_DATABASE_URL=%s\nOMS_REDIS_URL=%s\nOMS_REDIS_CLUSTER=%t\nOMS_KAFKA_BROKERS=%s\nOMS_DEV_CONTROL_URL=%s\nOMS_DEV_CONTROL_TOKEN=%s\n",
		urls[0], strings.Join(urls, ","), adminKey, stack.DatabaseURL(), stack.RedisURL(), stack.RedisIsCluster(), brokers, controlURL, faults.token)
	// Written whole under another name and renamed: whoever waits for
	// stack.env to appear (the tests, oms-bench, make demo) must never read
	// it half-written.
	if err := os.WriteFile(envPath+".tmp", []byte(env), 0o600); err != nil {
		return err
	}
	if err := os.Rename(envPath+".tmp", envPath); err != nil {
		return err
	}
	defer os.Remove(envPath)
	fmt.Fprintf(stdout, "omsd dev: ready in %s (%d omsd serve instance(s), logs in %s/omsd-N.log)\n%s\nomsd dev: settings written to %s; Ctrl-C stops everything\n",
		time.Since(start).Round(time.Millisecond), len(ins), absState, env, envPath)

	wait := func() error {
		select {
		case <-runCtx.Done():
			return nil
		case e := <-exited:
			return fmt.Errorf("omsd serve instance %d exited unexpectedly: %v; last lines of %s:\n%s", e.idx, e.err, e.logPath, tail(e.logPath, 20))
		}
	}
	if *demo {
		demoDone := make(chan error, 1)
		go func() {
			demoDone <- runDemo(runCtx, urls, adminKey, stack.Brokers(), absState, dc, stdout)
		}()
		select {
		case err = <-demoDone:
		case e := <-exited:
			cancel()
			<-demoDone
			err = fmt.Errorf("omsd serve instance %d exited unexpectedly: %v; last lines of %s:\n%s", e.idx, e.err, e.logPath, tail(e.logPath, 20))
		}
		return err
	}
	err = wait()
	fmt.Fprintln(stdout, "omsd dev: stopped")
	return err
}

// devCustomerHashKey returns the customer-hash key of the local stack,
// kept in the state directory next to the database it belongs to (a new key
// would stop every stored phone and email from matching again).
func devCustomerHashKey(stateDir string) (string, error) {
	path := filepath.Join(stateDir, "customer-hash-key")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	key := "dev1:" + hex.EncodeToString(secret)
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("omsd dev: keep the customer-hash key: %w", err)
	}
	return key, nil
}
