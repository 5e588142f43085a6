package memstock

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/omsd/omsd/inventory"
)

// Beat implements inventory.Liveness.
func (s *Store) Beat(_ context.Context, owner string, ttl time.Duration) error {
	if err := inventory.ValidateOwner(owner); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: heartbeat ttl %v", inventory.ErrInvalid, ttl)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.owners[owner] = s.cfg.Now().Add(ttl)
	return nil
}

// Owners implements inventory.Liveness.
func (s *Store) Owners(context.Context) (live, dead []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	for o, until := range s.owners {
		if now.Before(until) {
			live = append(live, o)
		} else {
			dead = append(dead, o)
		}
	}
	sort.Strings(live)
	sort.Strings(dead)
	return live, dead, nil
}

// ForgetOwners implements inventory.Liveness.
func (s *Store) ForgetOwners(_ context.Context, owners []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range owners {
		delete(s.owners, o)
	}
	return nil
}
