package redisstock_test

import (
	"bytes"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/omsd/omsd/deploy/localstack/stacktest"
	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/redisstock"
)

// dropProxy forwards TCP between go-redis and redis-server. When armed, it
// lets the next EVALSHA/EVAL request through, waits for redis-server's
// reply (so the script has run), throws the reply away and closes both
// connections: the client sees io.EOF after Redis did the work.
type dropProxy struct {
	ln      net.Listener
	target  string
	armed   atomic.Bool
	dropped atomic.Int64
	wg      sync.WaitGroup
}

func newDropProxy(t *testing.T, target string) *dropProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		_ = ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *dropProxy) Addr() string { return p.ln.Addr().String() }

func (p *dropProxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.handle(client) })
	}
}

// isEval reports whether a chunk of RESP carries an EVALSHA or EVAL command.
func isEval(b []byte) bool {
	b = bytes.ToLower(b)
	return bytes.Contains(b, []byte("\r\nevalsha\r\n")) || bytes.Contains(b, []byte("\r\neval\r\n"))
}

func (p *dropProxy) handle(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	var dropReply atomic.Bool
	go func() { // client -> server
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				// Decide before forwarding, so the reply cannot overtake it.
				if isEval(buf[:n]) && p.armed.CompareAndSwap(true, false) {
					dropReply.Store(true)
				}
				if _, werr := server.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				_ = server.Close()
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for { // server -> client
		n, err := server.Read(buf)
		if n > 0 {
			if dropReply.Load() {
				p.dropped.Add(1)
				return // closes both: the reply is lost
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestLostReply runs each script through a proxy that lets the script run
// in Redis and then loses its reply with the connection. go-redis (its
// MaxRetries at the default, 3) runs the script again on a new connection;
// every script must give the same answer as if the reply had arrived, and
// change the data once.
func TestLostReply(t *testing.T) {
	ctx := context.Background()
	srv := stacktest.NewRedis(t)
	proxy := newDropProxy(t, srv.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr()}) // default MaxRetries
	t.Cleanup(func() { _ = rdb.Close() })
	reg := prometheus.NewRegistry()
	s := newStore(t, rdb, redisstock.Config{Registerer: reg})
	// Cached scripts: the command whose reply is lost is the one that runs
	// the script, not an EVALSHA answered NOSCRIPT.
	if err := s.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkReady(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	level := func(t *testing.T, sku string) inventory.Level {
		t.Helper()
		ls, err := s.Levels(ctx, []inventory.Key{{Node: "n1", SKU: sku}})
		if err != nil {
			t.Fatal(err)
		}
		return ls[0]
	}
	set := func(t *testing.T, sku string, onHand int64) {
		t.Helper()
		if _, err := s.SetStock(ctx, "n1", sku, onHand, 0); err != nil {
			t.Fatal(err)
		}
	}
	reserve := func(id, sku string, qty int64, deadline time.Time) error {
		return s.Reserve(ctx, inventory.Hold{ID: id, Node: "n1", Lines: []inventory.Line{{SKU: sku, Qty: qty}}, Deadline: deadline})
	}
	// lose arms the proxy for the next script and checks that it fired.
	lose := func(t *testing.T, op func() error) error {
		t.Helper()
		before := proxy.dropped.Load()
		proxy.armed.Store(true)
		err := op()
		if proxy.dropped.Load() != before+1 {
			t.Fatalf("the proxy dropped %d replies, want 1", proxy.dropped.Load()-before)
		}
		return err
	}

	t.Run("a reservation reserves once", func(t *testing.T) {
		set(t, "a", 10)
		if err := reserve("warm", "a", 1, time.Time{}); err != nil {
			t.Fatal(err)
		}
		dupBefore := gather(t, reg)[`omsd_inventory_reservations_total{outcome="duplicate"}`]
		err := lose(t, func() error { return reserve("h1", "a", 3, time.Time{}) })
		if err != nil {
			// Had go-redis given up, a manual retry with the same hold id
			// must not reserve again.
			t.Logf("Reserve surfaced the lost reply: %v; retrying by hand", err)
			if err := reserve("h1", "a", 3, time.Time{}); err != nil {
				t.Fatalf("manual retry: %v", err)
			}
		} else {
			t.Log("go-redis retried the script on a new connection; the call succeeded")
		}
		if want := inventory.NewLevel("n1", "a", 10, 1+3, 0); level(t, "a") != want {
			t.Errorf("after the lost reply: got %+v, want %+v (reserved once)", level(t, "a"), want)
		}
		// The script ran twice: once reserving, once finding the hold there.
		if got := gather(t, reg)[`omsd_inventory_reservations_total{outcome="duplicate"}`]; got != dupBefore+1 {
			t.Errorf("duplicate outcomes: got %v, want %v", got, dupBefore+1)
		}
		if ok, err := s.Release(ctx, "n1", "h1"); !ok || err != nil {
			t.Fatalf("release: %v, %v", ok, err)
		}
		if got := level(t, "a").Reserved; got != 1 {
			t.Errorf("after release: reserved %d, want 1", got)
		}
	})

	t.Run("a release reports true and gives back once", func(t *testing.T) {
		set(t, "b", 10)
		if err := reserve("r1", "b", 4, time.Time{}); err != nil {
			t.Fatal(err)
		}
		var released bool
		err := lose(t, func() (err error) { released, err = s.Release(ctx, "n1", "r1"); return err })
		if err != nil || !released {
			t.Errorf("Release: got %v, %v; want true, nil (the first answer)", released, err)
		}
		if ok, err := s.Release(ctx, "n1", "r1"); ok || err != nil {
			t.Errorf("another caller's release: got %v, %v; want false, nil", ok, err)
		}
		if want := inventory.NewLevel("n1", "b", 10, 0, 0); level(t, "b") != want {
			t.Errorf("got %+v, want %+v", level(t, "b"), want)
		}
	})

	t.Run("a commit reports true and ships once", func(t *testing.T) {
		set(t, "c", 10)
		if err := reserve("c1", "c", 4, time.Time{}); err != nil {
			t.Fatal(err)
		}
		var committed bool
		err := lose(t, func() (err error) { committed, err = s.Commit(ctx, "n1", "c1"); return err })
		if err != nil || !committed {
			t.Errorf("Commit: got %v, %v; want true, nil", committed, err)
		}
		if want := inventory.NewLevel("n1", "c", 6, 0, 0); level(t, "c") != want {
			t.Errorf("got %+v, want %+v (shipped once)", level(t, "c"), want)
		}
	})

	t.Run("the sweeper still reports the hold it expired", func(t *testing.T) {
		set(t, "d", 10)
		now := time.Now()
		if err := reserve("e1", "d", 2, now); err != nil {
			t.Fatal(err)
		}
		var ids []string
		err := lose(t, func() (err error) { ids, err = s.SweepExpired(ctx, now.Add(time.Minute), 0); return err })
		if err != nil || len(ids) != 1 || ids[0] != "e1" {
			t.Errorf("SweepExpired: got %v, %v; want [e1]: the order.expired event depends on it", ids, err)
		}
		if want := inventory.NewLevel("n1", "d", 10, 0, 0); level(t, "d") != want {
			t.Errorf("got %+v, want %+v", level(t, "d"), want)
		}
	})

	t.Run("a reconciliation adjustment applies once", func(t *testing.T) {
		set(t, "f", 10)
		snap, err := s.Snapshot(ctx, "n1")
		if err != nil {
			t.Fatal(err)
		}
		var ok bool
		err = lose(t, func() (err error) { ok, err = s.AdjustReserved(ctx, "n1", "f", snap.Epoch, 3); return err })
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		if got := level(t, "f").Reserved; got != 3 {
			t.Errorf("reserved: got %d, want 3", got)
		}
	})

	t.Run("a stock repair applies once and says so", func(t *testing.T) {
		set(t, "h", 10)
		snap, err := s.Snapshot(ctx, "n1")
		if err != nil {
			t.Fatal(err)
		}
		var ok bool
		err = lose(t, func() (err error) {
			ok, err = s.RepairStock(ctx, "n1", "h", snap.Epoch, snap.Versions["h"], -2, 0)
			return err
		})
		if err != nil || !ok {
			t.Errorf("RepairStock: got %v, %v; want applied", ok, err)
		}
		if got := level(t, "h").OnHand; got != 8 {
			t.Errorf("on hand: got %d, want 8", got)
		}
	})

	t.Run("a restock reports true and adds once", func(t *testing.T) {
		set(t, "k", 10)
		var ok bool
		err := lose(t, func() (err error) { ok, err = s.Restock(ctx, "n1", "rs1", "k", 3); return err })
		if err != nil || !ok {
			t.Errorf("Restock: got %v, %v; want true, nil (the first answer)", ok, err)
		}
		if ok, err := s.Restock(ctx, "n1", "rs1", "k", 3); ok || err != nil {
			t.Errorf("another call with the id: got %v, %v; want false, nil", ok, err)
		}
		if got := level(t, "k").OnHand; got != 13 {
			t.Errorf("on hand: got %d, want 13 (added once)", got)
		}
	})

	t.Run("a rebuild's fence and finish survive lost replies", func(t *testing.T) {
		var lease string
		var ok bool
		err := lose(t, func() (err error) { lease, ok, err = s.BeginRebuild(ctx, "n3", false, time.Minute); return err })
		if err != nil || !ok {
			t.Fatalf("BeginRebuild: got %v, %v; want the lease", ok, err)
		}
		if err := s.RestoreNode(ctx, "n3", lease, nil, nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := lose(t, func() error { return s.FinishRebuild(ctx, "n3", lease) }); err != nil {
			t.Errorf("FinishRebuild: %v", err)
		}
		if ready, err := s.Ready(ctx, "n3"); !ready || err != nil {
			t.Errorf("ready after the rebuild: got %v, %v", ready, err)
		}
	})

	t.Run("a restore keeps what it restored", func(t *testing.T) {
		if err := s.MarkNotReady(ctx, "n2"); err != nil {
			t.Fatal(err)
		}
		rows := []inventory.StockRow{{Node: "n2", SKU: "g", OnHand: 9}}
		holds := []inventory.StoredHold{{Hold: inventory.Hold{ID: "x", Node: "n2", Lines: []inventory.Line{{SKU: "g", Qty: 2}}}}}
		if err := lose(t, func() error { return s.RestoreNode(ctx, "n2", "", rows, holds, nil) }); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkReady(ctx, "n2"); err != nil {
			t.Fatal(err)
		}
		ls, err := s.Levels(ctx, []inventory.Key{{Node: "n2", SKU: "g"}})
		if err != nil || ls[0] != inventory.NewLevel("n2", "g", 9, 2, 0) {
			t.Errorf("after the restore: got %+v, %v; want on hand 9, reserved 2", ls, err)
		}
	})

	t.Run("a purchase-limit take counts once", func(t *testing.T) {
		l, err := redisstock.NewLimits(rdb, redisstock.Config{})
		if err != nil {
			t.Fatal(err)
		}
		until := time.Now().Add(time.Hour)
		if err := lose(t, func() error { return l.Take(ctx, "p", "c", "s", "o1", 2, 3, until) }); err != nil {
			t.Fatal(err)
		}
		if err := l.Take(ctx, "p", "c", "s", "o2", 1, 3, until); err != nil {
			t.Errorf("take within the limit: %v (the lost take counted twice?)", err)
		}
	})
}
