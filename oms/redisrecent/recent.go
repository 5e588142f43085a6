// Package redisrecent implements oms.Recent with Redis: SET key value NX
// GET PX ttl for each entry, all in one pipelined round trip. Keys are
// hashed identifiers (no personal data) and may live on any cluster slot.
package redisrecent

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/omsd/omsd/oms"
)

// Recent is oms.Recent over Redis.
type Recent struct{ rdb redis.UniversalClient }

// New returns a Recent on rdb.
func New(rdb redis.UniversalClient) *Recent { return &Recent{rdb: rdb} }

// MarkSeen sets each absent key and returns the previous values.
func (r *Recent) MarkSeen(ctx context.Context, entries []oms.Seen) ([]string, error) {
	cmds := make([]*redis.StatusCmd, len(entries))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range entries {
			cmds[i] = p.SetArgs(ctx, e.Key, e.Value, redis.SetArgs{Mode: "NX", Get: true, TTL: e.TTL})
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redisrecent: %w", err)
	}
	out := make([]string, len(entries))
	for i, c := range cmds {
		v, err := c.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("redisrecent: %w", err)
		}
		out[i] = v
	}
	return out, nil
}
