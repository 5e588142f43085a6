package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omsd/omsd/oms/httpapi/apitest"
)

// lateProxy forwards 127.0.0.1:<port> to target, but only opens its
// listener after delay: a database that is not up yet when omsd starts.
type lateProxy struct {
	addr string
	mu   sync.Mutex
	ln   net.Listener
	conn []net.Conn
	done chan struct{}
}

func startLateProxy(t *testing.T, target string, delay time.Duration) *lateProxy {
	t.Helper()
	port, err := freeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	p := &lateProxy{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), done: make(chan struct{})}
	timer := time.AfterFunc(delay, func() {
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			t.Errorf("late proxy: %v", err)
			return
		}
		p.mu.Lock()
		p.ln = ln
		p.mu.Unlock()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conn = append(p.conn, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	})
	t.Cleanup(func() {
		timer.Stop()
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.ln != nil {
			p.ln.Close()
		}
		for _, c := range p.conn {
			c.Close()
		}
	})
	return p
}

// startLogged runs an app built from cfg with its log in logs, and returns
// its URL.
func startLogged(t *testing.T, cfg config, logs *syncBuffer) (*app, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := newApp(ctx, cfg, newLogger(logs, "info"))
	if err != nil {
		cancel()
		t.Fatalf("start omsd: %v\n%s", err, logs.String())
	}
	urlc := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, func(u string) { urlc <- u }) }()
	var u string
	select {
	case u = <-urlc:
	case err := <-done:
		cancel()
		t.Fatalf("omsd stopped at start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		<-done
		a.close()
	})
	return a, u
}

func TestServeWaitsForADatabaseThatComesUpLater(t *testing.T) {
	cfg, _ := newTestConfig(t)
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil || u.Host == "" {
		t.Skipf("the test database URL %q has no host to put a proxy in front of", cfg.DatabaseURL)
	}
	proxy := startLateProxy(t, u.Host, 2*time.Second)
	u.Host = proxy.addr
	cfg.DatabaseURL = u.String()
	cfg.StartTimeout = 30 * time.Second
	var logs syncBuffer
	start := time.Now()
	_, base := startLogged(t, cfg, &logs)
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("started in %s, before the database listened", took)
	}
	if !strings.Contains(logs.String(), `"msg":"waiting for a dependency"`) || !strings.Contains(logs.String(), `"msg":"dependency up"`) {
		t.Errorf("the attempts are not logged:\n%s", logs.String())
	}
	if pw, ok := u.User.Password(); ok && pw != "" && strings.Contains(logs.String(), pw) {
		t.Errorf("the database password is in the log")
	}
	if got := getStatus(t, base+"/readyz"); got != 200 {
		t.Errorf("got /readyz %d, want 200", got)
	}
}

