package localstack

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
)

func descendants(t *testing.T) []int {
	t.Helper()
	d, err := Descendants(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func unavailable(t *testing.T, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("local stack could not start (CI is set): %v", err)
	}
	t.Skipf("SKIPPED LOUDLY: local stack could not start: %v (run make deps)", err)
}

func TestStackStartsEveryServiceAndLeavesNoProcessBehind(t *testing.T) {
	before := descendants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{StateDir: t.TempDir()})
	if err != nil {
		unavailable(t, err)
	}
	during := descendants(t)
	if len(during) <= len(before) {
		t.Errorf("got %d descendant processes while running, want more than %d", len(during), len(before))
	}

	conn, err := pgx.Connect(ctx, s.DatabaseURL())
	if err != nil {
		t.Fatalf("connect postgres: %v", err)
	}
	var fsync, syncCommit string
	if err := conn.QueryRow(ctx, "SELECT current_setting('fsync'), current_setting('synchronous_commit')").Scan(&fsync, &syncCommit); err != nil {
		t.Fatalf("query settings: %v", err)
	}
	conn.Close(ctx)
	if fsync != "on" || syncCommit != "on" {
		t.Errorf("got fsync=%s synchronous_commit=%s, want both on", fsync, syncCommit)
	}
	if err := ping(s.Redis.Addr()); err != nil {
		t.Errorf("redis ping: %v", err)
	}
	kc, err := kafka.DialContext(ctx, "tcp", s.Brokers()[0])
	if err != nil {
		t.Fatalf("dial broker: %v", err)
	}
	parts, err := kc.ReadPartitions(TopicShipments, TopicWMSEvents, TopicOrders)
	kc.Close()
	if err != nil {
		t.Fatalf("read partitions: %v", err)
	}
	if len(parts) != 3*8 {
		t.Errorf("got %d partitions over the contract topics, want %d", len(parts), 3*8)
	}

	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	after := descendants(t)
	if len(after) != len(before) {
		t.Errorf("got %d descendant processes after Close (%v), want %d as before", len(after), after, len(before))
	}
}

func TestEnvironmentReplacesPrivateServices(t *testing.T) {
	env := map[string]string{
		"OMS_DATABASE_URL":  "postgres://elsewhere/db",
		"OMS_REDIS_URL":     "redis://elsewhere:6379/0",
		"OMS_KAFKA_BROKERS": "k1:9092,k2:9092",
	}
	s, err := Start(context.Background(), Config{StateDir: t.TempDir(), Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer s.Close()
	if s.Postgres != nil || s.Redis != nil || s.Kafka != nil {
		t.Errorf("got private services started although the environment names them")
	}
	if got := s.DatabaseURL(); got != env["OMS_DATABASE_URL"] {
		t.Errorf("got database %q, want %q", got, env["OMS_DATABASE_URL"])
	}
	if got := strings.Join(s.Brokers(), ","); got != env["OMS_KAFKA_BROKERS"] {
		t.Errorf("got brokers %q, want %q", got, env["OMS_KAFKA_BROKERS"])
	}
}

func TestMissingBinaryNamesThePackage(t *testing.T) {
	_, err := lookBinary("omsd-no-such-server", "some-debian-package")
	if err == nil || !strings.Contains(err.Error(), "some-debian-package") {
		t.Fatalf("got %v, want an error naming the package", err)
	}
}

func TestRedisClusterReachesStateOK(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := StartRedisCluster(ctx, t.TempDir(), 3, nil)
	if err != nil {
		unavailable(t, err)
	}
	defer c.Close()
	if len(c.Addrs()) != 3 {
		t.Fatalf("got %d masters, want 3", len(c.Addrs()))
	}
	for _, n := range c.Nodes {
		if n.Port+10000 > 65535 {
			t.Errorf("node port %d leaves no room for the cluster bus", n.Port)
		}
	}
}

func TestRelativeStateDirWorks(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{StateDir: ".oms-dev"})
	if err != nil {
		unavailable(t, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
