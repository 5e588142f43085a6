package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// config is every setting of omsd serve. Flags use dotted names; each has
// an environment fallback for container deployments.
type config struct {
	HTTPAddr     string
	DatabaseURL  string
	RedisURL     string
	RedisCluster bool
	Brokers      string
	AdminKey     string
	LogLevel     string
	PGMaxConns   int
	Migrate      bool

	IntakeShards    int
	BatchWindow     time.Duration
	BatchMax        int
	MaxInFlight     int
	MinInFlight     int
	LatencyBudget   time.Duration
	PaymentTimeout  time.Duration
	ReconcileEvery  time.Duration
	MaxBodyBytes    int64
	EventBatch      int
	AvailabilityTTL time.Duration
	WMSWorkers      int
	DebugAddr       string
	ChannelRate     float64
	ChannelBurst    int

	// Customers and attribution.
	CustomerMatch    bool          // match orders to customers (and bind them)
	CustomerHashKeys string        // "id:secret,id:secret"; the first hashes new keys, all are matched
	BindingPeriod    time.Duration // how long an attribution binding lasts
	BindingPolicy    string        // keep_first or latest
}

// flagSet declares the serve flags on fs with env fallbacks read through
// getenv.
func (c *config) flagSet(fs *flag.FlagSet, getenv func(string) string) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	envDur := func(name string, def time.Duration) time.Duration {
		if d, err := time.ParseDuration(getenv(name)); err == nil {
			return d
		}
		return def
	}
	envInt := func(name string, def int) int {
		var n int
		if _, err := fmt.Sscan(getenv(name), &n); err == nil {
			return n
		}
		return def
	}
	fs.StringVar(&c.HTTPAddr, "http.addr", env("OMS_HTTP_ADDR", "127.0.0.1:8080"), "listen address of the HTTP API (env OMS_HTTP_ADDR)")
	fs.StringVar(&c.DatabaseURL, "pg.url", env("OMS_DATABASE_URL", ""), "PostgreSQL or CockroachDB URL (env OMS_DATABASE_URL)")
	fs.StringVar(&c.RedisURL, "redis.url", env("OMS_REDIS_URL", ""), "Redis URL; with -redis.cluster a comma-separated list of cluster nodes (env OMS_REDIS_URL)")
	fs.BoolVar(&c.RedisCluster, "redis.cluster", env("OMS_REDIS_CLUSTER", "") == "true", "Redis is a cluster (env OMS_REDIS_CLUSTER=true)")
	fs.StringVar(&c.Brokers, "kafka.brokers", env("OMS_KAFKA_BROKERS", ""), "comma-separated Kafka bootstrap brokers (env OMS_KAFKA_BROKERS)")
	fs.StringVar(&c.AdminKey, "admin.key", env("OMS_ADMIN_KEY", ""), "admin API key (env OMS_ADMIN_KEY)")
	fs.StringVar(&c.LogLevel, "log.level", env("OMS_LOG_LEVEL", "info"), "debug, info, warn or error (env OMS_LOG_LEVEL)")
	fs.IntVar(&c.PGMaxConns, "pg.max-conns", envInt("OMS_PG_MAX_CONNS", 32), "database pool size (env OMS_PG_MAX_CONNS)")
	fs.BoolVar(&c.Migrate, "migrate", env("OMS_MIGRATE", "true") == "true", "apply migrations at start (env OMS_MIGRATE)")
	fs.IntVar(&c.IntakeShards, "intake.shards", envInt("OMS_INTAKE_SHARDS", 8), "group-commit shards (env OMS_INTAKE_SHARDS)")
	fs.DurationVar(&c.BatchWindow, "intake.batch-window", envDur("OMS_INTAKE_BATCH_WINDOW", 0), "extra time a shard waits for more orders before it commits; 0: commit what is queued as soon as the shard is free (env OMS_INTAKE_BATCH_WINDOW)")
	fs.IntVar(&c.BatchMax, "intake.batch-max", envInt("OMS_INTAKE_BATCH_MAX", 128), "most orders in one commit (env OMS_INTAKE_BATCH_MAX)")
	fs.DurationVar(&c.LatencyBudget, "intake.latency-budget", envDur("OMS_INTAKE_LATENCY_BUDGET", 100*time.Millisecond), "admission: the limit on orders in progress shrinks while they take longer than this on average and grows while they fit; past it an order is answered 503 overloaded at once (env OMS_INTAKE_LATENCY_BUDGET)")
	fs.IntVar(&c.MinInFlight, "intake.min-inflight", envInt("OMS_INTAKE_MIN_INFLIGHT", 16), "fewest orders in progress at once the admission limit allows, however low the throughput (env OMS_INTAKE_MIN_INFLIGHT)")
	fs.IntVar(&c.MaxInFlight, "intake.max-inflight", envInt("OMS_INTAKE_MAX_INFLIGHT", 1024), "most orders in progress at once on this instance, whatever the throughput (env OMS_INTAKE_MAX_INFLIGHT)")
	fs.DurationVar(&c.PaymentTimeout, "intake.payment-timeout", envDur("OMS_PAYMENT_TIMEOUT", 30*time.Minute), "how long a pending-payment order keeps its stock (env OMS_PAYMENT_TIMEOUT)")
	fs.DurationVar(&c.ReconcileEvery, "inventory.reconcile-every", envDur("OMS_RECONCILE_EVERY", 5*time.Minute), "period of the full Redis/SQL reconciliation; a Redis that lost its data is found within 2 s regardless (env OMS_RECONCILE_EVERY)")
	fs.StringVar(&c.DebugAddr, "debug.addr", env("OMS_DEBUG_ADDR", ""), "listen address of net/http/pprof; empty = off (env OMS_DEBUG_ADDR)")
	fs.Float64Var(&c.ChannelRate, "channel.rate", float64(envInt("OMS_CHANNEL_RATE", 20000)), "default orders per second per channel; 0 = unlimited (env OMS_CHANNEL_RATE)")
	fs.IntVar(&c.ChannelBurst, "channel.burst", envInt("OMS_CHANNEL_BURST", 40000), "default burst per channel (env OMS_CHANNEL_BURST)")
	fs.DurationVar(&c.AvailabilityTTL, "intake.availability-ttl", envDur("OMS_INTAKE_AVAILABILITY_TTL", 2*time.Second), "how long intake plans from the levels it last read or reserved before reading them again (the reservation script stays the authority; a plan the view cannot fill is made again on fresh levels); 0: read before every plan (env OMS_INTAKE_AVAILABILITY_TTL)")
	fs.IntVar(&c.EventBatch, "wms.event-batch", envInt("OMS_WMS_EVENT_BATCH", 64), "most warehouse events applied in one SQL transaction; 1: one transaction per event (env OMS_WMS_EVENT_BATCH)")
	fs.IntVar(&c.WMSWorkers, "wms.workers", envInt("OMS_WMS_WORKERS", 32), "warehouse events applied concurrently (each shipment's in order); they gather into the event batches (env OMS_WMS_WORKERS)")
	fs.BoolVar(&c.CustomerMatch, "customers.match", env("OMS_CUSTOMER_MATCH", "true") == "true", "match every order to an omsd customer across channels and apply attribution bindings; false: orders keep the channel's customer id and their own attribution only (env OMS_CUSTOMER_MATCH)")
	fs.StringVar(&c.CustomerHashKeys, "customers.hash-keys", env("OMS_CUSTOMER_HASH_KEYS", ""), "keys of the HMAC that hashes customers' phones and emails for matching, as comma-separated id:secret pairs; the first hashes new keys, every listed one is still matched, so a key is rotated by putting a new one first (env OMS_CUSTOMER_HASH_KEYS)")
	fs.DurationVar(&c.BindingPeriod, "attribution.binding-period", envDur("OMS_BINDING_PERIOD", 365*24*time.Hour), "how long a customer stays bound to the associate, store and distributor that first brought them (env OMS_BINDING_PERIOD)")
	fs.StringVar(&c.BindingPolicy, "attribution.policy", env("OMS_BINDING_POLICY", "keep_first"), "keep_first: an order's own attribution never moves a live binding; latest: it rebinds (env OMS_BINDING_POLICY)")
	fs.Int64Var(&c.MaxBodyBytes, "http.max-body", int64(envInt("OMS_MAX_BODY", 1<<20)), "request body limit in bytes (env OMS_MAX_BODY)")
}

func (c *config) validate() error {
	var missing []string
	if c.DatabaseURL == "" {
		missing = append(missing, "-pg.url (OMS_DATABASE_URL)")
	}
	if c.RedisURL == "" {
		missing = append(missing, "-redis.url (OMS_REDIS_URL)")
	}
	if c.Brokers == "" {
		missing = append(missing, "-kafka.brokers (OMS_KAFKA_BROKERS)")
	}
	if c.AdminKey == "" {
		missing = append(missing, "-admin.key (OMS_ADMIN_KEY)")
	}
	if c.CustomerMatch && c.CustomerHashKeys == "" {
		missing = append(missing, "-customers.hash-keys (OMS_CUSTOMER_HASH_KEYS)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing settings: %s", strings.Join(missing, ", "))
	}
	if len(c.AdminKey) < 16 {
		return fmt.Errorf("-admin.key must be at least 16 characters")
	}
	return nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
