package oms

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// NewOrder is an order on its way into the database, with what the
// committer writes alongside it and, after the commit, its outcome.
type NewOrder struct {
	Order       *Order
	RequestHash []byte
	IdemKey     string // optional Idempotency-Key
	Events      []OutboxEvent
	// Owner is the lease its holds were taken under (Placed.Owner); the
	// committer refuses the order once that lease has lapsed.
	Owner string
	// Doc is Order encoded as JSON (the stored document); empty: the store
	// encodes it.
	Doc []byte
	// Customer is the order's customer match (nil: customers are not
	// matched); the store writes its keys, merges and binding change.
	Customer *CustomerMatch

	// Set by the store.
	Outcome CommitOutcome
	// ExistingID is the order an Idempotency-Key already points to
	// (OutcomeIdemTaken).
	ExistingID string
}

// CommitOutcome is what became of one order of a batch.
type CommitOutcome int

// Outcomes of a commit.
const (
	OutcomeInserted  CommitOutcome = iota + 1 // the order is stored
	OutcomeDuplicate                          // an order with this id already exists
	OutcomeIdemTaken                          // the Idempotency-Key belongs to another order
)

// ErrOrderData marks a store error caused by the data of an order (a
// value the database refuses), not by the database: the committer commits
// the rest of the batch without the order at fault.
var ErrOrderData = errors.New("oms: the database refused an order's data")

// OrderStore is intake's one seam to the order database.
type OrderStore interface {
	// CommitOrders writes a batch of new orders in ONE transaction (the
	// orders, lines, shipments, idempotency keys and outbox rows) and sets
	// each NewOrder's Outcome. An error wrapping ErrOrderData: the data of
	// one or more orders was refused and nothing was written. Any other
	// error: nothing of the batch is known to be written.
	CommitOrders(ctx context.Context, batch []*NewOrder) error
	// SettleOrders waits until no transaction can still write the orders
	// ids (it claims their keys itself, which waits for any transaction
	// that holds them, and gives them back), then maps each stored id to
	// its shipments' hold ids. After it answers, "not stored" is final.
	SettleOrders(ctx context.Context, ids []string) (map[string][]string, error)
	// GetOrder returns the order and the hash of the request that created
	// it; ErrNotFound when absent.
	GetOrder(ctx context.Context, id string) (*Order, []byte, error)
}

// CommitterConfig configures the group committer. Zero values mean the
// defaults written next to each field.
type CommitterConfig struct {
	// Shards is the number of independent batchers; default 8.
	Shards int
	// Window is how long a shard waits for more orders after the first
	// arrives; default 0. A shard commits whatever is queued as soon as
	// its previous commit returns, so batches grow with the load by
	// themselves and an idle shard adds no latency; a positive window
	// trades latency for larger batches.
	Window time.Duration
	// MaxBatch bounds one transaction; default 128.
	MaxBatch int
	// QueueDepth bounds the orders waiting per shard; past it Commit
	// answers ErrOverloaded at once; default 4 × MaxBatch, at least 64.
	QueueDepth int
	// Timeout of one batch transaction, independent of any request;
	// default 10s.
	Timeout time.Duration
	// Lease, when set, is the claim the orders' holds were taken under: an
	// order whose Owner is not the current claim is refused with
	// ErrLeaseLapsed before the store sees it, and a batch transaction is
	// cancelled the moment the claim lapses (other instances then release
	// the holds no stored shipment owns).
	Lease Lease
	// Registerer receives the metrics; nil: none.
	Registerer prometheus.Registerer
}

func (c *CommitterConfig) setDefaults() {
	c.Shards = cmpOr(c.Shards, 8)
	c.MaxBatch = cmpOr(c.MaxBatch, 128)
	c.QueueDepth = cmpOr(c.QueueDepth, max(4*c.MaxBatch, 64))
	c.Timeout = cmpOr(c.Timeout, 10*time.Second)
}

// Validate reports a configuration that cannot work.
func (c CommitterConfig) Validate() error {
	if c.Window < 0 || c.Shards < 0 || c.MaxBatch < 0 || c.QueueDepth < 0 || c.Timeout < 0 {
		return errors.New("oms: committer settings must not be negative")
	}
	if c.Shards > 1024 || c.MaxBatch > 10000 {
		return errors.New("oms: committer shards at most 1024, batch at most 10000")
	}
	return nil
}

type commitReq struct {
	no   *NewOrder
	done chan error
}

// Committer spreads orders over shards by id; each shard commits what is
// queued in one transaction, so the cost of a durable commit (an fsync) is
// shared by the batch. Commit waits for the outcome of its batch whatever
// the caller's context does: the outcome must be known before anything
// reserved for the order is given back. Start it with Run.
type Committer struct {
	cfg    CommitterConfig
	store  OrderStore
	shards []chan commitReq
	mu     sync.RWMutex
	closed bool

	batchSize  prometheus.Histogram
	commitTime prometheus.Histogram
	failures   *prometheus.CounterVec
	refused    prometheus.Counter
}

// ErrClosed is returned for work submitted after the committer stopped.
var ErrClosed = &Error{Kind: KindUnavailable, Slug: SlugShuttingDown, Detail: "the server is shutting down", RetryAfter: time.Second}

// ErrOverloaded is returned at once when more work is waiting than the
// configured budget: nothing was kept, and a retry after Retry-After is
// safe.
var ErrOverloaded = &Error{Kind: KindUnavailable, Slug: SlugOverloaded, Detail: "the server is at capacity; retry shortly", RetryAfter: time.Second}

