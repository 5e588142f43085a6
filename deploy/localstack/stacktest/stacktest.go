// Package stacktest gives tests the local stack of package localstack: one
// shared stack per test binary (started on first use, stopped by Main), a
// fresh database per test, private redis-servers and Redis Clusters.
//
// When a service cannot start, the test fails if the CI environment
// variable is set, and otherwise skips with a loud message: a missing
// service never passes silently in CI.
package stacktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/omsd/omsd/deploy/localstack"
)

var (
	mu       sync.Mutex
	shared   *localstack.Stack
	sharedEr error
	stateDir string
)

// Main runs the package's tests and stops the shared stack afterwards. Call
// it from TestMain: `func TestMain(m *testing.M) { stacktest.Main(m) }`.
// Each after function runs once the tests are done, before the stack
// stops; an error it returns is printed and fails the run.
func Main(m *testing.M, after ...func() error) {
	code := m.Run()
	for _, f := range after {
		if err := f(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	mu.Lock()
	if shared != nil {
		if err := shared.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stacktest:", err)
			if code == 0 {
				code = 1
			}
		}
		shared = nil
	}
	if stateDir != "" {
		_ = os.RemoveAll(stateDir)
	}
	mu.Unlock()
	os.Exit(code)
}

// unavailable fails in CI and skips loudly elsewhere.
func unavailable(tb testing.TB, what string, err error) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("stacktest: %s could not start (CI is set, so this is a failure): %v", what, err)
	}
	fmt.Fprintf(os.Stderr, "\n*** stacktest: SKIPPING %s: %s could not start: %v\n*** (in CI this fails; run `make deps` to install the services)\n\n", tb.Name(), what, err)
	tb.Skipf("SKIPPED: %s unavailable: %v", what, err)
}

// Stack returns the shared stack, starting it on first use. Services named
// by OMS_DATABASE_URL, OMS_REDIS_URL and OMS_KAFKA_BROKERS are used instead
// of private ones.
func Stack(tb testing.TB) *localstack.Stack {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if shared == nil && sharedEr == nil {
		dir, err := os.MkdirTemp("", "omsd-stacktest-")
		if err != nil {
			sharedEr = err
		} else {
			stateDir = dir
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			shared, sharedEr = localstack.Start(ctx, localstack.Config{StateDir: dir, Getenv: os.Getenv})
			cancel()
		}
	}
	if sharedEr != nil {
		unavailable(tb, "the local stack", sharedEr)
	}
	return shared
}

// Database creates a fresh, empty database on the shared PostgreSQL and
// returns its URL. Without a private server (OMS_DATABASE_URL set) it
// creates the database on that server.
func Database(tb testing.TB) string {
	tb.Helper()
	s := Stack(tb)
	name := "t_" + randomHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DatabaseURL())
	if err != nil {
		tb.Fatalf("stacktest: connect to %s: %v", s.DatabaseURL(), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("stacktest: create database: %v", err)
	}
	return replaceDatabase(s.DatabaseURL(), name)
}

// RedisURL returns the URL of the shared redis-server. Tests sharing it
// must isolate their keys (a prefix inside the hash tag).
func RedisURL(tb testing.TB) string {
	tb.Helper()
	return Stack(tb).RedisURL()
}

// Brokers returns the shared Kafka-protocol broker's addresses.
func Brokers(tb testing.TB) []string {
	tb.Helper()
	return Stack(tb).Brokers()
}

// NewRedis starts a private redis-server for this test, stopped at cleanup.
// Use it when the test flushes, restarts or kills Redis.
func NewRedis(tb testing.TB) *localstack.Redis {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := localstack.StartRedis(ctx, filepath.Join(tb.TempDir(), "redis"), nil)
	if err != nil {
		unavailable(tb, "redis-server", err)
	}
	tb.Cleanup(func() { _ = r.Close() })
	return r
}

// NewRedisCluster starts a private Redis Cluster of masters for this test.
func NewRedisCluster(tb testing.TB, masters int) *localstack.RedisCluster {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := localstack.StartRedisCluster(ctx, filepath.Join(tb.TempDir(), "cluster"), masters, nil)
	if err != nil {
		unavailable(tb, "redis cluster", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// NewKafka starts a private in-memory broker for this test (for tests that
// inject faults into the broker).
func NewKafka(tb testing.TB) *localstack.Kafka {
	tb.Helper()
	k, err := localstack.StartKafka(context.Background(), localstack.KafkaConfig{}, nil)
	if err != nil {
		unavailable(tb, "kafka broker", err)
	}
	tb.Cleanup(func() { _ = k.Close() })
	return k
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// replaceDatabase swaps the database path of a postgres:// URL.
func replaceDatabase(raw, to string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + to
	return u.String()
}
