package localstack

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
)

func TestPostgresPauseStopsEveryProcessAndResumeContinues(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p, err := StartPostgres(ctx, t.TempDir(), nil)
	if err != nil {
		unavailable(t, err)
	}
	defer p.Close()
	conn, err := pgx.Connect(ctx, p.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	procs, err := p.Processes()
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) < 3 {
		t.Errorf("got %d postgres processes, want the postmaster, its helpers and our backend", len(procs))
	}
	for _, pid := range procs {
		if st := procState(pid); st != "T" && st != "Z" && st != "" {
			t.Errorf("postgres process %d is in state %s while paused, want T (stopped)", pid, st)
		}
	}
	qctx, qcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	var one int
	err = conn.QueryRow(qctx, "SELECT 1").Scan(&one)
	qcancel()
	if err == nil {
		t.Errorf("a query answered while postgres was paused")
	}

	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range procs {
		if st := procState(pid); st == "T" {
			t.Errorf("postgres process %d still stopped after Resume", pid)
		}
	}
	conn2, err := pgx.Connect(ctx, p.URL())
	if err != nil {
		t.Fatalf("connect after resume: %v", err)
	}
	defer conn2.Close(ctx)
	if err := conn2.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("got %d, %v after resume, want 1", one, err)
	}
}

func TestPostgresCloseWhilePausedStopsIt(t *testing.T) {
	before := descendants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p, err := StartPostgres(ctx, t.TempDir(), nil)
	if err != nil {
		unavailable(t, err)
	}
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("close of a paused server: %v", err)
	}
	if after := descendants(t); len(after) != len(before) {
		t.Errorf("got %d descendants after Close, want %d", len(after), len(before))
	}
}

func TestRedisFlushAllLosesEveryKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := StartRedis(ctx, t.TempDir(), nil)
	if err != nil {
		unavailable(t, err)
	}
	defer r.Close()
	send := func(cmd string) string {
		t.Helper()
		c, err := (&netDialer{}).dial(r.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.do(t, cmd)
	}
	if got := send("SET k v"); got != "+OK" {
		t.Fatalf("SET: %q", got)
	}
	if err := r.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := send("DBSIZE"); got != ":0" {
		t.Errorf("got DBSIZE %q after FlushAll, want :0", got)
	}
}

func TestKafkaStopStartKeepsAddressAndData(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	k, err := StartKafka(ctx, KafkaConfig{DataDir: filepath.Join(t.TempDir(), "kafka"), Partitions: 1}, nil)
	if err != nil {
		unavailable(t, err)
	}
	defer k.Close()
	addr := k.Brokers()[0]
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: TopicWMSEvents, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("before the restart")}); err != nil {
		t.Fatal(err)
	}
	w.Close()

	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	if c, err := kafka.DialContext(ctx, "tcp", addr); err == nil {
		c.Close()
		t.Errorf("the broker still accepts connections while stopped")
	}
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got := k.Brokers()[0]; got != addr {
		t.Errorf("got address %s after restart, want %s", got, addr)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: TopicWMSEvents, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	m, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatalf("read after restart: %v", err)
	}
	if string(m.Value) != "before the restart" {
		t.Errorf("got %q after restart, want the message written before", m.Value)
	}
}

type netDialer struct{}

type redisConn struct{ net.Conn }

func (netDialer) dial(addr string) (redisConn, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	return redisConn{c}, err
}

func (c redisConn) do(t *testing.T, cmd string) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}
