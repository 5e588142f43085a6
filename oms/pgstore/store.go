package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/cockroach-go/v2/crdb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures the pool. The zero value means defaults.
type Config struct {
	// URL is the postgres:// connection string (required).
	URL string
	// MaxConns caps the pool; default 32.
	MaxConns int32
	// MaxRetries bounds serialization-failure retries per transaction;
	// default 20.
	MaxRetries int
	// Tracer, if set, sees every statement the pool's connections send
	// (the tests record them to parse them with CockroachDB's parser).
	Tracer pgx.QueryTracer
}

// Store is the SQL store.
type Store struct {
	pool       *pgxpool.Pool
	maxRetries int
	// Now is the clock; tests replace it.
	Now func() time.Time
	// onRetry, if set, sees every error that made Tx retry (tests).
	onRetry func(error)
	stats   txCounters
}

// TxStats counts the read-write transactions run through Tx since the
// store was opened. Attempts = Committed + Failed + Retried: a retried
// attempt is one that failed with a serialization failure or a deadlock
// and was run again.
type TxStats struct {
	Committed, Failed       uint64
	Retried                 uint64 // all retried attempts
	Serialization, Deadlock uint64 // retried attempts by cause (40001, 40P01)
}

type txCounters struct {
	committed, failed, serialization, deadlock atomic.Uint64
}

// TxStats returns the transaction counts (read at scrape time by omsd's
// metrics: omsd_db_transactions_total).
func (s *Store) TxStats() TxStats {
	t := TxStats{
		Committed: s.stats.committed.Load(), Failed: s.stats.failed.Load(),
		Serialization: s.stats.serialization.Load(), Deadlock: s.stats.deadlock.Load(),
	}
	t.Retried = t.Serialization + t.Deadlock
	return t
}

// Open connects a pool and checks that the server answers.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.URL == "" {
		return nil, errors.New("pgstore: database URL is empty")
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("pgstore: parse URL: %w", err)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 32
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 20
	}
	pc.MaxConns = cfg.MaxConns
	if cfg.Tracer != nil {
		pc.ConnConfig.Tracer = cfg.Tracer
	}
	// A transaction left open by a frozen process (its connection still up)
	// is ended by the server: the reconcilers release the holds of an
	// instance whose stock lease lapsed, and nothing that instance began
	// may commit after that (inventory.ReconcilerConfig.OwnerSettle).
	if _, ok := pc.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
		pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SET idle_in_transaction_session_timeout = '5s'")
			return err
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connect: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: ping: %w", err)
	}
	return &Store{pool: pool, maxRetries: cfg.MaxRetries, Now: time.Now}, nil
}

// Pool exposes the pool to benchmarks and to the health check.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// TxOptions of every read-write transaction. SERIALIZABLE is CockroachDB's
// only real isolation and makes PostgreSQL behave the same way (write skew
// becomes a 40001 that Tx retries).
var TxOptions = pgx.TxOptions{IsoLevel: pgx.Serializable}

// Tx runs fn in a transaction and commits it, retrying the whole attempt in
// a new transaction on a serialization failure or a deadlock. fn must be
// safe to run several times and must wrap errors with %w only, so that the
// SQLSTATE stays visible. The Commit error is returned, never dropped: a
// failure at COMMIT is retried or reported, never lost.
func (s *Store) Tx(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return s.TxWith(ctx, TxOptions, fn)
}

// TxWith is Tx with explicit transaction options.
func (s *Store) TxWith(ctx context.Context, opts pgx.TxOptions, fn func(ctx context.Context, tx pgx.Tx) error) error {
	attempt := 0
	var lastCode string
	err := crdb.ExecuteCtx(crdb.WithMaxRetries(ctx, s.maxRetries), func(ctx context.Context, _ ...any) error {
		if attempt > 0 {
			// crdb runs fn again only after a retryable failure: count
			// the previous attempt as retried, by its cause.
			s.countRetried(lastCode)
			// Jittered backoff so that two conflicting transactions do not
			// collide again at once.
			d := time.Duration(rand.Int64N(int64(time.Millisecond)*int64(min(attempt, 10)))) + 100*time.Microsecond
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
		}
		attempt++
		err := retryable(runTx(ctx, s.pool, opts, fn))
		if err != nil {
			lastCode = sqlState(err)
			if s.onRetry != nil {
				s.onRetry(err)
			}
		}
		return err
	})
	if err != nil {
		s.stats.failed.Add(1)
	} else {
		s.stats.committed.Add(1)
	}
	return err
}

func (s *Store) countRetried(code string) {
	if code == "40P01" {
		s.stats.deadlock.Add(1)
	} else {
		s.stats.serialization.Add(1)
	}
}

// sqlState is the SQLSTATE behind err: a PostgreSQL error's own code
// (40P01 for a deadlock, even when wrapped as retryable), else "".
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	var c interface{ SQLState() string }
	if errors.As(err, &c) {
		return c.SQLState()
	}
	return ""
}

func runTx(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(ctx context.Context, tx pgx.Tx) error) error {
	tx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("pgstore: begin: %w", err)
	}
	if err := fn(ctx, tx); err != nil {
		if rbErr := tx.Rollback(ctx); rbErr != nil && !errors.Is(rbErr, pgx.ErrTxClosed) {
			return errors.Join(err, rbErr)
		}
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: commit: %w", err)
	}
	return nil
}

// retryErr makes a PostgreSQL deadlock (40P01) retryable by crdb, which
// only retries 40001.
type retryErr struct{ err error }

func (e retryErr) Error() string    { return e.err.Error() }
func (e retryErr) Unwrap() error    { return e.err }
func (e retryErr) SQLState() string { return "40001" }

func retryable(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "40P01" {
		return retryErr{err}
	}
	return err
}

// IsUniqueViolation reports a 23505.
func IsUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}
