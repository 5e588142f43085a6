package memstock

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/omsd/omsd/inventory"
)

// Config configures a Store. The zero value means defaults.
type Config struct {
	// ClosedTTL is how long a closed hold's id is remembered (repeats of it
	// answer ErrHoldClosed meanwhile); default 7 days, as in redisstock.
	ClosedTTL time.Duration
	// RestockMemory is how long an applied restock id is remembered (a
	// repeat of it meanwhile adds nothing); default
	// inventory.RestockMemory, as in redisstock.
	RestockMemory time.Duration
	// Now is the clock (hold creation times, closed-id expiry, restock
	// memory); default time.Now.
	Now func() time.Time
	// AutoReady makes every node ready without a rebuild, for the unit tests
	// of other packages that do not care about data loss. The default (false)
	// behaves as redisstock: a node is not ready until MarkReady.
	AutoReady bool
}

// Store is an in-memory inventory.Store and inventory.Rebuildable, safe for
// concurrent use. One mutex makes every call atomic, as one Lua script is.
type Store struct {
	mu    sync.Mutex
	cfg   Config
	nodes map[string]*nodeState
	known map[string]bool // nodes restored or marked ready, as redisstock's node set
	seq   int64           // makes epochs and leases unique
	// owners maps each registered owner to the end of its last heartbeat.
	owners map[string]time.Time
}

type nodeState struct {
	ready      bool
	epoch      string // of the rebuild that made the node ready
	lease      string // the rebuild lease, "" when none
	leaseUntil time.Time
	stock      map[string]*counters
	holds      map[string]*hold
	closed     map[string]closedMark
	restocks   map[string]time.Time // applied restock ids, when applied
}

type counters struct{ onHand, reserved, safety, version int64 }

type hold struct {
	lines    []inventory.Line
	deadline time.Time
	created  time.Time
	owner    string
}

type closedMark struct {
	state inventory.HoldState
	until time.Time
}

var (
	_ inventory.Store       = (*Store)(nil)
	_ inventory.Rebuildable = (*Store)(nil)
	_ inventory.Liveness    = (*Store)(nil)
	_ inventory.Restocker   = (*Store)(nil)
)

// New returns an empty Store.
func New(cfg Config) *Store {
	if cfg.ClosedTTL == 0 {
		cfg.ClosedTTL = 7 * 24 * time.Hour
	}
	if cfg.RestockMemory <= 0 {
		cfg.RestockMemory = inventory.RestockMemory
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Store{cfg: cfg, nodes: map[string]*nodeState{}, known: map[string]bool{}, owners: map[string]time.Time{}}
}

// Lose forgets everything, as a redis-server restarted without persistence
// does: every node is then not ready (AutoReady is turned off) until rebuilt.
func (s *Store) Lose() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes = map[string]*nodeState{}
	s.known = map[string]bool{}
	s.owners = map[string]time.Time{}
	s.cfg.AutoReady = false
}

// token returns a new epoch or lease name. Call with s.mu held.
func (s *Store) token(kind string) string {
	s.seq++
	return fmt.Sprintf("%s-%d", kind, s.seq)
}

// leaseHolder returns the node's lease if it has not expired.
func (s *Store) leaseHolder(n *nodeState) string {
	if n.lease != "" && !s.cfg.Now().Before(n.leaseUntil) {
		n.lease = ""
	}
	return n.lease
}

// node returns the node's state, creating it. Call with s.mu held.
func (s *Store) node(id string) *nodeState {
	n := s.nodes[id]
	if n == nil {
		n = &nodeState{stock: map[string]*counters{}, holds: map[string]*hold{}, closed: map[string]closedMark{},
			restocks: map[string]time.Time{}}
		if s.cfg.AutoReady {
			n.ready = true
			n.epoch = s.token("epoch")
			s.known[id] = true
		}
		s.nodes[id] = n
	}
	return n
}

// ready returns the node if it is ready, else a *NotReadyError.
func (s *Store) ready(id string) (*nodeState, error) {
	n := s.node(id)
	if !n.ready {
		return nil, &inventory.NotReadyError{Nodes: []string{id}}
	}
	return n, nil
}

