package oms

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// NewOrder is an order on its way into the database, with what the
// committer must write alongside it and, after the commit, its outcome.
type NewOrder struct {
	Order       *Order
	RequestHash []byte
	IdemKey     string // optional Idempotency-Key
	Events      []OutboxEvent
	// Doc is Order encoded as JSON (the stored document); empty: the store
	// encodes it.
	Doc []byte

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

// BatchStore writes a batch of orders in ONE transaction: orders, lines,
// shipments, shipment lines, idempotency keys and outbox rows, setting
// each NewOrder's Outcome. An error means nothing of the batch is known to
// be written; the caller resolves it with OrdersExist.
type BatchStore interface {
	CommitOrders(ctx context.Context, batch []*NewOrder) error
	// OrdersExist reports, for ids, the hold ids of the stored orders'
	// shipments (nil when the order does not exist).
	OrdersExist(ctx context.Context, ids []string) (map[string][]string, error)
}

// CommitterConfig configures the group committer.
type CommitterConfig struct {
	// Shards is the number of independent batchers; default 8.
	Shards int
	// Window is how long a shard waits for more orders after the first
	// arrives. Default 0: no wait. A shard commits whatever is queued as
	// soon as its previous commit returns, so batches grow with the load by
	// themselves (the orders that arrive during one commit form the next
	// batch) and an idle shard adds no latency. A positive window trades
	// latency for larger batches.
	Window time.Duration
	// MaxBatch flushes a shard early; default 128.
	MaxBatch int
	// Timeout of one batch transaction, independent of any request;
	// default 10s.
	Timeout time.Duration
}

type commitReq struct {
	no   *NewOrder
	done chan error
}

// Committer spreads orders over shards by id; each shard gathers what
// arrives within a short window (or up to MaxBatch) and commits it in one
// transaction, so the cost of a durable commit (an fsync) is shared by the
// batch. A caller waits for its batch with its own context; a caller that
// gives up does not cancel the batch.
type Committer struct {
	cfg    CommitterConfig
	store  BatchStore
	shards []chan commitReq
	wg     sync.WaitGroup
	mu     sync.RWMutex
	closed bool

	batchSize  prometheus.Histogram
	commitTime prometheus.Histogram
	failures   prometheus.Counter
}

// ErrClosed is returned for work submitted after Close.
var ErrClosed = &Error{Kind: KindUnavailable, Slug: SlugShuttingDown, Detail: "the server is shutting down"}

// NewCommitter starts the shards.
func NewCommitter(cfg CommitterConfig, store BatchStore, reg prometheus.Registerer) *Committer {
	if cfg.Shards <= 0 {
		cfg.Shards = 8
	}
	if cfg.Window < 0 {
		cfg.Window = 0
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 128
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	c := &Committer{cfg: cfg, store: store}
	c.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "omsd_intake_batch_size", Help: "Orders per group-commit transaction.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
	})
	c.commitTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "omsd_intake_commit_duration_seconds", Help: "Duration of one group-commit transaction.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 5},
	})
	c.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "omsd_intake_commit_failures_total", Help: "Group-commit transactions that failed.",
	})
	if reg != nil {
		reg.MustRegister(c.batchSize, c.commitTime, c.failures)
	}
	for range cfg.Shards {
		ch := make(chan commitReq, cfg.MaxBatch*4)
		c.shards = append(c.shards, ch)
		c.wg.Add(1)
		go c.loop(ch)
	}
	return c
}

// Commit queues no on its shard and waits until its batch is committed.
// It returns nil when the batch committed (no.Outcome says what became of
// this order), the commit error otherwise. ctx only bounds the wait.
func (c *Committer) Commit(ctx context.Context, no *NewOrder) error {
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return ErrClosed
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(no.Order.ID))
	req := commitReq{no: no, done: make(chan error, 1)}
	c.shards[int(h.Sum32()%uint32(len(c.shards)))] <- req
	c.mu.RUnlock()
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		// The batch goes on; the order may still be committed. The
		// channel's retry finds it through idempotency.
		return ctx.Err()
	}
}

func (c *Committer) loop(ch chan commitReq) {
	defer c.wg.Done()
	batch := make([]commitReq, 0, c.cfg.MaxBatch)
	for {
		first, ok := <-ch
		if !ok {
			return
		}
		batch = append(batch[:0], first)
		// Take what is already queued, then wait up to Window for more.
	drain:
		for len(batch) < c.cfg.MaxBatch {
			select {
			case r, ok := <-ch:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		if c.cfg.Window > 0 && len(batch) < c.cfg.MaxBatch {
			timer := time.NewTimer(c.cfg.Window)
		gather:
			for len(batch) < c.cfg.MaxBatch {
				select {
				case r, ok := <-ch:
					if !ok {
						break gather
					}
					batch = append(batch, r)
				case <-timer.C:
					break gather
				}
			}
			timer.Stop()
		}
		c.flush(batch)
	}
}

func (c *Committer) flush(batch []commitReq) {
	orders := make([]*NewOrder, len(batch))
	for i, r := range batch {
		orders[i] = r.no
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	start := time.Now()
	err := c.store.CommitOrders(ctx, orders)
	cancel()
	c.commitTime.Observe(time.Since(start).Seconds())
	c.batchSize.Observe(float64(len(batch)))
	if err != nil {
		c.failures.Inc()
	}
	for _, r := range batch {
		r.done <- err
	}
}

// Close refuses new work, commits what is queued and waits.
func (c *Committer) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	for _, ch := range c.shards {
		close(ch)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// errCommitUnknown marks a commit whose outcome had to be resolved.
var errCommitUnknown = errors.New("oms: commit outcome unknown")
