package localstack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Pause freezes the server: SIGSTOP to the postmaster first (so that it
// forks no new backend), then to every process descended from it
// (backends, checkpointer, WAL writer, ...), listed twice to catch a
// process forked in between. Clients see connections that accept but never
// answer, as with a database stuck on I/O. Resume undoes it; Close resumes
// a paused server before it stops it.
func (p *Postgres) Pause() error {
	if p == nil || p.proc == nil || p.proc.exited() {
		return errors.New("localstack: postgres is not running")
	}
	p.pauseMu.Lock()
	defer p.pauseMu.Unlock()
	if err := freezePID(p.PID()); err != nil {
		return fmt.Errorf("localstack: stop postgres: %w", err)
	}
	p.paused = true
	// SIGSTOP takes effect when the process is next scheduled: wait until
	// the postmaster is really stopped, so that it forks nothing after the
	// list below is read.
	waitStopped(p.PID())
	stopped := map[int]bool{}
	for range 5 {
		kids, err := Descendants(p.PID())
		if err != nil {
			return err
		}
		fresh := 0
		for _, k := range kids {
			if !stopped[k] {
				stopped[k] = true
				fresh++
				_ = freezePID(k) // a backend may have just exited
			}
		}
		if fresh == 0 {
			break
		}
		for k := range stopped {
			waitStopped(k)
		}
	}
	return nil
}

// waitStopped waits (up to a second) until pid is in state T (stopped)
// or gone.
func waitStopped(pid int) {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		switch procState(pid) {
		case "T", "t", "Z", "X", "":
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// procState is the state letter of /proc/PID/stat, "" when it is gone.
func procState(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return ""
	}
	if f := strings.Fields(s[i+2:]); len(f) > 0 {
		return f[0]
	}
	return ""
}

// Resume sends SIGCONT to the postmaster and every process descended from
// it.
func (p *Postgres) Resume() error {
	if p == nil || p.proc == nil {
		return errors.New("localstack: postgres is not running")
	}
	p.pauseMu.Lock()
	defer p.pauseMu.Unlock()
	return p.resumeLocked()
}

func (p *Postgres) resumeLocked() error {
	if !p.paused {
		return nil
	}
	kids, err := Descendants(p.PID())
	for _, k := range kids {
		_ = thawPID(k)
	}
	if kerr := thawPID(p.PID()); kerr != nil && err == nil {
		err = fmt.Errorf("localstack: continue postgres: %w", kerr)
	}
	p.paused = false
	return err
}

// Processes lists the PIDs of the postmaster and its descendants.
func (p *Postgres) Processes() ([]int, error) {
	kids, err := Descendants(p.PID())
	if err != nil {
		return nil, err
	}
	return append([]int{p.PID()}, kids...), nil
}

// FlushAll makes the server lose every key (FLUSHALL), as after a restart
// of a server without persistence, but without closing the connections.
func (r *Redis) FlushAll(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", r.Addr())
	if err != nil {
		return fmt.Errorf("localstack: redis flushall: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("FLUSHALL\r\n")); err != nil {
		return fmt.Errorf("localstack: redis flushall: %w", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("localstack: redis flushall: %w", err)
	}
	if !strings.HasPrefix(line, "+OK") {
		return fmt.Errorf("localstack: redis flushall: server answered %q", strings.TrimSpace(line))
	}
	return nil
}

// FlushAll makes every master of the cluster lose every key, one after
// the other, as after a restart of the whole cluster without persistence.
func (c *RedisCluster) FlushAll(ctx context.Context) error {
	for _, n := range c.Nodes {
		if err := n.FlushAll(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Stop closes the broker: its listeners go away and every connection is
// dropped. With a DataDir its log, topics and committed group offsets are
// flushed to disk, so Start brings them back.
func (k *Kafka) Stop() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cluster == nil {
		return nil
	}
	k.cluster.Close()
	k.cluster = nil
	return nil
}

// Start starts a stopped broker again on the same addresses, reloading its
// DataDir. Starting a running broker is a no-op.
func (k *Kafka) Start(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cluster != nil {
		return nil
	}
	opts := append(k.opts(), kfake.Ports(k.ports...))
	var (
		c   *kfake.Cluster
		err error
	)
	// The port was ours a moment ago; a connection in the kernel's
	// backlog can keep it busy briefly.
	for attempt := 0; ; attempt++ {
		c, err = kfake.NewCluster(opts...)
		if err == nil || attempt == 50 || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("localstack: kafka broker restart: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, a := range c.ListenAddrs() {
		if err := waitTCP(wctx, a); err != nil {
			c.Close()
			return err
		}
	}
	k.cluster = c
	return nil
}
