package redisstock

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/omsd/omsd/inventory"
)

// Config configures a Store. The zero value means defaults.
type Config struct {
	// Prefix starts every key, inside the hash tag; default "inv". Tests
	// isolate themselves with their own prefix. It may not contain braces.
	Prefix string
	// ClosedTTL is how long a closed hold's id is remembered, so that a late
	// repeat answers ErrHoldClosed instead of reserving again; default 7 days.
	ClosedTTL time.Duration
	// RestockMemory is how long an applied restock id is remembered (a
	// repeat of it meanwhile adds nothing; see inventory.Restocker);
	// default inventory.RestockMemory (1 hour). It must exceed
	// inventory.RestockWindow, the span of the ledger's restocks compared
	// with it, by a wide margin: at least twice.
	RestockMemory time.Duration
	// Now is the clock for hold creation times (the reconciliation's grace
	// period), for the restock memory and for the end of promotions;
	// default time.Now.
	Now func() time.Time
	// Logger gets operational events (sweeps, restores), never customer
	// data; default discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means no metrics.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = "inv"
	}
	if c.ClosedTTL == 0 {
		c.ClosedTTL = 7 * 24 * time.Hour
	}
	if c.RestockMemory == 0 {
		c.RestockMemory = inventory.RestockMemory
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate checks the configuration after defaults.
func (c Config) Validate() error {
	if strings.ContainsAny(c.Prefix, "{}") {
		return fmt.Errorf("redisstock: prefix %q contains a brace: %w", c.Prefix, inventory.ErrInvalid)
	}
	if c.ClosedTTL < time.Millisecond {
		return fmt.Errorf("redisstock: closed TTL %v below 1ms: %w", c.ClosedTTL, inventory.ErrInvalid)
	}
	if c.RestockMemory < 2*inventory.RestockWindow {
		return fmt.Errorf("redisstock: restock memory %v below twice the ledger's restock window %v: %w",
			c.RestockMemory, inventory.RestockWindow, inventory.ErrInvalid)
	}
	return nil
}

// Store is the Redis implementation of inventory.Store and
// inventory.Rebuildable. It is safe for concurrent use.
type Store struct {
	rdb   redis.UniversalClient
	cfg   Config
	m     *metrics
	sweep atomic.Uint64 // rotates the node the sweeper starts with
}

var (
	_ inventory.Store       = (*Store)(nil)
	_ inventory.Rebuildable = (*Store)(nil)
	_ inventory.Restocker   = (*Store)(nil)
)

// New returns a Store on rdb: a *redis.Client or a *redis.ClusterClient run
// the same scripts. Errors: ErrInvalid for a bad config, or the
// Registerer's error.
func New(rdb redis.UniversalClient, cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Store{rdb: rdb, cfg: cfg, m: m}, nil
}

// LoadScripts loads every script into Redis's script cache (all masters of
// a cluster), so that the first call of each skips the NOSCRIPT round trip.
// Optional: scripts fall back to EVAL when missing (a restarted server).
func (s *Store) LoadScripts(ctx context.Context) error { return loadScripts(ctx, s.rdb) }

// nodeKeys are the keys of one node. They share the hash tag {prefix:node}
// so that every script runs on one slot of a Redis Cluster.
type nodeKeys struct {
	tag                                               string
	ready, onHand, reserved, safety, holds, deadlines string
	lease, versions, restocks                         string
}

func (s *Store) keys(node string) nodeKeys {
	tag := "{" + s.cfg.Prefix + ":" + node + "}"
	return nodeKeys{
		tag:       tag,
		ready:     tag + ":ready",
		onHand:    tag + ":onhand",
		reserved:  tag + ":reserved",
		safety:    tag + ":safety",
		holds:     tag + ":holds",
		deadlines: tag + ":deadlines",
		lease:     tag + ":rebuild",
		versions:  tag + ":stockver",
		restocks:  tag + ":restocks",
	}
}

// closed is the key remembering that a hold was closed, and how.
func (k nodeKeys) closed(id string) string { return k.tag + ":closed:" + id }

// nodesKey is the set of known nodes, in its own slot.
func (s *Store) nodesKey() string { return "{" + s.cfg.Prefix + "}:nodes" }

// record is a hold as stored in the node's holds hash. Quantities and times
// are strings so that Lua (whose numbers are doubles) passes them on
// unchanged. The deadline lives in the deadlines sorted set only.
type record struct {
	Lines   [][2]string `json:"l"`
	Created string      `json:"c"`           // Unix ms
	Owner   string      `json:"o,omitempty"` // Hold.Owner
}

// encodeRecord encodes h's lines and owner with the time the store first
// saw it.
func encodeRecord(h inventory.Hold, created time.Time) (string, error) {
	r := record{Lines: make([][2]string, len(h.Lines)), Created: strconv.FormatInt(created.UnixMilli(), 10), Owner: h.Owner}
	for i, l := range h.Lines {
		r.Lines[i] = [2]string{l.SKU, strconv.FormatInt(l.Qty, 10)}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("redisstock: encode hold: %w", err)
	}
	return string(b), nil
}

// decodeRecord decodes a hold record: the hold's lines and owner (ID,
// Node and Deadline are the caller's) and its creation time.
func decodeRecord(s string) (inventory.StoredHold, error) {
	var r record
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return inventory.StoredHold{}, fmt.Errorf("redisstock: decode hold: %w", err)
	}
	h := inventory.StoredHold{Hold: inventory.Hold{Lines: make([]inventory.Line, len(r.Lines)), Owner: r.Owner}}
	for i, l := range r.Lines {
		q, err := strconv.ParseInt(l[1], 10, 64)
		if err != nil {
			return h, fmt.Errorf("redisstock: decode hold quantity: %w", err)
		}
		h.Lines[i] = inventory.Line{SKU: l[0], Qty: q}
	}
	ms, err := strconv.ParseInt(r.Created, 10, 64)
	if err != nil {
		return h, fmt.Errorf("redisstock: decode hold time: %w", err)
	}
	h.Created = time.UnixMilli(ms)
	return h, nil
}

