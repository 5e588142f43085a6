package main

import (
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/omsd/omsd/oms/pgstore"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
)

// The connection pools' own statistics, read at scrape time: pgxpool's
// Stat, go-redis's PoolStats and kafka-go's Writer.Stats.

func desc(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }

// pgPoolCollector exports omsd_pg_pool_*.
type pgPoolCollector struct {
	pool                                                                 *pgxpool.Pool
	acquired, idle, constructing, total, max                             *prometheus.Desc
	acquires, acquireSeconds, emptyAcquires, emptyWaitSeconds, cancelled *prometheus.Desc
	newConns, lifetimeDestroyed, idleDestroyed                           *prometheus.Desc
}

func newPGPoolCollector(pool *pgxpool.Pool) *pgPoolCollector {
	return &pgPoolCollector{
		pool:              pool,
		acquired:          desc("omsd_pg_pool_acquired_conns", "Database connections checked out of the pool now."),
		idle:              desc("omsd_pg_pool_idle_conns", "Idle database connections in the pool now."),
		constructing:      desc("omsd_pg_pool_constructing_conns", "Database connections being opened now."),
		total:             desc("omsd_pg_pool_total_conns", "Database connections in the pool now (acquired, idle and being opened)."),
		max:               desc("omsd_pg_pool_max_conns", "Most database connections the pool opens (-pg.max-conns)."),
		acquires:          desc("omsd_pg_pool_acquires_total", "Connections acquired from the database pool."),
		acquireSeconds:    desc("omsd_pg_pool_acquire_seconds_total", "Time spent acquiring database connections (divide by omsd_pg_pool_acquires_total for the mean)."),
		emptyAcquires:     desc("omsd_pg_pool_empty_acquires_total", "Acquires that found no idle connection and waited for one (a pool too small shows here)."),
		emptyWaitSeconds:  desc("omsd_pg_pool_empty_acquire_wait_seconds_total", "Time spent by the acquires that found the pool empty."),
		cancelled:         desc("omsd_pg_pool_canceled_acquires_total", "Acquires whose context ended before a connection came."),
		newConns:          desc("omsd_pg_pool_new_conns_total", "Database connections opened."),
		lifetimeDestroyed: desc("omsd_pg_pool_max_lifetime_destroyed_total", "Database connections closed for their age."),
		idleDestroyed:     desc("omsd_pg_pool_max_idle_destroyed_total", "Database connections closed for being idle too long."),
	}
}

func (c *pgPoolCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *pgPoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	n := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(c.acquired, float64(s.AcquiredConns()))
	g(c.idle, float64(s.IdleConns()))
	g(c.constructing, float64(s.ConstructingConns()))
	g(c.total, float64(s.TotalConns()))
	g(c.max, float64(s.MaxConns()))
	n(c.acquires, float64(s.AcquireCount()))
	n(c.acquireSeconds, s.AcquireDuration().Seconds())
	n(c.emptyAcquires, float64(s.EmptyAcquireCount()))
	n(c.emptyWaitSeconds, s.EmptyAcquireWaitTime().Seconds())
	n(c.cancelled, float64(s.CanceledAcquireCount()))
	n(c.newConns, float64(s.NewConnsCount()))
	n(c.lifetimeDestroyed, float64(s.MaxLifetimeDestroyCount()))
	n(c.idleDestroyed, float64(s.MaxIdleDestroyCount()))
}

// redisPoolCollector exports omsd_redis_pool_* (for a cluster client, the
// sum over the nodes' pools, as go-redis reports it).
type redisPoolCollector struct {
	rdb                                                  interface{ PoolStats() *redis.PoolStats }
	hits, misses, timeouts, waits, waitSeconds, unusable *prometheus.Desc
	total, idle, stale, pending                          *prometheus.Desc
}

func newRedisPoolCollector(rdb interface{ PoolStats() *redis.PoolStats }) *redisPoolCollector {
	return &redisPoolCollector{
		rdb:         rdb,
		hits:        desc("omsd_redis_pool_hits_total", "Times a free Redis connection was found in the pool."),
		misses:      desc("omsd_redis_pool_misses_total", "Times no free Redis connection was in the pool (one was opened or waited for)."),
		timeouts:    desc("omsd_redis_pool_timeouts_total", "Times waiting for a Redis connection timed out."),
		waits:       desc("omsd_redis_pool_waits_total", "Times a command waited for a Redis connection."),
		waitSeconds: desc("omsd_redis_pool_wait_seconds_total", "Time spent waiting for Redis connections."),
		unusable:    desc("omsd_redis_pool_unusable_total", "Times a pooled Redis connection was found unusable."),
		total:       desc("omsd_redis_pool_total_conns", "Redis connections in the pool now."),
		idle:        desc("omsd_redis_pool_idle_conns", "Idle Redis connections in the pool now."),
		stale:       desc("omsd_redis_pool_stale_conns_total", "Stale Redis connections removed from the pool."),
		pending:     desc("omsd_redis_pool_pending_requests", "Commands waiting for a Redis connection now."),
	}
}

func (c *redisPoolCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *redisPoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.rdb.PoolStats()
	if s == nil {
		return
	}
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	n := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	n(c.hits, float64(s.Hits))
	n(c.misses, float64(s.Misses))
	n(c.timeouts, float64(s.Timeouts))
	n(c.waits, float64(s.WaitCount))
	n(c.waitSeconds, float64(s.WaitDurationNs)/1e9)
	n(c.unusable, float64(s.Unusable))
	g(c.total, float64(s.TotalConns))
	g(c.idle, float64(s.IdleConns))
	n(c.stale, float64(s.StaleConns))
	g(c.pending, float64(s.PendingRequests))
}

