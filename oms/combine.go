package oms

import (
	"context"
	"sync"
)

// combiner runs concurrent calls as batches without a goroutine of its
// own: a caller that finds no batch running leads. The leader takes every
// call queued (up to max), runs them as one batch, answers them, and goes
// on until its own call is answered; then it hands the lead to the oldest
// call still queued. So while one batch runs, the calls that arrive gather
// into the next, and a batch's size follows the load (one call alone runs
// at once, at no extra latency).
type combiner[Q, R any] struct {
	max int
	run func(ctx context.Context, qs []Q) []R

	mu      sync.Mutex
	queue   []*combined[Q, R]
	leading bool
}

type combined[Q, R any] struct {
	q    Q
	r    R
	done chan struct{}
	lead chan struct{}
}

func newCombiner[Q, R any](limit int, run func(ctx context.Context, qs []Q) []R) *combiner[Q, R] {
	return &combiner[Q, R]{max: max(limit, 1), run: run}
}

// do runs q in a batch and returns its answer. The batch runs under the
// leader's ctx.
func (c *combiner[Q, R]) do(ctx context.Context, q Q) R {
	me := &combined[Q, R]{q: q, done: make(chan struct{}), lead: make(chan struct{}, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, me)
	if c.leading {
		c.mu.Unlock()
		select {
		case <-me.done:
			return me.r
		case <-me.lead: // the previous leader handed over; me is still queued
		}
		c.mu.Lock()
	}
	c.leading = true
	for {
		n := min(len(c.queue), c.max)
		batch := make([]*combined[Q, R], n)
		copy(batch, c.queue)
		c.queue = c.queue[n:]
		c.mu.Unlock()
		c.runBatch(ctx, batch)
		c.mu.Lock()
		select {
		case <-me.done:
			if len(c.queue) > 0 {
				c.queue[0].lead <- struct{}{}
			} else {
				c.leading = false
			}
			c.mu.Unlock()
			return me.r
		default:
		}
	}
}

// runBatch runs one batch and answers its calls (run returns one answer
// per call, in order).
func (c *combiner[Q, R]) runBatch(ctx context.Context, batch []*combined[Q, R]) {
	qs := make([]Q, len(batch))
	for i, b := range batch {
		qs[i] = b.q
	}
	rs := c.run(ctx, qs)
	for i, b := range batch {
		b.r = rs[i]
		close(b.done)
	}
}
