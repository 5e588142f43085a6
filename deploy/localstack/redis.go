package localstack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Redis is a private redis-server.
type Redis struct {
	Port int
	Dir  string
	proc *child
	bin  string
}

// Addr is host:port of the server.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.Port) }

// URL is the redis:// URL of the server.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// PID is the process id of the server.
func (r *Redis) PID() int { return r.proc.PID() }

// StartRedis runs redis-server on a free loopback port with its working
// directory under dir. Persistence is off on purpose: the counters are a
// cache of the SQL ledger, and a restart must come back empty so that omsd
// detects the loss and rebuilds instead of trusting a stale snapshot.
func StartRedis(ctx context.Context, dir string, log *slog.Logger) (*Redis, error) {
	return startRedis(ctx, dir, log, false, 0)
}

// startRedis starts one server; cluster turns cluster mode on. port 0 picks
// a free port.
func startRedis(ctx context.Context, dir string, log *slog.Logger, cluster bool, port int) (*Redis, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin, err := lookBinary("redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	// redis-server changes into --dir before it opens --logfile: both must
	// be absolute, or a relative state dir (.oms-dev) breaks the start.
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if port == 0 {
		if port, err = freePort(cluster); err != nil {
			return nil, err
		}
	}
	r := &Redis{Port: port, Dir: dir, bin: bin}
	if err := r.start(ctx, cluster); err != nil {
		return nil, err
	}
	log.Info("redis ready", "addr", r.Addr(), "pid", r.PID(), "cluster", cluster)
	return r, nil
}

func (r *Redis) start(ctx context.Context, cluster bool) error {
	args := []string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(r.Port),
		"--dir", r.Dir, "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--protected-mode", "yes",
		"--logfile", filepath.Join(r.Dir, "redis.log"),
		"--maxclients", "10000",
	}
	if cluster {
		args = append(args, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(r.Dir, "nodes.conf"),
			"--cluster-node-timeout", "5000")
	}
	cmd := exec.Command(r.bin, args...)
	var err error
	r.proc, err = startChild("redis-server", cmd, syscall.SIGKILL, nil)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		if r.proc.exited() {
			return fmt.Errorf("localstack: redis-server exited at start: %v (see %s)", r.proc.err, filepath.Join(r.Dir, "redis.log"))
		}
		if ping(r.Addr()) == nil {
			return nil
		}
		select {
		case <-wctx.Done():
			_ = r.proc.stop(syscall.SIGKILL, time.Second)
			return fmt.Errorf("localstack: redis-server on %s did not answer PING", r.Addr())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Restart kills the server and starts it again on the same port: with
// persistence off it comes back empty, as after a crash or a failover to an
// empty replica.
func (r *Redis) Restart(ctx context.Context) error {
	if err := r.Stop(); err != nil {
		return err
	}
	return r.start(ctx, false)
}

// Stop kills the server (it holds nothing worth saving).
func (r *Redis) Stop() error {
	if r == nil || r.proc == nil {
		return nil
	}
	return r.proc.stop(syscall.SIGTERM, 10*time.Second)
}

// Close is Stop.
func (r *Redis) Close() error { return r.Stop() }

// ping sends an inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("localstack: redis answered %q", strings.TrimSpace(line))
	}
	return nil
}

// RedisCluster is a private Redis Cluster of masters without replicas.
type RedisCluster struct {
	Nodes []*Redis
}

// Addrs are the host:port of every master.
func (c *RedisCluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// StartRedisCluster starts masters cluster-mode redis-servers under dir
// (each in its own directory for nodes.conf, on ports low enough for the
// +10000 bus port), joins them with `redis-cli --cluster create` and waits
// for cluster_state:ok.
func StartRedisCluster(ctx context.Context, dir string, masters int, log *slog.Logger) (*RedisCluster, error) {
	cli, err := lookBinary("redis-cli", "redis-tools")
	if err != nil {
		return nil, err
	}
	c := &RedisCluster{}
	for i := range masters {
		// Without persistence the data is gone anyway; a nodes.conf left by
		// an earlier start would keep the old peers and slots and make the
		// create below refuse the node.
		nodeDir := filepath.Join(dir, "node"+strconv.Itoa(i))
		if err := os.Remove(filepath.Join(nodeDir, "nodes.conf")); err != nil && !errors.Is(err, os.ErrNotExist) {
			_ = c.Close()
			return nil, err
		}
		n, err := startRedis(ctx, nodeDir, log, true, 0)
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("localstack: redis-cli --cluster create: %w: %s", err, out)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		for {
			out, _ := exec.CommandContext(wctx, cli, "-h", "127.0.0.1", "-p", strconv.Itoa(n.Port), "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			select {
			case <-wctx.Done():
				_ = c.Close()
				return nil, fmt.Errorf("localstack: redis cluster node %s never reached cluster_state:ok", n.Addr())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return c, nil
}

// Close stops every node.
func (c *RedisCluster) Close() error {
	var first error
	for _, n := range c.Nodes {
		if err := n.Stop(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