func deadlineArg(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	ms := t.UnixMilli()
	if ms <= 0 {
		ms = 1 // before 1970: already due, and not "no deadline"
	}
	return strconv.FormatInt(ms, 10)
}

func notReady(node string) error { return &inventory.NotReadyError{Nodes: []string{node}} }

// SetStock implements inventory.Store.
func (s *Store) SetStock(ctx context.Context, node, sku string, onHand, safety int64) (inventory.Level, error) {
	if err := inventory.ValidateStock(node, sku, onHand, safety); err != nil {
		return inventory.Level{}, err
	}
	k := s.keys(node)
	cmd, err := run(ctx, s.rdb, s.m, setStockScript, []string{k.ready, k.onHand, k.reserved, k.safety, k.versions}, sku, onHand, safety)
	if err != nil {
		return inventory.Level{}, err
	}
	tag, vals, err := reply(cmd)
	if err != nil {
		return inventory.Level{}, err
	}
	switch {
	case tag == "notready":
		return inventory.Level{}, notReady(node)
	case tag == "ok" && len(vals) == 3:
		var n [3]int64
		for i := range n {
			if n[i], err = toInt(vals[i]); err != nil {
				return inventory.Level{}, err
			}
		}
		return inventory.NewLevel(node, sku, n[0], n[1], n[2]), nil
	}
	return inventory.Level{}, fmt.Errorf("redisstock: set stock: unexpected reply %q", tag)
}