func (n *nodeState) counters(sku string) *counters {
	c := n.stock[sku]
	if c == nil {
		c = &counters{}
		n.stock[sku] = c
	}
	return c
}

func (n *nodeState) level(id, sku string) inventory.Level {
	c := n.stock[sku]
	if c == nil {
		return inventory.NewLevel(id, sku, 0, 0, 0)
	}
	return inventory.NewLevel(id, sku, c.onHand, c.reserved, c.safety)
}

// closedState returns the remembered state of a closed hold id.
func (s *Store) closedState(n *nodeState, id string) (inventory.HoldState, bool) {
	m, ok := n.closed[id]
	if !ok {
		return "", false
	}
	if !s.cfg.Now().Before(m.until) {
		delete(n.closed, id)
		return "", false
	}
	return m.state, true
}

// SetStock implements inventory.Store.
func (s *Store) SetStock(_ context.Context, node, sku string, onHand, safety int64) (inventory.Level, error) {
	if err := inventory.ValidateStock(node, sku, onHand, safety); err != nil {
		return inventory.Level{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.ready(node)
	if err != nil {
		return inventory.Level{}, err
	}
	c := n.counters(sku)
	c.onHand, c.safety = onHand, safety
	c.version++
	return n.level(node, sku), nil
}

// Restock implements inventory.Restocker. Ids older than RestockMemory are
// forgotten on each call, as redisstock prunes its sorted set.
func (s *Store) Restock(_ context.Context, node, id, sku string, qty int64) (bool, error) {
	if err := inventory.ValidateRestock(node, id, sku, qty); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.ready(node)
	if err != nil {
		return false, err
	}
	now := s.cfg.Now()
	s.pruneRestocks(n, now)
	if _, ok := n.restocks[id]; ok {
		return false, nil
	}
	n.counters(sku).onHand += qty
	n.restocks[id] = now
	return true, nil
}

// pruneRestocks forgets the restock ids applied more than RestockMemory
// before now. Call with s.mu held.
func (s *Store) pruneRestocks(n *nodeState, now time.Time) {
	cutoff := now.Add(-s.cfg.RestockMemory)
	for id, at := range n.restocks {
		if at.Before(cutoff) {
			delete(n.restocks, id)
		}
	}
}

// Reserve implements inventory.Store.
func (s *Store) Reserve(_ context.Context, h inventory.Hold) error {
	h, err := inventory.NormalizeHold(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.ready(h.Node)
	if err != nil {
		return err
	}
	if old, ok := n.holds[h.ID]; ok {
		if !inventory.SameLines(old.lines, h.Lines) {
			return fmt.Errorf("memstock: reserve %q at %q: %w", h.ID, h.Node, inventory.ErrHoldConflict)
		}
		return nil
	}
	if st, ok := s.closedState(n, h.ID); ok {
		return &inventory.HoldClosedError{Node: h.Node, ID: h.ID, State: st}
	}
	for _, l := range h.Lines {
		lv := n.level(h.Node, l.SKU)
		if lv.Available < l.Qty {
			return &inventory.ShortError{Node: h.Node, SKU: l.SKU, Want: l.Qty, Have: max(lv.Available, 0)}
		}
	}
	s.addHold(n, h, s.cfg.Now())
	return nil
}

// addHold reserves h's lines unconditionally and records it.
func (s *Store) addHold(n *nodeState, h inventory.Hold, created time.Time) {
	for _, l := range h.Lines {
		n.counters(l.SKU).reserved += l.Qty
	}
	n.holds[h.ID] = &hold{lines: h.Lines, deadline: h.Deadline, created: created, owner: h.Owner}
}

// close ends an open hold in state st. Call with s.mu held.
func (s *Store) close(n *nodeState, id string, st inventory.HoldState) {
	h := n.holds[id]
	for _, l := range h.lines {
		c := n.counters(l.SKU)
		c.reserved = max(c.reserved-l.Qty, 0)
		if st == inventory.HoldCommitted {
			c.onHand -= l.Qty
		}
	}
	delete(n.holds, id)
	n.closed[id] = closedMark{state: st, until: s.cfg.Now().Add(s.cfg.ClosedTTL)}
}

// finish closes hold id as st if it is open. already is the state in which
// a closed hold counts as done (false, nil); any other closed state is a
// *HoldClosedError.
func (s *Store) finish(node, id string, st, already inventory.HoldState) (bool, error) {
	if err := inventory.ValidateNode(node); err != nil {
		return false, err
	}
	if err := inventory.ValidateHoldID(id); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.ready(node)
	if err != nil {
		return false, err
	}
	if _, ok := n.holds[id]; ok {
		s.close(n, id, st)
		return true, nil
	}
	cur, ok := s.closedState(n, id)
	switch {
	case !ok:
		return false, fmt.Errorf("memstock: hold %q at %q: %w", id, node, inventory.ErrUnknownHold)
	case cur == already || (already == inventory.HoldReleased && cur == inventory.HoldExpired):
		return false, nil
	default:
		return false, &inventory.HoldClosedError{Node: node, ID: id, State: cur}
	}
}

// Release implements inventory.Store.
func (s *Store) Release(_ context.Context, node, holdID string) (bool, error) {
	return s.finish(node, holdID, inventory.HoldReleased, inventory.HoldReleased)
}

// Commit implements inventory.Store.
func (s *Store) Commit(_ context.Context, node, holdID string) (bool, error) {
	return s.finish(node, holdID, inventory.HoldCommitted, inventory.HoldCommitted)
}

// Confirm implements inventory.Store.
func (s *Store) Confirm(_ context.Context, node, holdID string) error {
	if err := inventory.ValidateNode(node); err != nil {
		return err
	}
	if err := inventory.ValidateHoldID(holdID); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.ready(node)
	if err != nil {
		return err
	}
	if h, ok := n.holds[holdID]; ok {
		h.deadline = time.Time{}
		return nil
	}
	cur, ok := s.closedState(n, holdID)
	switch {
	case !ok:
		return fmt.Errorf("memstock: confirm %q at %q: %w", holdID, node, inventory.ErrUnknownHold)
	case cur == inventory.HoldCommitted:
		return nil
	default:
		return &inventory.HoldClosedError{Node: node, ID: holdID, State: cur}
	}
}

// Levels implements inventory.Store.
func (s *Store) Levels(_ context.Context, keys []inventory.Key) ([]inventory.Level, error) {
	for _, k := range keys {
		if err := inventory.ValidateNode(k.Node); err != nil {
			return nil, err
		}
		if err := inventory.ValidateSKU(k.SKU); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]inventory.Level, len(keys))
	var notReady []string
	seen := map[string]bool{}
	for i, k := range keys {
		n := s.node(k.Node)
		if !n.ready {
			out[i] = inventory.NewLevel(k.Node, k.SKU, 0, 0, 0)
			if !seen[k.Node] {
				seen[k.Node] = true
				notReady = append(notReady, k.Node)
			}
			continue
		}
		out[i] = n.level(k.Node, k.SKU)
	}
	if len(notReady) > 0 {
		return out, &inventory.NotReadyError{Nodes: notReady}
	}
	return out, nil
}

// SweepExpired implements inventory.Store.
func (s *Store) SweepExpired(_ context.Context, now time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		limit = inventory.DefaultSweepLimit
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range sortedNodes(s.nodes) {
		n := s.nodes[id]
		if !n.ready {
			continue
		}
		type due struct {
			id string
			at time.Time
		}
		var dues []due
		for hid, h := range n.holds {
			if !h.deadline.IsZero() && !h.deadline.After(now) {
				dues = append(dues, due{hid, h.deadline})
			}
		}
		sort.Slice(dues, func(i, j int) bool {
			if !dues[i].at.Equal(dues[j].at) {
				return dues[i].at.Before(dues[j].at)
			}
			return dues[i].id < dues[j].id
		})
		for _, d := range dues {
			if len(out) >= limit {
				return out, nil
			}
			s.close(n, d.id, inventory.HoldExpired)
			out = append(out, d.id)
		}
	}
	return out, nil
}

func sortedNodes(m map[string]*nodeState) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Nodes implements inventory.Rebuildable.
func (s *Store) Nodes(context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.known))
	for n := range s.known {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// Ready implements inventory.Rebuildable.
func (s *Store) Ready(_ context.Context, node string) (bool, error) {
	if err := inventory.ValidateNode(node); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node(node).ready, nil
}

// MarkReady implements inventory.Rebuildable.
func (s *Store) MarkReady(_ context.Context, node string) error {
	if err := inventory.ValidateNode(node); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.node(node)
	n.ready = true
	n.epoch = s.token("epoch")
	s.known[node] = true
	return nil
}

// BeginRebuild implements inventory.Rebuildable.
func (s *Store) BeginRebuild(_ context.Context, node string, ifNotReady bool, ttl time.Duration) (string, bool, error) {
	if err := inventory.ValidateNode(node); err != nil {
		return "", false, err
	}
	if ttl <= 0 {
		return "", false, fmt.Errorf("memstock: rebuild lease %v: %w", ttl, inventory.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.node(node)
	if s.leaseHolder(n) != "" || (ifNotReady && n.ready) {
		return "", false, nil
	}
	n.lease, n.leaseUntil = s.token("lease"), s.cfg.Now().Add(ttl)
	n.ready, n.epoch = false, ""
	return n.lease, true, nil
}

// FinishRebuild implements inventory.Rebuildable.
func (s *Store) FinishRebuild(_ context.Context, node, lease string) error {
	if err := inventory.ValidateNode(node); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.node(node)
	if lease == "" || s.leaseHolder(n) != lease {
		return fmt.Errorf("memstock: finish rebuild of %s: %w", node, inventory.ErrLeaseLost)
	}
	n.lease = ""
	n.ready, n.epoch = true, s.token("epoch")
	s.known[node] = true
	return nil
}

// MarkNotReady implements inventory.Rebuildable.
func (s *Store) MarkNotReady(_ context.Context, node string) error {
	if err := inventory.ValidateNode(node); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.node(node)
	n.ready, n.epoch = false, ""
	return nil
}

// Snapshot implements inventory.Rebuildable.
func (s *Store) Snapshot(_ context.Context, node string) (inventory.NodeSnapshot, error) {
	if err := inventory.ValidateNode(node); err != nil {
		return inventory.NodeSnapshot{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.node(node)
	snap := inventory.NodeSnapshot{Node: node, Ready: n.ready, Epoch: n.epoch, Versions: map[string]int64{},
		Restocks: map[string]time.Time{}}
	cutoff := s.cfg.Now().Add(-s.cfg.RestockMemory)
	for id, at := range n.restocks {
		if !at.Before(cutoff) {
			snap.Restocks[id] = at
		}
	}
	skus := make([]string, 0, len(n.stock))
	for sku, c := range n.stock {
		skus = append(skus, sku)
		if c.version != 0 {
			snap.Versions[sku] = c.version
		}
	}
	sort.Strings(skus)
	for _, sku := range skus {
		snap.Levels = append(snap.Levels, n.level(node, sku))
	}
	ids := make([]string, 0, len(n.holds))
	for id := range n.holds {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		h := n.holds[id]
		snap.Holds = append(snap.Holds, inventory.StoredHold{
			Hold: inventory.Hold{ID: id, Node: node, Lines: append([]inventory.Line(nil), h.lines...), Deadline: h.deadline,
				Owner: h.owner},
			Created: h.created,
		})
	}
	return snap, nil
}

// RestoreNode implements inventory.Rebuildable.
func (s *Store) RestoreNode(_ context.Context, node, lease string, rows []inventory.StockRow, holds []inventory.StoredHold,
	restocks map[string]time.Time) error {
	if err := inventory.ValidateNode(node); err != nil {
		return err
	}
	fresh := &nodeState{stock: map[string]*counters{}, holds: map[string]*hold{}, restocks: map[string]time.Time{}}
	for _, r := range rows {
		if r.Node != node {
			continue
		}
		if err := inventory.ValidateStock(r.Node, r.SKU, r.OnHand, r.Safety); err != nil {
			return fmt.Errorf("memstock: restore %s: %w", node, err)
		}
		c := fresh.counters(r.SKU)
		c.onHand, c.safety = r.OnHand, r.Safety
	}
	now := s.cfg.Now()
	for _, h := range holds {
		if h.Node != node {
			continue
		}
		nh, err := inventory.NormalizeHold(h.Hold)
		if err != nil {
			return fmt.Errorf("memstock: restore %s: %w", node, err)
		}
		if _, dup := fresh.holds[nh.ID]; dup {
			return fmt.Errorf("memstock: restore %s: hold %q twice: %w", node, nh.ID, inventory.ErrInvalid)
		}
		for _, l := range nh.Lines {
			fresh.counters(l.SKU).reserved += l.Qty
		}
		created := h.Created
		if created.IsZero() {
			created = now
		}
		fresh.holds[nh.ID] = &hold{lines: nh.Lines, deadline: nh.Deadline, created: created, owner: nh.Owner}
	}
	for id, at := range restocks {
		if err := inventory.ValidateRestockID(id); err != nil {
			return fmt.Errorf("memstock: restore %s: %w", node, err)
		}
		if at.IsZero() {
			at = now
		}
		fresh.restocks[id] = at
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.node(node)
	if n.ready {
		return fmt.Errorf("memstock: restore %s: node is ready, fence it first: %w", node, inventory.ErrInvalid)
	}
	if s.leaseHolder(n) != lease {
		return fmt.Errorf("memstock: restore %s: %w", node, inventory.ErrLeaseLost)
	}
	// Closed ids are kept, as Redis keeps its closed-hold keys; so are the
	// lease and the stock versions.
	fresh.closed = n.closed
	fresh.lease, fresh.leaseUntil = n.lease, n.leaseUntil
	for sku, c := range n.stock {
		if f, ok := fresh.stock[sku]; ok {
			f.version = c.version
		}
	}
	s.nodes[node] = fresh
	s.known[node] = true
	return nil
}

// RestoreHold implements inventory.Rebuildable.
func (s *Store) RestoreHold(_ context.Context, h inventory.Hold) (bool, error) {
	h, err := inventory.NormalizeHold(h)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.ready(h.Node)
	if err != nil {
		return false, err
	}
	if _, ok := n.holds[h.ID]; ok {
		return false, nil
	}
	if st, ok := s.closedState(n, h.ID); ok {
		return false, &inventory.HoldClosedError{Node: h.Node, ID: h.ID, State: st}
	}
	for _, l := range h.Lines {
		lv := n.level(h.Node, l.SKU)
		if room := lv.OnHand - lv.Reserved; room < l.Qty {
			return false, &inventory.ShortError{Node: h.Node, SKU: l.SKU, Want: l.Qty, Have: max(room, 0)}
		}
	}
	s.addHold(n, h, s.cfg.Now())
	return true, nil
}

// AdjustReserved implements inventory.Rebuildable.
func (s *Store) AdjustReserved(_ context.Context, node, sku, epoch string, delta int64) (bool, error) {
	if err := inventory.ValidateNode(node); err != nil {
		return false, err
	}
	if err := inventory.ValidateSKU(sku); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.ready(node)
	if err != nil {
		return false, err
	}
	if n.epoch != epoch {
		return false, nil
	}
	c := n.counters(sku)
	c.reserved = max(c.reserved+delta, 0)
	return true, nil
}

// RepairStock implements inventory.Rebuildable.
func (s *Store) RepairStock(_ context.Context, node, sku, epoch string, version, onHandDelta, safety int64) (bool, error) {
	if err := inventory.ValidateStock(node, sku, 0, safety); err != nil {
		return false, err
	}
	if onHandDelta < -inventory.MaxQty || onHandDelta > inventory.MaxQty {
		return false, fmt.Errorf("memstock: on hand delta %d: %w", onHandDelta, inventory.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.ready(node)
	if err != nil {
		return false, err
	}
	c := n.counters(sku)
	if n.epoch != epoch || c.version != version {
		return false, nil
	}
	c.onHand += onHandDelta
	c.safety = safety
	c.version++
	return true, nil
}
