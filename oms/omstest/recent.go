package omstest

import (
	"context"
	"sync"

	"github.com/omsd/omsd/oms"
)

// Recent is an in-memory oms.Recent (no expiry: tests are short).
type Recent struct {
	mu   sync.Mutex
	keys map[string]string
	bits map[string]map[int64]bool
}

// NewRecent returns an empty memory.
func NewRecent() *Recent {
	return &Recent{keys: map[string]string{}, bits: map[string]map[int64]bool{}}
}

// Remember implements oms.Recent.
func (r *Recent) Remember(_ context.Context, keys []oms.Seen, bits []oms.Bit) ([]string, []bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := make([]string, len(keys))
	for i, k := range keys {
		prev[i] = r.keys[k.Key]
		if prev[i] == "" {
			r.keys[k.Key] = k.Value
		}
	}
	was := make([]bool, len(bits))
	for i, b := range bits {
		m := r.bits[b.Key]
		was[i] = m[b.Offset]
		if b.Set {
			if m == nil {
				m = map[int64]bool{}
				r.bits[b.Key] = m
			}
			m[b.Offset] = true
		}
	}
	return prev, was, nil
}

// Forget implements oms.Recent.
func (r *Recent) Forget(_ context.Context, key, value string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys[key] == value {
		delete(r.keys, key)
	}
	return nil
}