// Restock implements inventory.Restocker with one script: on hand and the
// node's sorted set of applied restock ids ({P:N}:restocks, member the id,
// score when applied by Config.Now in ms), pruned of ids older than
// RestockMemory on each call. Each call carries a one-time token, so a
// go-redis retry after a lost reply answers true again.
func (s *Store) Restock(ctx context.Context, node, id, sku string, qty int64) (bool, error) {
	if err := inventory.ValidateRestock(node, id, sku, qty); err != nil {
		return false, err
	}
	token, err := randomToken()
	if err != nil {
		return false, err
	}
	now := s.cfg.Now()
	k := s.keys(node)
	cmd, err := run(ctx, s.rdb, s.m, restockScript, []string{k.ready, k.onHand, k.restocks, k.tag + ":restock:" + token},
		id, sku, qty, now.UnixMilli(), now.Add(-s.cfg.RestockMemory).UnixMilli(), stageTTL.Milliseconds())
	if err != nil {
		return false, err
	}
	tag, _, err := reply(cmd)
	if err != nil {
		return false, err
	}
	switch tag {
	case "ok":
		s.m.addUnits("restocked", qty)
		return true, nil
	case "dup":
		return false, nil
	case "notready":
		return false, notReady(node)
	}
	return false, fmt.Errorf("redisstock: restock: unexpected reply %q", tag)
}

// Reserve implements inventory.Store.
func (s *Store) Reserve(ctx context.Context, h inventory.Hold) error {
	h, err := inventory.NormalizeHold(h)
	if err != nil {
		s.m.reservation(outcomeInvalid)
		return err
	}
	outcome, err := s.reserve(ctx, h, false)
	s.m.reservation(outcome)
	if outcome == outcomeOK {
		s.m.addUnits("reserved", inventory.Units(h.Lines))
	}
	return err
}

// reserve runs the reserve script; restore checks the lines against on
// hand instead of available (the reconciliation's re-add of a ledger
// hold). It returns the outcome label.
func (s *Store) reserve(ctx context.Context, h inventory.Hold, restore bool) (string, error) {
	rec, err := encodeRecord(h, s.cfg.Now())
	if err != nil {
		return outcomeError, err
	}
	k := s.keys(h.Node)
	args := make([]any, 0, 4+2*len(h.Lines))
	f := "0"
	if restore {
		f = "1"
	}
	args = append(args, h.ID, deadlineArg(h.Deadline), rec, f)
	for _, l := range h.Lines {
		args = append(args, l.SKU, l.Qty)
	}
	cmd, err := run(ctx, s.rdb, s.m, reserveScript,
		[]string{k.ready, k.onHand, k.reserved, k.safety, k.holds, k.deadlines, k.closed(h.ID)}, args...)
	if err != nil {
		return outcomeError, err
	}
	tag, vals, err := reply(cmd)
	if err != nil {
		return outcomeError, err
	}
	switch tag {
	case "ok":
		return outcomeOK, nil
	case "notready":
		return outcomeNotReady, notReady(h.Node)
	case "dup":
		had, err := decodeRecord(toStr(first(vals)))
		if err != nil {
			return outcomeError, err
		}
		if !inventory.SameLines(had.Lines, h.Lines) {
			return outcomeConflict, fmt.Errorf("redisstock: reserve %q at %q: %w", h.ID, h.Node, inventory.ErrHoldConflict)
		}
		return outcomeDuplicate, nil
	case "closed":
		return outcomeClosed, &inventory.HoldClosedError{Node: h.Node, ID: h.ID, State: markerState(first(vals))}
	case "short", "unfit":
		if len(vals) == 2 {
			sku := toStr(vals[0])
			have, err := toInt(vals[1])
			if err != nil {
				return outcomeError, err
			}
			var want int64
			for _, l := range h.Lines {
				if l.SKU == sku {
					want = l.Qty
				}
			}
			return outcomeInsufficient, &inventory.ShortError{Node: h.Node, SKU: sku, Want: want, Have: have}
		}
	}
	return outcomeError, fmt.Errorf("redisstock: reserve: unexpected reply %q", tag)
}

// markerState reads the state from a closed-hold marker,
// "<state> <token> <units>".
func markerState(v any) inventory.HoldState {
	st, _, _ := strings.Cut(toStr(v), " ")
	return inventory.HoldState(st)
}

func first(vals []any) any {
	if len(vals) == 0 {
		return nil
	}
	return vals[0]
}

