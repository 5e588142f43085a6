package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/omsd/omsd/deploy/localstack"
)

// Fault kinds omsd dev carries out (ARCHITECTURE.md, "Faults").
const (
	faultPGStall       = "pg-stall"
	faultOMSDKill      = "omsd-kill"
	faultRedisFlush    = "redis-flush"
	faultBrokerRestart = "broker-restart"
	faultWMSPoison     = "wms-poison"
)

// faultTimes are how long the faults last (the documented defaults); tests of the
// control endpoint itself may shorten them.
type faultTimes struct {
	PGStall       time.Duration // SIGSTOP to SIGCONT
	KillRestart   time.Duration // kill -9 to the restart of the instance
	BrokerDown    time.Duration // broker stop to start
	ReadyTimeout  time.Duration // a restarted instance must be ready within
	ProduceTimout time.Duration // writing the poison messages
}

var defaultFaultTimes = faultTimes{
	PGStall: 5 * time.Second, KillRestart: 2 * time.Second, BrokerDown: 5 * time.Second,
	ReadyTimeout: 60 * time.Second, ProduceTimout: 10 * time.Second,
}

// faultRecord is one fault as the control endpoint reports it.
type faultRecord struct {
	ID   int    `json:"id"`
	Kind string `json:"kind"`
	// StartedAt is when the fault took effect (the signal sent, the keys
	// flushed, the broker closed, the first message written).
	StartedAt time.Time `json:"started_at"`
	// DurationMs is the planned duration (0 for instantaneous faults).
	DurationMs int64 `json:"duration_ms"`
	// EndedAt is when the stack was whole again (the server continued, the
	// restarted instance ready, the broker back), once known.
	EndedAt *time.Time `json:"ended_at,omitempty"`
	Target  string     `json:"target,omitempty"`
	Detail  string     `json:"detail,omitempty"`
	Error   string     `json:"error,omitempty"`
}

// faultRequest is the body of POST /faults.
type faultRequest struct {
	Kind string `json:"kind"`
	// Instance picks the omsd serve instance of omsd-kill (default: the
	// next running one, in turn).
	Instance *int `json:"instance,omitempty"`
}

// faultController carries faults out on the processes omsd dev owns. It
// exists only in omsd dev, on its own loopback listener with a random
// token: nothing of it is in omsd serve.
type faultController struct {
	stack     *localstack.Stack
	instances []*instance
	times     faultTimes
	log       *slog.Logger
	token     string

	ctx    context.Context // ends at shutdown: pending restores happen at once
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	faults   []*faultRecord
	busy     map[string]bool // kinds in progress
	down     map[int]bool    // instances killed and not yet restarted
	nextKill int
}

func newFaultController(stack *localstack.Stack, instances []*instance, times faultTimes, log *slog.Logger) *faultController {
	tok := make([]byte, 24)
	_, _ = rand.Read(tok)
	ctx, cancel := context.WithCancel(context.Background())
	return &faultController{stack: stack, instances: instances, times: times, log: log,
		token: hex.EncodeToString(tok), ctx: ctx, cancel: cancel, busy: map[string]bool{}, down: map[int]bool{}}
}

// close ends the pending faults (the database is continued; a killed
// instance or a stopped broker is not brought back) and waits for them.
func (fc *faultController) close() {
	fc.cancel()
	fc.wg.Wait()
}

// serve listens on a free loopback port and returns its base URL; the
// server stops when ctx ends.
func (fc *faultController) serve(ctx context.Context) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: fc.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return "http://" + l.Addr().String(), nil
}

func writeProblem(w http.ResponseWriter, status int, typ, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "https://omsd.dev/problems/" + typ,
		"title": http.StatusText(status), "status": status, "detail": detail})
}

func writeJSONBody(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (fc *faultController) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		var req faultRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeProblem(w, http.StatusBadRequest, "validation", "body must be {\"kind\": \"...\"}: "+err.Error())
			return
		}
		rec, status, err := fc.inject(req)
		if err != nil {
			writeProblem(w, status, "fault-refused", err.Error())
			return
		}
		writeJSONBody(w, http.StatusAccepted, rec)
	})
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSONBody(w, http.StatusOK, map[string]any{"faults": fc.list()})
	})
	mux.HandleFunc("GET /faults/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		for _, f := range fc.list() {
			if f.ID == id {
				writeJSONBody(w, http.StatusOK, f)
				return
			}
		}
		writeProblem(w, http.StatusNotFound, "not-found", "no such fault")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(fc.token)) != 1 {
			writeProblem(w, http.StatusUnauthorized, "unauthorized", "the control token of stack.env (OMS_DEV_CONTROL_TOKEN) is required")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// list copies the records.
func (fc *faultController) list() []faultRecord {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	out := make([]faultRecord, len(fc.faults))
	for i, f := range fc.faults {
		out[i] = *f
		if f.EndedAt != nil {
			t := *f.EndedAt
			out[i].EndedAt = &t
		}
	}
	return out
}

// finish records the end (or failure) of a fault and frees its kind.
func (fc *faultController) finish(rec *faultRecord, err error) {
	now := time.Now().UTC()
	fc.mu.Lock()
	defer fc.mu.Unlock()
	rec.EndedAt = &now
	if err != nil {
		rec.Error = err.Error()
	}
	delete(fc.busy, rec.Kind)
	fc.log.Info("fault over", "id", rec.ID, "kind", rec.Kind, "lasted", now.Sub(rec.StartedAt).Round(time.Millisecond), "err", err)
}

// sleep waits d or until the controller closes.
func (fc *faultController) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-fc.ctx.Done():
	}
}

