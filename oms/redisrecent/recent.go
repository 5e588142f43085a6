// Package redisrecent implements oms.Recent with Redis: SET key value NX
// GET PX ttl for each key and SETBIT/GETBIT for each bit, all in one
// pipelined round trip. Keys are hashed identifiers (no personal data) and
// may live on any cluster slot; bitmaps have a fixed size, so the memory
// stays bounded whatever ids channels send.
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

// Remember sets each absent key and returns the previous values, and reads
// or sets each bit and returns whether it was set.
func (r *Recent) Remember(ctx context.Context, keys []oms.Seen, bits []oms.Bit) ([]string, []bool, error) {
	kc := make([]*redis.StatusCmd, len(keys))
	bc := make([]*redis.IntCmd, len(bits))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range keys {
			kc[i] = p.SetArgs(ctx, e.Key, e.Value, redis.SetArgs{Mode: "NX", Get: true, TTL: e.TTL})
		}
		for i, b := range bits {
			if b.Set {
				bc[i] = p.SetBit(ctx, b.Key, b.Offset, 1)
				if b.TTL > 0 {
					p.Expire(ctx, b.Key, b.TTL)
				}
			} else {
				bc[i] = p.GetBit(ctx, b.Key, b.Offset)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("redisrecent: %w", err)
	}
	prev := make([]string, len(keys))
	for i, c := range kc {
		v, err := c.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, nil, fmt.Errorf("redisrecent: %w", err)
		}
		prev[i] = v
	}
	was := make([]bool, len(bits))
	for i, c := range bc {
		v, err := c.Result()
		if err != nil {
			return nil, nil, fmt.Errorf("redisrecent: %w", err)
		}
		was[i] = v == 1
	}
	return prev, was, nil
}

var forget = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// Forget deletes key if it still holds value.
func (r *Recent) Forget(ctx context.Context, key, value string) error {
	if err := forget.Run(ctx, r.rdb, []string{key}, value).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redisrecent: %w", err)
	}
	return nil
}