// closeHold runs the close script. It returns the script's tag and, for
// "ok", the units, for "closed", the state.
func (s *Store) closeHold(ctx context.Context, node, id string, st inventory.HoldState, now time.Time) (string, int64, inventory.HoldState, error) {
	token, err := randomToken()
	if err != nil {
		return "", 0, "", err
	}
	k := s.keys(node)
	cmd, err := run(ctx, s.rdb, s.m, closeScript,
		[]string{k.ready, k.onHand, k.reserved, k.holds, k.deadlines, k.closed(id)},
		id, string(st), s.cfg.ClosedTTL.Milliseconds(), now.UnixMilli(), token)
	if err != nil {
		return "", 0, "", err
	}
	return parseClose(cmd)
}

func parseClose(cmd *redis.Cmd) (string, int64, inventory.HoldState, error) {
	tag, vals, err := reply(cmd)
	if err != nil {
		return "", 0, "", err
	}
	switch tag {
	case "ok":
		units, err := toInt(first(vals))
		return tag, units, "", err
	case "closed":
		return tag, 0, markerState(first(vals)), nil
	case "notready", "unknown", "notdue":
		return tag, 0, "", nil
	}
	return "", 0, "", fmt.Errorf("redisstock: close: unexpected reply %q", tag)
}

// finish closes an open hold as st. done is the closed state in which a
// repeat counts as already done.
func (s *Store) finish(ctx context.Context, node, id string, st inventory.HoldState, done ...inventory.HoldState) (bool, error) {
	if err := inventory.ValidateNode(node); err != nil {
		return false, err
	}
	if err := inventory.ValidateHoldID(id); err != nil {
		return false, err
	}
	tag, units, cur, err := s.closeHold(ctx, node, id, st, s.cfg.Now())
	if err != nil {
		return false, err
	}
	switch tag {
	case "ok":
		s.m.addUnits(string(st), units)
		return true, nil
	case "notready":
		return false, notReady(node)
	case "unknown":
		return false, fmt.Errorf("redisstock: %s %q at %q: %w", st, id, node, inventory.ErrUnknownHold)
	}
	for _, d := range done {
		if cur == d {
			return false, nil
		}
	}
	return false, &inventory.HoldClosedError{Node: node, ID: id, State: cur}
}

// Release implements inventory.Store.
func (s *Store) Release(ctx context.Context, node, holdID string) (bool, error) {
	return s.finish(ctx, node, holdID, inventory.HoldReleased, inventory.HoldReleased, inventory.HoldExpired)
}

// Commit implements inventory.Store.
func (s *Store) Commit(ctx context.Context, node, holdID string) (bool, error) {
	return s.finish(ctx, node, holdID, inventory.HoldCommitted, inventory.HoldCommitted)
}

// Confirm implements inventory.Store.
func (s *Store) Confirm(ctx context.Context, node, holdID string) error {
	if err := inventory.ValidateNode(node); err != nil {
		return err
	}
	if err := inventory.ValidateHoldID(holdID); err != nil {
		return err
	}
	k := s.keys(node)
	cmd, err := run(ctx, s.rdb, s.m, confirmScript, []string{k.ready, k.holds, k.deadlines, k.closed(holdID)}, holdID)
	if err != nil {
		return err
	}
	tag, vals, err := reply(cmd)
	if err != nil {
		return err
	}
	switch tag {
	case "ok":
		return nil
	case "notready":
		return notReady(node)
	case "unknown":
		return fmt.Errorf("redisstock: confirm %q at %q: %w", holdID, node, inventory.ErrUnknownHold)
	case "closed":
		st := markerState(first(vals))
		if st == inventory.HoldCommitted {
			return nil
		}
		return &inventory.HoldClosedError{Node: node, ID: holdID, State: st}
	}
	return fmt.Errorf("redisstock: confirm: unexpected reply %q", tag)
}