// inject starts a fault and returns its record once it has taken effect;
// what restores the stack runs in the background. The status is for an
// error: 400 unknown kind, 409 not possible now.
func (fc *faultController) inject(req faultRequest) (faultRecord, int, error) {
	fc.mu.Lock()
	if fc.ctx.Err() != nil {
		fc.mu.Unlock()
		return faultRecord{}, http.StatusConflict, errors.New("omsd dev is stopping")
	}
	if fc.busy[req.Kind] {
		fc.mu.Unlock()
		return faultRecord{}, http.StatusConflict, fmt.Errorf("a %s fault is still in progress", req.Kind)
	}
	rec := &faultRecord{ID: len(fc.faults) + 1, Kind: req.Kind}
	var begin func() error // takes effect; sets StartedAt
	var restore func()     // in the background; calls finish
	var onFail func()      // undoes the bookkeeping when begin fails (fc.mu held)
	switch req.Kind {
	case faultPGStall:
		pg := fc.stack.Postgres
		if pg == nil {
			fc.mu.Unlock()
			return faultRecord{}, http.StatusConflict, errors.New("PostgreSQL is not run by omsd dev (OMS_DATABASE_URL was set)")
		}
		rec.DurationMs, rec.Target = fc.times.PGStall.Milliseconds(), "postgres pid "+strconv.Itoa(pg.PID())
		begin = func() error {
			rec.StartedAt = time.Now().UTC()
			if err := pg.Pause(); err != nil {
				_ = pg.Resume()
				return err
			}
			if procs, err := pg.Processes(); err == nil {
				rec.Detail = fmt.Sprintf("SIGSTOP to %d postgres processes", len(procs))
			}
			return nil
		}
		restore = func() {
			fc.sleep(fc.times.PGStall)
			fc.finish(rec, pg.Resume())
		}
	case faultRedisFlush:
		var flush func(context.Context) error
		switch {
		case fc.stack.Redis != nil:
			rec.Target, flush = fc.stack.Redis.Addr(), fc.stack.Redis.FlushAll
			rec.Detail = "FLUSHALL: every key lost"
		case fc.stack.RedisCluster != nil:
			rec.Target, flush = strings.Join(fc.stack.RedisCluster.Addrs(), ","), fc.stack.RedisCluster.FlushAll
			rec.Detail = fmt.Sprintf("FLUSHALL on each of %d cluster masters: every key lost", len(fc.stack.RedisCluster.Nodes))
		default:
			fc.mu.Unlock()
			return faultRecord{}, http.StatusConflict, errors.New("Redis is not run by omsd dev (OMS_REDIS_URL was set)")
		}
		begin = func() error {
			rec.StartedAt = time.Now().UTC()
			ctx, cancel := context.WithTimeout(fc.ctx, 10*time.Second)
			defer cancel()
			return flush(ctx)
		}
		restore = func() { fc.finish(rec, nil) }
	case faultBrokerRestart:
		k := fc.stack.Kafka
		if k == nil {
			fc.mu.Unlock()
			return faultRecord{}, http.StatusConflict, errors.New("the broker is not run by omsd dev (OMS_KAFKA_BROKERS was set)")
		}
		rec.DurationMs, rec.Target = fc.times.BrokerDown.Milliseconds(), strings.Join(k.Brokers(), ",")
		begin = func() error {
			rec.StartedAt = time.Now().UTC()
			rec.Detail = "broker closed; restarted on the same address from its data directory"
			if n := len(k.Brokers()); n > 1 {
				rec.Detail = fmt.Sprintf("all %d brokers closed; restarted on the same addresses from their data directory", n)
			}
			return k.Stop()
		}
		restore = func() {
			fc.sleep(fc.times.BrokerDown)
			if fc.ctx.Err() != nil {
				fc.finish(rec, errors.New("omsd dev stopped before the broker came back"))
				return
			}
			ctx, cancel := context.WithTimeout(fc.ctx, 30*time.Second)
			defer cancel()
			fc.finish(rec, k.Start(ctx))
		}
	case faultOMSDKill:
		in, err := fc.pickInstance(req.Instance)
		if err != nil {
			fc.mu.Unlock()
			return faultRecord{}, http.StatusConflict, err
		}
		fc.down[in.idx] = true
		onFail = func() { delete(fc.down, in.idx) }
		rec.DurationMs, rec.Target = fc.times.KillRestart.Milliseconds(), fmt.Sprintf("instance %d %s", in.idx, in.URL())
		begin = func() error {
			rec.StartedAt = time.Now().UTC()
			pid, err := in.kill()
			if err != nil {
				return err
			}
			if pid == 0 {
				return fmt.Errorf("instance %d is not running", in.idx)
			}
			rec.Detail = fmt.Sprintf("kill -9 of pid %d", pid)
			return nil
		}
		restore = func() {
			defer func() {
				fc.mu.Lock()
				delete(fc.down, in.idx)
				fc.mu.Unlock()
			}()
			fc.sleep(fc.times.KillRestart)
			if fc.ctx.Err() != nil {
				fc.finish(rec, errors.New("omsd dev stopped before the instance was restarted"))
				return
			}
			err := in.start()
			if err == nil {
				ctx, cancel := context.WithTimeout(fc.ctx, fc.times.ReadyTimeout)
				err = in.waitReady(ctx)
				cancel()
			}
			fc.mu.Lock()
			rec.Detail += fmt.Sprintf("; restarted as pid %d", in.PID())
			fc.mu.Unlock()
			fc.finish(rec, err)
		}
	case faultWMSPoison:
		brokers := fc.stack.Brokers()
		begin = func() error {
			rec.StartedAt = time.Now().UTC()
			ids, err := writePoison(fc.ctx, brokers, rec.ID, fc.times.ProduceTimout)
			rec.Detail = "wms.events: " + strings.Join(ids, ", ")
			return err
		}
		restore = func() { fc.finish(rec, nil) }
	default:
		fc.mu.Unlock()
		return faultRecord{}, http.StatusBadRequest, fmt.Errorf("unknown fault kind %q (want %s, %s, %s, %s or %s)",
			req.Kind, faultPGStall, faultOMSDKill, faultRedisFlush, faultBrokerRestart, faultWMSPoison)
	}
	fc.busy[req.Kind] = true
	fc.faults = append(fc.faults, rec)
	// begin writes the record, which list reads: under the lock. Faults
	// therefore begin one at a time (each takes milliseconds).
	err := begin()
	fc.mu.Unlock()
	if err != nil {
		if onFail != nil {
			fc.mu.Lock()
			onFail()
			fc.mu.Unlock()
		}
		fc.finish(rec, err)
		return faultRecord{}, http.StatusConflict, fmt.Errorf("%s: %w", req.Kind, err)
	}
	fc.log.Info("fault started", "id", rec.ID, "kind", rec.Kind, "target", rec.Target, "detail", rec.Detail)
	fc.mu.Lock()
	out := *rec
	fc.mu.Unlock()
	fc.wg.Add(1)
	go func() {
		defer fc.wg.Done()
		restore()
	}()
	return out, 0, nil
}