// NewCommitter builds a committer; Run starts it.
func NewCommitter(cfg CommitterConfig, store OrderStore) (*Committer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	c := &Committer{cfg: cfg, store: store}
	c.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "omsd_intake_batch_size", Help: "Orders per group-commit transaction.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
	})
	c.commitTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "omsd_intake_commit_duration_seconds", Help: "Duration of one group-commit transaction.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 5},
	})
	c.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_intake_commit_failures_total",
		Help: "Group-commit transactions that failed, by cause: data (an order's data was refused; the rest is committed without it) or store.",
	}, []string{"cause"})
	c.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "omsd_intake_commit_overloaded_total", Help: "Orders refused because their shard's queue was full.",
	})
	if err := register(cfg.Registerer, c.batchSize, c.commitTime, c.failures, c.refused); err != nil {
		return nil, err
	}
	for range cfg.Shards {
		c.shards = append(c.shards, make(chan commitReq, cfg.QueueDepth))
	}
	return c, nil
}

// register registers collectors, returning the first error.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("oms: register metrics: %w", err)
		}
	}
	return nil
}

// Run commits batches until ctx ends, then refuses new work, commits what
// is queued and returns nil.
func (c *Committer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, ch := range c.shards {
		wg.Go(func() { c.loop(ch) })
	}
	<-ctx.Done()
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		for _, ch := range c.shards {
			close(ch)
		}
	}
	c.mu.Unlock()
	wg.Wait()
	return nil
}

// Commit queues no on its shard and waits until its batch has committed or
// failed. It returns nil when the batch committed (no.Outcome says what
// became of this order) and the commit error otherwise; ErrOverloaded
// (nothing queued) when the shard's queue is full, ErrClosed after Run
// ended. It has no context on purpose: a caller that gives up must not
// act before the outcome is known; the batch's own Timeout bounds the wait.
func (c *Committer) Commit(no *NewOrder) error {
	h := fnv.New32a()
	_, _ = h.Write([]byte(no.Order.ID))
	req := commitReq{no: no, done: make(chan error, 1)}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return ErrClosed
	}
	select {
	case c.shards[int(h.Sum32()%uint32(len(c.shards)))] <- req:
	default:
		c.mu.RUnlock()
		c.refused.Inc()
		return ErrOverloaded
	}
	c.mu.RUnlock()
	return <-req.done
}

func (c *Committer) loop(ch chan commitReq) {
	batch := make([]commitReq, 0, c.cfg.MaxBatch)
	for first := range ch {
		batch = append(batch[:0], first)
		batch = c.gather(ch, batch)
		c.flush(batch)
	}
}

// gather takes what is already queued, then waits up to Window for more.
func (c *Committer) gather(ch chan commitReq, batch []commitReq) []commitReq {
	var timeout <-chan time.Time
	if c.cfg.Window > 0 {
		t := time.NewTimer(c.cfg.Window)
		defer t.Stop()
		timeout = t.C
	}
	for len(batch) < c.cfg.MaxBatch {
		select {
		case r, ok := <-ch:
			if !ok {
				return batch
			}
			batch = append(batch, r)
			continue
		default:
		}
		if timeout == nil {
			return batch
		}
		select {
		case r, ok := <-ch:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		case <-timeout:
			return batch
		}
	}
	return batch
}

// underLease splits batch into the orders reserved under the current
// lease, returned with the lease's context, and those reserved under a
// lease that lapsed.
func (c *Committer) underLease(batch []commitReq) (context.Context, []commitReq, []commitReq) {
	owner, ctx, ok := c.cfg.Lease.Current()
	if !ok {
		return nil, nil, batch
	}
	var keep, lapsed []commitReq
	for _, r := range batch {
		if r.no.Owner == owner {
			keep = append(keep, r)
		} else {
			lapsed = append(lapsed, r)
		}
	}
	return ctx, keep, lapsed
}

// flush commits batch and answers every order in it. When the store
// refuses the data of an order, the batch is split in halves and each is
// committed again, so the order at fault fails alone and the others go in.
func (c *Committer) flush(batch []commitReq) {
	base := context.Background()
	if c.cfg.Lease != nil {
		var lapsed []commitReq
		if base, batch, lapsed = c.underLease(batch); len(lapsed) > 0 {
			c.failures.WithLabelValues("lease").Add(float64(len(lapsed)))
			for _, r := range lapsed {
				r.done <- ErrLeaseLapsed
			}
		}
		if len(batch) == 0 {
			return
		}
	}
	orders := make([]*NewOrder, len(batch))
	for i, r := range batch {
		orders[i] = r.no
	}
	ctx, cancel := context.WithTimeout(base, c.cfg.Timeout)
	start := time.Now()
	err := c.store.CommitOrders(ctx, orders)
	cancel()
	c.commitTime.Observe(time.Since(start).Seconds())
	c.batchSize.Observe(float64(len(batch)))
	switch {
	case err == nil:
	case errors.Is(err, ErrOrderData):
		c.failures.WithLabelValues("data").Inc()
		if len(batch) > 1 {
			half := len(batch) / 2
			c.flush(batch[:half])
			c.flush(batch[half:])
			return
		}
	default:
		c.failures.WithLabelValues("store").Inc()
	}
	for _, r := range batch {
		r.done <- err
	}
}