// Levels implements inventory.Store: one pipeline of four commands per node
// (readiness and the three counter hashes); a ClusterClient sends each
// node's commands to the master owning its slot, all masters at once.
func (s *Store) Levels(ctx context.Context, keys []inventory.Key) ([]inventory.Level, error) {
	type nodeCmds struct {
		ready                    *redis.IntCmd
		onHand, reserved, safety *redis.SliceCmd
		skus                     []string
		idx                      []int
	}
	byNode := map[string]*nodeCmds{}
	var order []string
	for i, k := range keys {
		if err := inventory.ValidateNode(k.Node); err != nil {
			return nil, err
		}
		if err := inventory.ValidateSKU(k.SKU); err != nil {
			return nil, err
		}
		nc := byNode[k.Node]
		if nc == nil {
			nc = &nodeCmds{}
			byNode[k.Node] = nc
			order = append(order, k.Node)
		}
		nc.skus = append(nc.skus, k.SKU)
		nc.idx = append(nc.idx, i)
	}
	out := make([]inventory.Level, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, node := range order {
			nc := byNode[node]
			k := s.keys(node)
			nc.ready = p.Exists(ctx, k.ready)
			nc.onHand = p.HMGet(ctx, k.onHand, nc.skus...)
			nc.reserved = p.HMGet(ctx, k.reserved, nc.skus...)
			nc.safety = p.HMGet(ctx, k.safety, nc.skus...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redisstock: levels: %w", err)
	}
	var notReadyNodes []string
	for _, node := range order {
		nc := byNode[node]
		ready := nc.ready.Val() == 1
		if !ready {
			notReadyNodes = append(notReadyNodes, node)
		}
		oh, rs, sf := nc.onHand.Val(), nc.reserved.Val(), nc.safety.Val()
		for j, sku := range nc.skus {
			if !ready {
				out[nc.idx[j]] = inventory.NewLevel(node, sku, 0, 0, 0)
				continue
			}
			var n [3]int64
			for f, vals := range [3][]any{oh, rs, sf} {
				if n[f], err = hashInt(vals[j]); err != nil {
					return nil, err
				}
			}
			out[nc.idx[j]] = inventory.NewLevel(node, sku, n[0], n[1], n[2])
		}
	}
	if len(notReadyNodes) > 0 {
		return out, &inventory.NotReadyError{Nodes: notReadyNodes}
	}
	return out, nil
}

// hashInt reads a counter from an HMGET reply: nil (no field) is zero.
func hashInt(v any) (int64, error) {
	if v == nil {
		return 0, nil
	}
	n, err := strconv.ParseInt(toStr(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redisstock: counter %v: %w", v, err)
	}
	return n, nil
}

// SweepExpired implements inventory.Store. Per node it lists due holds from
// the deadlines sorted set (bounded by limit) and expires each with the
// close script, which re-checks that the hold is still open and due: with
// several sweepers, exactly one of them closes each hold and returns it.
func (s *Store) SweepExpired(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		limit = inventory.DefaultSweepLimit
	}
	nodes, err := s.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	if len(nodes) == 0 {
		return out, nil
	}
	nowMs := now.UnixMilli()
	startAt := int(s.sweep.Add(1) % uint64(len(nodes))) // no node starves the others
	for i := range nodes {
		if len(out) >= limit {
			break
		}
		node := nodes[(startAt+i)%len(nodes)]
		k := s.keys(node)
		ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: k.deadlines, Start: "-inf", Stop: strconv.FormatInt(nowMs, 10), ByScore: true, Count: int64(limit - len(out)),
		}).Result()
		if err != nil {
			return out, fmt.Errorf("redisstock: sweep %s: %w", node, err)
		}
		var units int64
		for _, id := range ids {
			tag, n, _, err := s.closeHold(ctx, node, id, inventory.HoldExpired, now)
			if err != nil {
				return out, fmt.Errorf("redisstock: sweep %s: %w", node, err)
			}
			if tag == "notready" {
				break // lost its data: the rebuild's job, not ours
			}
			if tag == "ok" {
				out = append(out, id)
				units += n
			}
		}
		s.m.addUnits(string(inventory.HoldExpired), units)
	}
	if len(out) > 0 {
		s.cfg.Logger.Info("redisstock: expired holds released", "holds", len(out))
	}
	return out, nil
}
