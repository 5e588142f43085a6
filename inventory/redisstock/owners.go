package redisstock

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omsd/omsd/inventory"
)

var _ inventory.Liveness = (*Store)(nil)

// The owner registry (a set) and one heartbeat key per owner, expiring by
// the server's clock, share the node set's slot.
func (s *Store) ownersKey() string            { return "{" + s.cfg.Prefix + "}:owners" }
func (s *Store) ownerKey(owner string) string { return "{" + s.cfg.Prefix + "}:owner:" + owner }

// Beat implements inventory.Liveness: the heartbeat key and the
// registration are written in one MULTI.
func (s *Store) Beat(ctx context.Context, owner string, ttl time.Duration) error {
	if err := inventory.ValidateOwner(owner); err != nil {
		return err
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("%w: heartbeat ttl %v", inventory.ErrInvalid, ttl)
	}
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.ownerKey(owner), "1", ttl)
		p.SAdd(ctx, s.ownersKey(), owner)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisstock: heartbeat: %w", err)
	}
	return nil
}

// Owners implements inventory.Liveness.
func (s *Store) Owners(ctx context.Context) (live, dead []string, err error) {
	owners, err := s.rdb.SMembers(ctx, s.ownersKey()).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("redisstock: owners: %w", err)
	}
	if len(owners) == 0 {
		return nil, nil, nil
	}
	sort.Strings(owners)
	exists := make([]*redis.IntCmd, len(owners))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, o := range owners {
			exists[i] = p.Exists(ctx, s.ownerKey(o))
		}
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("redisstock: owner heartbeats: %w", err)
	}
	for i, o := range owners {
		if exists[i].Val() > 0 {
			live = append(live, o)
		} else {
			dead = append(dead, o)
		}
	}
	return live, dead, nil
}

// ForgetOwners implements inventory.Liveness.
func (s *Store) ForgetOwners(ctx context.Context, owners []string) error {
	if len(owners) == 0 {
		return nil
	}
	members := make([]any, len(owners))
	for i, o := range owners {
		members[i] = o
	}
	if err := s.rdb.SRem(ctx, s.ownersKey(), members...).Err(); err != nil {
		return fmt.Errorf("redisstock: forget owners: %w", err)
	}
	return nil
}
