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
	Log        *slog.Logger
}

// Stack is a running local stack. Fields of services supplied through the
// environment are nil.
type Stack struct {
	Postgres *Postgres
	Redis    *Redis
	Kafka    *Kafka

	databaseURL string
	redisURL    string
	brokers     []string
}

// DatabaseURL is the PostgreSQL (or CockroachDB) URL omsd should use.
func (s *Stack) DatabaseURL() string { return s.databaseURL }

// RedisURL is the redis:// URL omsd should use.
func (s *Stack) RedisURL() string { return s.redisURL }

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
	} else {
		if s.Redis, err = StartRedis(ctx, filepath.Join(cfg.StateDir, "redis"), cfg.Log); err != nil {
			return nil, err
		}
		s.redisURL = s.Redis.URL()
	}
	if b := cfg.Getenv("OMS_KAFKA_BROKERS"); b != "" {
		s.brokers = strings.Split(b, ",")
	} else {
		kc := KafkaConfig{Partitions: cfg.Partitions, SyncWrites: cfg.KafkaSyncWrites}
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
	if s.Postgres != nil {
		errs = append(errs, s.Postgres.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("localstack: close: %w", err)
	}
	return nil
}
