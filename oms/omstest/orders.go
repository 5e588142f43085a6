package omstest

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/omsd/omsd/oms"
)

// Orders is an in-memory oms.OrderStore with the SQL store's semantics:
// a batch is all or nothing, copies of an order id or an Idempotency-Key
// are settled in favour of the first, and SettleOrders waits for a batch
// in flight. Tests steer it with the hooks.
type Orders struct {
	mu     sync.Mutex
	orders map[string]stored
	keys   map[string]string // channel\x00key -> order id
	// commit is held while a batch is being written, so that SettleOrders
	// waits for it as the SQL store waits for the locks of a batch.
	commit sync.Mutex

	// BeforeCommit, when set, runs before a batch is written (while
	// SettleOrders would wait for it); an error fails the batch, nothing
	// written.
	BeforeCommit func(ctx context.Context, batch []*oms.NewOrder) error
	// AfterCommit, when set, runs after a batch was written; an error is
	// returned although the batch is stored (an ambiguous COMMIT).
	AfterCommit func(batch []*oms.NewOrder) error
	// Refuse, when set, refuses an order's data: a batch holding an order
	// it returns true for fails with oms.ErrOrderData.
	Refuse func(o *oms.Order) bool

	batches [][]string
}

type stored struct {
	doc   []byte
	hash  []byte
	holds []string
}

// NewOrders returns an empty store.
func NewOrders() *Orders {
	return &Orders{orders: map[string]stored{}, keys: map[string]string{}}
}

// CommitOrders implements oms.OrderStore.
func (s *Orders) CommitOrders(ctx context.Context, batch []*oms.NewOrder) error {
	s.commit.Lock()
	defer s.commit.Unlock()
	if s.BeforeCommit != nil {
		if err := s.BeforeCommit(ctx, batch); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	ids := make([]string, 0, len(batch))
	for _, no := range batch {
		ids = append(ids, no.Order.ID)
	}
	s.batches = append(s.batches, ids)
	for _, no := range batch {
		if s.Refuse != nil && s.Refuse(no.Order) {
			s.mu.Unlock()
			return oms.ErrOrderData
		}
	}
	seen := map[string]bool{}
	for _, no := range batch {
		no.Outcome, no.ExistingID = 0, ""
		o := no.Order
		if _, ok := s.orders[o.ID]; ok || seen[o.ID] {
			no.Outcome = oms.OutcomeDuplicate
			continue
		}
		if no.IdemKey != "" {
			k := o.Channel + "\x00" + no.IdemKey
			if other, ok := s.keys[k]; ok && other != o.ID {
				no.Outcome, no.ExistingID = oms.OutcomeIdemTaken, other
				continue
			}
			s.keys[k] = o.ID
		}
		doc := no.Doc
		if doc == nil {
			doc, _ = json.Marshal(o)
		}
		holds := []string{}
		for _, sh := range o.Shipments {
			holds = append(holds, sh.HoldID)
		}
		s.orders[o.ID] = stored{doc: doc, hash: no.RequestHash, holds: holds}
		seen[o.ID] = true
		no.Outcome = oms.OutcomeInserted
	}
	s.mu.Unlock()
	if s.AfterCommit != nil {
		return s.AfterCommit(batch)
	}
	return nil
}

// SettleOrders implements oms.OrderStore: it waits for a batch being
// written, then reports the stored orders' hold ids.
func (s *Orders) SettleOrders(ctx context.Context, ids []string) (map[string][]string, error) {
	s.commit.Lock()
	s.commit.Unlock() //nolint:staticcheck // waiting for the batch in flight is the point
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	for _, id := range ids {
		if st, ok := s.orders[id]; ok {
			out[id] = st.holds
		}
	}
	return out, nil
}

// GetOrder implements oms.OrderStore.
func (s *Orders) GetOrder(_ context.Context, id string) (*oms.Order, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.orders[id]
	if !ok {
		return nil, nil, oms.ErrNotFound
	}
	var o oms.Order
	if err := json.Unmarshal(st.doc, &o); err != nil {
		return nil, nil, err
	}
	return &o, st.hash, nil
}

// Len is the number of stored orders.
func (s *Orders) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.orders)
}

// Batches lists the order ids of every batch written or refused, in order.
func (s *Orders) Batches() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]string, len(s.batches))
	copy(out, s.batches)
	return out
}
