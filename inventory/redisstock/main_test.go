package redisstock_test

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/omsd/omsd/deploy/localstack/stacktest"
	"github.com/omsd/omsd/inventory/redisstock"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// newClient returns a client of the server at addr, closed at cleanup.
func newClient(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	tb.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// newStore returns a Store on rdb, failing the test on error.
func newStore(tb testing.TB, rdb redis.UniversalClient, cfg redisstock.Config) *redisstock.Store {
	tb.Helper()
	s, err := redisstock.New(rdb, cfg)
	if err != nil {
		tb.Fatalf("redisstock.New: %v", err)
	}
	return s
}

// prefixFor turns a test name into a key prefix: the test's own keys, on a
// server shared by the subtests.
func prefixFor(t *testing.T) string {
	return strings.NewReplacer("{", "(", "}", ")", " ", "_").Replace(t.Name())
}

// flushAll empties every master of a cluster.
func flushAll(tb testing.TB, rdb *redis.ClusterClient) {
	tb.Helper()
	err := rdb.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
		return c.FlushAll(ctx).Err()
	})
	if err != nil {
		tb.Fatalf("flush cluster: %v", err)
	}
}
