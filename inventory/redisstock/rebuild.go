package redisstock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omsd/omsd/inventory"
)

// stageTTL bounds how long an abandoned rebuild's staging keys live.
const stageTTL = 10 * time.Minute

// stageChunk is the most fields one staging command writes: the restore is
// many small commands and one renaming script, never one long script.
const stageChunk = 512

// Nodes implements inventory.Rebuildable: the members of the node set.
func (s *Store) Nodes(ctx context.Context) ([]string, error) {
	nodes, err := s.rdb.SMembers(ctx, s.nodesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstock: nodes: %w", err)
	}
	sort.Strings(nodes)
	return nodes, nil
}

// Ready implements inventory.Rebuildable.
func (s *Store) Ready(ctx context.Context, node string) (bool, error) {
	if err := inventory.ValidateNode(node); err != nil {
		return false, err
	}
	n, err := s.rdb.Exists(ctx, s.keys(node).ready).Result()
	if err != nil {
		return false, fmt.Errorf("redisstock: ready %s: %w", node, err)
	}
	return n == 1, nil
}

// MarkReady implements inventory.Rebuildable. The ready key holds the
// node's epoch (a fresh random token).
func (s *Store) MarkReady(ctx context.Context, node string) error {
	if err := inventory.ValidateNode(node); err != nil {
		return err
	}
	epoch, err := randomToken()
	if err != nil {
		return err
	}
	// Two slots in a cluster: two commands, the node set first so that a
	// ready node is always one the sweeper visits.
	if err := s.rdb.SAdd(ctx, s.nodesKey(), node).Err(); err != nil {
		return fmt.Errorf("redisstock: mark ready %s: %w", node, err)
	}
	if err := s.rdb.Set(ctx, s.keys(node).ready, epoch, 0).Err(); err != nil {
		return fmt.Errorf("redisstock: mark ready %s: %w", node, err)
	}
	return nil
}

// MarkNotReady implements inventory.Rebuildable.
func (s *Store) MarkNotReady(ctx context.Context, node string) error {
	if err := inventory.ValidateNode(node); err != nil {
		return err
	}
	if err := s.rdb.Del(ctx, s.keys(node).ready).Err(); err != nil {
		return fmt.Errorf("redisstock: mark not ready %s: %w", node, err)
	}
	return nil
}

// BeginRebuild implements inventory.Rebuildable with one script: the lease
// key {P:N}:rebuild (the lease token, expiring after ttl) and the fence.
func (s *Store) BeginRebuild(ctx context.Context, node string, ifNotReady bool, ttl time.Duration) (string, bool, error) {
	if err := inventory.ValidateNode(node); err != nil {
		return "", false, err
	}
	if ttl < time.Millisecond {
		return "", false, fmt.Errorf("redisstock: rebuild lease %v below 1ms: %w", ttl, inventory.ErrInvalid)
	}
	lease, err := randomToken()
	if err != nil {
		return "", false, err
	}
	only := "0"
	if ifNotReady {
		only = "1"
	}
	k := s.keys(node)
	cmd, err := run(ctx, s.rdb, s.m, fenceScript, []string{k.ready, k.lease}, lease, ttl.Milliseconds(), only)
	if err != nil {
		return "", false, fmt.Errorf("redisstock: begin rebuild %s: %w", node, err)
	}
	tag, _, err := reply(cmd)
	if err != nil {
		return "", false, err
	}
	switch tag {
	case "ok":
		return lease, true, nil
	case "busy", "ready":
		return "", false, nil
	}
	return "", false, fmt.Errorf("redisstock: begin rebuild: unexpected reply %q", tag)
}

// FinishRebuild implements inventory.Rebuildable: the lease token becomes
// the node's epoch.
func (s *Store) FinishRebuild(ctx context.Context, node, lease string) error {
	if err := inventory.ValidateNode(node); err != nil {
		return err
	}
	if err := s.rdb.SAdd(ctx, s.nodesKey(), node).Err(); err != nil {
		return fmt.Errorf("redisstock: finish rebuild %s: %w", node, err)
	}
	k := s.keys(node)
	cmd, err := run(ctx, s.rdb, s.m, finishScript, []string{k.ready, k.lease}, lease)
	if err != nil {
		return fmt.Errorf("redisstock: finish rebuild %s: %w", node, err)
	}
	tag, _, err := reply(cmd)
	if err != nil {
		return err
	}
	switch tag {
	case "ok":
		return nil
	case "lost":
		return fmt.Errorf("redisstock: finish rebuild %s: %w", node, inventory.ErrLeaseLost)
	}
	return fmt.Errorf("redisstock: finish rebuild: unexpected reply %q", tag)
}