// kafkaWriterCollector exports omsd_kafka_writer_*. kafka-go's
// Writer.Stats returns the counts since its previous call, so this
// collector, the only caller, adds them up.
type kafkaWriterCollector struct {
	w interface{ Stats() kafka.WriterStats }

	mu                                     sync.Mutex
	writes, messages, bytes, errors, retry int64
	batch, write, queue                    countSum // seconds
	batchMsgs, batchBytes                  countSum

	dWrites, dMessages, dBytes, dErrors, dRetries *prometheus.Desc
	dBatch, dWrite, dQueue                        *prometheus.Desc
	dBatchMsgs, dBatchBytes, dMaxAttempts         *prometheus.Desc
}

// countSum accumulates a summary's count and sum.
type countSum struct {
	count int64
	sum   float64
}

func newKafkaWriterCollector(w interface{ Stats() kafka.WriterStats }) *kafkaWriterCollector {
	return &kafkaWriterCollector{
		w:            w,
		dWrites:      desc("omsd_kafka_writer_writes_total", "Produce requests the Kafka writer sent."),
		dMessages:    desc("omsd_kafka_writer_messages_total", "Messages the Kafka writer wrote."),
		dBytes:       desc("omsd_kafka_writer_message_bytes_total", "Bytes of the messages the Kafka writer wrote."),
		dErrors:      desc("omsd_kafka_writer_errors_total", "Failed writes of the Kafka writer."),
		dRetries:     desc("omsd_kafka_writer_retries_total", "Write attempts the Kafka writer retried."),
		dBatch:       desc("omsd_kafka_writer_batch_seconds", "Time from a batch's first message to its write."),
		dWrite:       desc("omsd_kafka_writer_write_seconds", "Time a batch's produce request took."),
		dQueue:       desc("omsd_kafka_writer_batch_queue_seconds", "Time a batch waited in the writer's queue."),
		dBatchMsgs:   desc("omsd_kafka_writer_batch_messages", "Messages per batch written."),
		dBatchBytes:  desc("omsd_kafka_writer_batch_bytes", "Bytes per batch written."),
		dMaxAttempts: desc("omsd_kafka_writer_max_attempts", "Attempts the writer makes for a batch before it fails it."),
	}
}

func (c *kafkaWriterCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *kafkaWriterCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.w.Stats()
	c.mu.Lock()
	c.writes += s.Writes
	c.messages += s.Messages
	c.bytes += s.Bytes
	c.errors += s.Errors
	c.retry += s.Retries
	c.batch.count += s.BatchTime.Count
	c.batch.sum += s.BatchTime.Sum.Seconds()
	c.write.count += s.WriteTime.Count
	c.write.sum += s.WriteTime.Sum.Seconds()
	c.queue.count += s.BatchQueueTime.Count
	c.queue.sum += s.BatchQueueTime.Sum.Seconds()
	c.batchMsgs.count += s.BatchSize.Count
	c.batchMsgs.sum += float64(s.BatchSize.Sum)
	c.batchBytes.count += s.BatchBytes.Count
	c.batchBytes.sum += float64(s.BatchBytes.Sum)
	n := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	sum := func(d *prometheus.Desc, count int64, total float64) {
		ch <- prometheus.MustNewConstSummary(d, uint64(count), total, nil)
	}
	n(c.dWrites, c.writes)
	n(c.dMessages, c.messages)
	n(c.dBytes, c.bytes)
	n(c.dErrors, c.errors)
	n(c.dRetries, c.retry)
	sum(c.dBatch, c.batch.count, c.batch.sum)
	sum(c.dWrite, c.write.count, c.write.sum)
	sum(c.dQueue, c.queue.count, c.queue.sum)
	sum(c.dBatchMsgs, c.batchMsgs.count, c.batchMsgs.sum)
	sum(c.dBatchBytes, c.batchBytes.count, c.batchBytes.sum)
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.dMaxAttempts, prometheus.GaugeValue, float64(s.MaxAttempts))
}

// txCollector exports the store's transaction counts: how many
// read-write transactions committed or failed, and how many attempts were
// run again after a serialization failure or a deadlock (contention shows
// here before it shows in latency).
type txCollector struct {
	stats          func() pgstore.TxStats
	outcome, cause *prometheus.Desc
}

func newTxCollector(stats func() pgstore.TxStats) *txCollector {
	return &txCollector{
		stats: stats,
		outcome: prometheus.NewDesc("omsd_db_transactions_total",
			"Read-write database transactions by outcome: committed, failed (the error was returned), retried (an attempt that failed with a serialization failure or a deadlock and was run again).",
			[]string{"outcome"}, nil),
		cause: prometheus.NewDesc("omsd_db_transaction_retries_total",
			"Transaction attempts run again, by cause: serialization (SQLSTATE 40001) or deadlock (40P01).",
			[]string{"cause"}, nil),
	}
}

func (c *txCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *txCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	n := func(d *prometheus.Desc, v uint64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label)
	}
	n(c.outcome, s.Committed, "committed")
	n(c.outcome, s.Failed, "failed")
	n(c.outcome, s.Retried, "retried")
	n(c.cause, s.Serialization, "serialization")
	n(c.cause, s.Deadlock, "deadlock")
}