func TestServeGivesUpOnADatabaseThatNeverComesUp(t *testing.T) {
	cfg, _ := newTestConfig(t)
	port, err := freeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	cfg.DatabaseURL = "postgres://omsd:never-printed@127.0.0.1:" + strconv.Itoa(port) + "/omsd"
	cfg.StartTimeout = 1500 * time.Millisecond
	var logs syncBuffer
	start := time.Now()
	_, err = newApp(context.Background(), cfg, newLogger(&logs, "info"))
	if err == nil || !strings.Contains(err.Error(), "database not reachable") {
		t.Fatalf("got %v, want the database not reachable", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("gave up after %s, want about -start.timeout", took)
	}
	if n := strings.Count(logs.String(), `"msg":"waiting for a dependency"`); n < 2 {
		t.Errorf("got %d logged attempts, want several:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String()+err.Error(), "never-printed") {
		t.Error("the password was printed")
	}
}

func TestServeWithoutTheBrokerIsReadyButDegraded(t *testing.T) {
	cfg, _ := newTestConfig(t)
	port, err := freeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Brokers = "127.0.0.1:" + strconv.Itoa(port) // nothing listens
	cfg.StartTimeout = 20 * time.Second
	var logs syncBuffer
	start := time.Now()
	_, base := startLogged(t, cfg, &logs)
	if took := time.Since(start); took > brokerStartWait+5*time.Second {
		t.Errorf("started in %s: the broker held the start too long", took)
	}
	if m := scrape(t, base); !strings.Contains(m, `omsd_dependency_up{dependency="broker"} 0`) {
		t.Error("before any probe, omsd_dependency_up does not say the broker is down")
	}
	resp, err := apitest.Client(t).Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 200 || body.Status != "degraded" || !strings.HasPrefix(body.Checks["broker"], "degraded") ||
		body.Checks["database"] != "ok" || body.Checks["redis"] != "ok" {
		t.Errorf("got %d %+v, want 200 degraded with the broker named and the rest ok", resp.StatusCode, body)
	}
	m := scrape(t, base)
	for _, want := range []string{`omsd_dependency_up{dependency="broker"} 0`, `omsd_dependency_up{dependency="database"} 1`, `omsd_dependency_up{dependency="redis"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestServeExportsBuildInfoPoolAndDependencyMetrics(t *testing.T) {
	s := newTestServer(t)
	s.channel("metrics-shop", nil) // some database and Redis work
	if got := getStatus(t, s.URL+"/readyz"); got != 200 {
		t.Fatalf("got /readyz %d, want 200", got)
	}
	m := scrape(t, s.URL)
	for _, want := range []string{
		`omsd_build_info{goversion="go1.`, `revision="`, `version="`,
		"omsd_pg_pool_acquired_conns ", "omsd_pg_pool_idle_conns ", "omsd_pg_pool_total_conns ", "omsd_pg_pool_max_conns 32",
		"omsd_pg_pool_acquires_total ", "omsd_pg_pool_acquire_seconds_total ", "omsd_pg_pool_empty_acquires_total ",
		"omsd_pg_pool_canceled_acquires_total ",
		`omsd_db_transactions_total{outcome="committed"} `, `omsd_db_transactions_total{outcome="failed"} `,
		`omsd_db_transactions_total{outcome="retried"} `, `omsd_db_transaction_retries_total{cause="serialization"} `,
		`omsd_db_transaction_retries_total{cause="deadlock"} `,
		"omsd_redis_pool_hits_total ", "omsd_redis_pool_misses_total ", "omsd_redis_pool_timeouts_total ",
		"omsd_redis_pool_total_conns ", "omsd_redis_pool_idle_conns ", "omsd_redis_pool_stale_conns_total ",
		"omsd_kafka_writer_writes_total ", "omsd_kafka_writer_messages_total ", "omsd_kafka_writer_errors_total ",
		"omsd_kafka_writer_retries_total ", "omsd_kafka_writer_batch_seconds_count ", "omsd_kafka_writer_batch_messages_sum ",
		`omsd_dependency_up{dependency="broker"} 1`, `omsd_dependency_up{dependency="database"} 1`, `omsd_dependency_up{dependency="redis"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(m, `omsd_db_transactions_total{outcome="committed"} 0`+"\n") {
		t.Error("no committed transaction counted after the migrations and a channel were written")
	}
	if strings.Contains(m, "omsd_pg_pool_acquires_total 0\n") {
		t.Error("the pool counted no acquire after a channel was created")
	}
}

func TestAccessLogIsOffByDefaultAndOnWithTheSetting(t *testing.T) {
	for _, on := range []bool{false, true} {
		cfg, _ := newTestConfig(t)
		cfg.AccessLog = on
		var logs syncBuffer
		_, base := startLogged(t, cfg, &logs)
		req, _ := http.NewRequest("GET", base+"/v1/orders/o-1?email=buyer@example.com", nil)
		req.Header.Set("Authorization", "Bearer secret-channel-key")
		resp, err := apitest.Client(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := logs.String()
		has := strings.Contains(got, `"msg":"http request"`)
		if has != on {
			t.Errorf("access log %v: got lines %v:\n%s", on, has, got)
		}
		if on && (!strings.Contains(got, `"route":"GET /v1/orders/{id}"`) || !strings.Contains(got, `"status":401`) || !strings.Contains(got, `"method":"GET"`)) {
			t.Errorf("the access line lacks the route pattern, method or status:\n%s", got)
		}
		if strings.Contains(got, "buyer@example.com") || strings.Contains(got, "secret-channel-key") || strings.Contains(got, "o-1") {
			t.Errorf("the log holds the query, the path or a credential:\n%s", got)
		}
	}
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := apitest.Client(t).Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
