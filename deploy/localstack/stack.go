package localstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
)

// Config configures a Stack. The zero value starts every service in
// memory-friendly defaults under a state directory of ".oms-dev".
type Config struct {
	// StateDir holds the data directories; default ".oms-dev".
	StateDir string
	// Getenv reads OMS_DATABASE_URL, OMS_REDIS_URL and OMS_KAFKA_BROKERS;
	// a set variable replaces the private service. Default: no overrides.
	Getenv func(string) string
	// KafkaPersist keeps the broker's log under StateDir/kafka.
	KafkaPersist bool
	// KafkaSyncWrites fsyncs every produced batch (with KafkaPersist).
	KafkaSyncWrites bool
	// Partitions per topic; default 8.
	Partitions int32
	// RedisMasters > 0 runs a Redis Cluster of that many masters instead
	// of one redis-server (at least 3: the cluster needs a majority).
	RedisMasters int
	// KafkaBrokers is the number of brokers of the Kafka-protocol cluster;
	// default 1. Partition leaders are spread over them.
	KafkaBrokers int
	Log          *slog.Logger
}

// Stack is a running local stack. Fields of services supplied through the
// environment are nil.
type Stack struct {
	Postgres     *Postgres
	Redis        *Redis        // nil with a cluster
	RedisCluster *RedisCluster // nil with one server
	Kafka        *Kafka

	databaseURL string
	redisURL    string
	brokers     []string
}

// DatabaseURL is the PostgreSQL (or CockroachDB) URL omsd should use.
func (s *Stack) DatabaseURL() string { return s.databaseURL }

// RedisURL is the redis:// URL omsd should use; with a cluster, the
// comma-separated redis:// URLs of every master (omsd's -redis.url with
// -redis.cluster).
func (s *Stack) RedisURL() string { return s.redisURL }

// RedisIsCluster says whether RedisURL names a Redis Cluster.
func (s *Stack) RedisIsCluster() bool { return s.RedisCluster != nil }

// Brokers are the Kafka bootstrap addresses.
func (s *Stack) Brokers() []string { return s.brokers }

// Start starts PostgreSQL, redis-server and the Kafka-protocol broker, or
// uses the ones named in the environment, and returns once each answers.
// On error everything already started is stopped.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.StateDir == "" {
		cfg.StateDir = ".oms-dev"
	}
	if cfg.Getenv == nil {
		cfg.Getenv = func(string) string { return "" }
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Stack{}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if u := cfg.Getenv("OMS_DATABASE_URL"); u != "" {
		s.databaseURL = u
	} else {
		if s.Postgres, err = StartPostgres(ctx, filepath.Join(cfg.StateDir, "postgres"), cfg.Log); err != nil {
			return nil, err
		}
		s.databaseURL = s.Postgres.URL()
	}
	if u := cfg.Getenv("OMS_REDIS_URL"); u != "" {
		s.redisURL = u
	} else if cfg.RedisMasters > 0 {
		if cfg.RedisMasters < 3 {
			return nil, fmt.Errorf("localstack: a Redis Cluster needs at least 3 masters, not %d", cfg.RedisMasters)
		}
		if s.RedisCluster, err = StartRedisCluster(ctx, filepath.Join(cfg.StateDir, "redis-cluster"), cfg.RedisMasters, cfg.Log); err != nil {
			return nil, err
		}
		urls := make([]string, len(s.RedisCluster.Nodes))
		for i, n := range s.RedisCluster.Nodes {
			urls[i] = n.URL()
		}
		s.redisURL = strings.Join(urls, ",")
	} else {
		if s.Redis, err = StartRedis(ctx, filepath.Join(cfg.StateDir, "redis"), cfg.Log); err != nil {
			return nil, err
		}
		s.redisURL = s.Redis.URL()
	}
	if b := cfg.Getenv("OMS_KAFKA_BROKERS"); b != "" {
		s.brokers = strings.Split(b, ",")
	} else {
		kc := KafkaConfig{Partitions: cfg.Partitions, SyncWrites: cfg.KafkaSyncWrites, Brokers: cfg.KafkaBrokers}
		if cfg.KafkaPersist {
			kc.DataDir = filepath.Join(cfg.StateDir, "kafka")
		}
		if s.Kafka, err = StartKafka(ctx, kc, cfg.Log); err != nil {
			return nil, err
		}
		s.brokers = s.Kafka.Brokers()
	}
	return s, nil
}

// Close stops every service this stack started, in reverse order.
func (s *Stack) Close() error {
	var errs []error
	if s.Kafka != nil {
		errs = append(errs, s.Kafka.Close())
	}
	if s.Redis != nil {
		errs = append(errs, s.Redis.Close())
	}
	if s.RedisCluster != nil {
		errs = append(errs, s.RedisCluster.Close())
	}
	if s.Postgres != nil {
		errs = append(errs, s.Postgres.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("localstack: close: %w", err)
	}
	return nil
}