// pickInstance chooses the instance to kill (fc.mu held).
func (fc *faultController) pickInstance(want *int) (*instance, error) {
	if len(fc.instances) == 0 {
		return nil, errors.New("no omsd serve instance")
	}
	if want != nil {
		i := *want
		if i < 0 || i >= len(fc.instances) {
			return nil, fmt.Errorf("no instance %d (there are %d)", i, len(fc.instances))
		}
		if fc.down[i] || !fc.instances[i].running() {
			return nil, fmt.Errorf("instance %d is down", i)
		}
		return fc.instances[i], nil
	}
	for range fc.instances {
		i := fc.nextKill % len(fc.instances)
		fc.nextKill++
		if !fc.down[i] && fc.instances[i].running() {
			return fc.instances[i], nil
		}
	}
	return nil, errors.New("every instance is down")
}

// writePoison writes three malformed messages to wms.events: invalid
// JSON, an unknown event type, and an event for a shipment that does not
// exist. A consumer must skip (or park) each and go on.
func writePoison(ctx context.Context, brokers []string, n int, timeout time.Duration) ([]string, error) {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	tag := fmt.Sprintf("poison-%d-%d", n, time.Now().UnixNano())
	shp := "shp-" + tag
	msgs := []kafka.Message{
		{Key: []byte(shp), Value: []byte(`{"event_id":"` + tag + `-json","type":"shipment.shipped","shipment_id":`)},
		{Key: []byte(shp), Value: mustMarshal(map[string]any{"event_id": tag + "-type", "type": "shipment.teleported",
			"shipment_id": shp, "occurred_at": now})},
		{Key: []byte(shp), Value: mustMarshal(map[string]any{"event_id": tag + "-shipment", "type": "shipment.shipped",
			"shipment_id": shp, "tracking_number": "POISON", "occurred_at": now})},
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: localstack.TopicWMSEvents, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, WriteTimeout: timeout, MaxAttempts: 3}
	defer w.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ids := []string{tag + "-json (invalid JSON)", tag + "-type (unknown type)", tag + "-shipment (unknown shipment " + shp + ")"}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		return ids, fmt.Errorf("write poison messages: %w", err)
	}
	return ids, nil
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