// Snapshot implements inventory.Rebuildable with one MULTI/EXEC over the
// node's keys (one slot, so it works on a cluster).
func (s *Store) Snapshot(ctx context.Context, node string) (inventory.NodeSnapshot, error) {
	if err := inventory.ValidateNode(node); err != nil {
		return inventory.NodeSnapshot{}, err
	}
	k := s.keys(node)
	var (
		ready                                     *redis.StringCmd
		onHand, reserved, safety, holds, versions *redis.MapStringStringCmd
		deadlines, restocks                       *redis.ZSliceCmd
	)
	cutoff := strconv.FormatInt(s.cfg.Now().Add(-s.cfg.RestockMemory).UnixMilli(), 10)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		ready = p.Get(ctx, k.ready)
		versions = p.HGetAll(ctx, k.versions)
		onHand = p.HGetAll(ctx, k.onHand)
		reserved = p.HGetAll(ctx, k.reserved)
		safety = p.HGetAll(ctx, k.safety)
		holds = p.HGetAll(ctx, k.holds)
		deadlines = p.ZRangeWithScores(ctx, k.deadlines, 0, -1)
		restocks = p.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{Key: k.restocks, Start: cutoff, Stop: "+inf", ByScore: true})
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return inventory.NodeSnapshot{}, fmt.Errorf("redisstock: snapshot %s: %w", node, err)
	}
	snap := inventory.NodeSnapshot{Node: node, Versions: map[string]int64{}, Restocks: map[string]time.Time{}}
	if err := ready.Err(); err == nil {
		snap.Ready, snap.Epoch = true, ready.Val()
	} else if !errors.Is(err, redis.Nil) {
		return inventory.NodeSnapshot{}, fmt.Errorf("redisstock: snapshot %s: %w", node, err)
	}
	for sku, v := range versions.Val() {
		if snap.Versions[sku], err = strconv.ParseInt(v, 10, 64); err != nil {
			return snap, fmt.Errorf("redisstock: snapshot %s: stock version of %q: %w", node, sku, err)
		}
	}
	skus := map[string]bool{}
	for _, m := range []map[string]string{onHand.Val(), reserved.Val(), safety.Val()} {
		for sku := range m {
			skus[sku] = true
		}
	}
	for _, sku := range sortedSet(skus) {
		var n [3]int64
		for i, m := range []map[string]string{onHand.Val(), reserved.Val(), safety.Val()} {
			if v, ok := m[sku]; ok {
				if n[i], err = strconv.ParseInt(v, 10, 64); err != nil {
					return snap, fmt.Errorf("redisstock: snapshot %s: counter of %q: %w", node, sku, err)
				}
			}
		}
		snap.Levels = append(snap.Levels, inventory.NewLevel(node, sku, n[0], n[1], n[2]))
	}
	for _, z := range restocks.Val() {
		snap.Restocks[toStr(z.Member)] = time.UnixMilli(int64(z.Score))
	}
	due := map[string]time.Time{}
	for _, z := range deadlines.Val() {
		due[toStr(z.Member)] = time.UnixMilli(int64(z.Score))
	}
	ids := make([]string, 0, len(holds.Val()))
	for id := range holds.Val() {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		h, err := decodeRecord(holds.Val()[id])
		if err != nil {
			return snap, fmt.Errorf("redisstock: snapshot %s: hold %q: %w", node, id, err)
		}
		h.ID, h.Node, h.Deadline = id, node, due[id]
		snap.Holds = append(snap.Holds, h)
	}
	return snap, nil
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// RestoreNode implements inventory.Rebuildable. It writes the new state to
// staging keys (unique to this call, expiring after stageTTL if the call
// dies) in chunks of stageChunk fields, then swaps them in with one script
// that only renames. Closed-hold markers are left as they are; the
// remembered restock ids are replaced by restocks.
func (s *Store) RestoreNode(ctx context.Context, node, lease string, rows []inventory.StockRow, holds []inventory.StoredHold,
	restocks map[string]time.Time) error {
	if err := inventory.ValidateNode(node); err != nil {
		return err
	}
	onHand := map[string]any{}
	safety := map[string]any{}
	for _, r := range rows {
		if r.Node != node {
			continue
		}
		if err := inventory.ValidateStock(r.Node, r.SKU, r.OnHand, r.Safety); err != nil {
			return fmt.Errorf("redisstock: restore %s: %w", node, err)
		}
		onHand[r.SKU] = r.OnHand
		safety[r.SKU] = r.Safety
	}
	reservedSum := map[string]int64{}
	recs := map[string]any{}
	var due []redis.Z
	now := s.cfg.Now()
	for _, h := range holds {
		if h.Node != node {
			continue
		}
		nh, err := inventory.NormalizeHold(h.Hold)
		if err != nil {
			return fmt.Errorf("redisstock: restore %s: %w", node, err)
		}
		if _, dup := recs[nh.ID]; dup {
			return fmt.Errorf("redisstock: restore %s: hold %q twice: %w", node, nh.ID, inventory.ErrInvalid)
		}
		created := h.Created
		if created.IsZero() {
			created = now
		}
		if recs[nh.ID], err = encodeRecord(nh, created); err != nil {
			return err
		}
		for _, l := range nh.Lines {
			reservedSum[l.SKU] += l.Qty
		}
		if !nh.Deadline.IsZero() {
			ms, _ := strconv.ParseInt(deadlineArg(nh.Deadline), 10, 64)
			due = append(due, redis.Z{Score: float64(ms), Member: nh.ID})
		}
	}
	applied := make([]redis.Z, 0, len(restocks))
	for id, at := range restocks {
		if err := inventory.ValidateRestockID(id); err != nil {
			return fmt.Errorf("redisstock: restore %s: %w", node, err)
		}
		if at.IsZero() {
			at = now
		}
		applied = append(applied, redis.Z{Score: float64(at.UnixMilli()), Member: id})
	}
	reserved := make(map[string]any, len(reservedSum))
	for sku, n := range reservedSum {
		reserved[sku] = n
	}

	k := s.keys(node)
	token, err := randomToken()
	if err != nil {
		return err
	}
	stage := func(name string) string { return k.tag + ":stage:" + token + ":" + name }
	live := []string{k.onHand, k.reserved, k.safety, k.holds, k.deadlines, k.restocks}
	staged := []string{stage("onhand"), stage("reserved"), stage("safety"), stage("holds"), stage("deadlines"), stage("restocks")}
	marker, done := stage("marker"), stage("done")
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, marker, "1", stageTTL)
		for i, m := range []map[string]any{onHand, reserved, safety, recs} {
			for _, chunk := range chunks(m, stageChunk) {
				p.HSet(ctx, staged[i], chunk...)
			}
		}
		for i := 0; i < len(due); i += stageChunk {
			p.ZAdd(ctx, staged[4], due[i:min(i+stageChunk, len(due))]...)
		}
		for i := 0; i < len(applied); i += stageChunk {
			p.ZAdd(ctx, staged[5], applied[i:min(i+stageChunk, len(applied))]...)
		}
		for _, key := range staged {
			p.PExpire(ctx, key, stageTTL)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisstock: restore %s: stage: %w", node, err)
	}
	keys := append(append([]string{k.ready, marker, done, k.lease}, live...), staged...)
	cmd, err := run(ctx, s.rdb, s.m, swapScript, keys, stageTTL.Milliseconds(), lease)
	if err != nil {
		return fmt.Errorf("redisstock: restore %s: %w", node, err)
	}
	tag, _, err := reply(cmd)
	if err != nil {
		return err
	}
	switch tag {
	case "ok":
	case "ready":
		s.rdb.Del(ctx, append(staged, marker)...) // best effort: they expire anyway
		return fmt.Errorf("redisstock: restore %s: node is ready, fence it first: %w", node, inventory.ErrInvalid)
	case "lease":
		s.rdb.Del(ctx, append(staged, marker)...)
		return fmt.Errorf("redisstock: restore %s: %w", node, inventory.ErrLeaseLost)
	default:
		return fmt.Errorf("redisstock: restore %s: staging %s vanished (%s)", node, token, tag)
	}
	if err := s.rdb.SAdd(ctx, s.nodesKey(), node).Err(); err != nil {
		return fmt.Errorf("redisstock: restore %s: node set: %w", node, err)
	}
	s.cfg.Logger.Info("redisstock: node restored", "node", node, "skus", len(onHand), "holds", len(recs), "restocks", len(applied))
	return nil
}

// chunks splits m into field/value slices of at most n fields.
func chunks(m map[string]any, n int) [][]any {
	var out [][]any
	cur := make([]any, 0, 2*min(n, len(m)))
	for f, v := range m {
		cur = append(cur, f, v)
		if len(cur) == 2*n {
			out = append(out, cur)
			cur = make([]any, 0, 2*n)
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func randomToken() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("redisstock: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// RestoreHold implements inventory.Rebuildable with the reserve script in
// its restore mode: same keys, same idempotency, lines checked against on
// hand.
func (s *Store) RestoreHold(ctx context.Context, h inventory.Hold) (bool, error) {
	h, err := inventory.NormalizeHold(h)
	if err != nil {
		return false, err
	}
	outcome, err := s.reserve(ctx, h, true)
	switch {
	case outcome == outcomeOK:
		s.m.addUnits("restored", inventory.Units(h.Lines))
		return true, nil
	case outcome == outcomeDuplicate:
		return false, nil
	case errors.Is(err, inventory.ErrHoldConflict):
		return false, nil // open with other lines: reported by the caller, not overwritten
	}
	return false, err
}

// AdjustReserved implements inventory.Rebuildable. Each call carries a
// one-time token, so a go-redis retry of it applies the delta once.
func (s *Store) AdjustReserved(ctx context.Context, node, sku, epoch string, delta int64) (bool, error) {
	if err := inventory.ValidateNode(node); err != nil {
		return false, err
	}
	if err := inventory.ValidateSKU(sku); err != nil {
		return false, err
	}
	token, err := randomToken()
	if err != nil {
		return false, err
	}
	k := s.keys(node)
	cmd, err := run(ctx, s.rdb, s.m, adjustScript, []string{k.ready, k.reserved, k.tag + ":repair:" + token},
		sku, delta, stageTTL.Milliseconds(), epoch)
	if err != nil {
		return false, err
	}
	tag, _, err := reply(cmd)
	if err != nil {
		return false, err
	}
	switch tag {
	case "ok", "dup":
		return true, nil
	case "moved":
		return false, nil
	case "notready":
		return false, notReady(node)
	}
	return false, fmt.Errorf("redisstock: adjust reserved: unexpected reply %q", tag)
}

// RepairStock implements inventory.Rebuildable. Each call carries a
// one-time token that records its answer, so a go-redis retry answers as
// the first run did.
func (s *Store) RepairStock(ctx context.Context, node, sku, epoch string, version, onHandDelta, safety int64) (bool, error) {
	if err := inventory.ValidateStock(node, sku, 0, safety); err != nil {
		return false, err
	}
	if onHandDelta < -inventory.MaxQty || onHandDelta > inventory.MaxQty {
		return false, fmt.Errorf("redisstock: on hand delta %d: %w", onHandDelta, inventory.ErrInvalid)
	}
	token, err := randomToken()
	if err != nil {
		return false, err
	}
	k := s.keys(node)
	cmd, err := run(ctx, s.rdb, s.m, repairScript,
		[]string{k.ready, k.onHand, k.safety, k.versions, k.tag + ":repair:" + token},
		epoch, sku, version, onHandDelta, safety, stageTTL.Milliseconds())
	if err != nil {
		return false, err
	}
	tag, _, err := reply(cmd)
	if err != nil {
		return false, err
	}
	switch tag {
	case "ok":
		return true, nil
	case "moved":
		return false, nil
	case "notready":
		return false, notReady(node)
	}
	return false, fmt.Errorf("redisstock: repair stock: unexpected reply %q", tag)
}
