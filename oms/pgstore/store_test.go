package pgstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/omsd/omsd/deploy/localstack/stacktest"
)

// TestMain runs the tests, then parses every SQL text they sent with
// CockroachDB's parser (sqlsubset_test.go).
func TestMain(m *testing.M) { stacktest.Main(m, checkRecordedSQL) }

// openTest opens a store on a fresh database.
func openTest(t testing.TB) *Store {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: stacktest.Database(t), Tracer: testSQL})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// schema describes every column of the public schema.
func schema(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT table_name || '.' || column_name || ':' || data_type
		FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1`)
	if err != nil {
		t.Fatalf("schema: %v", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("schema: %v", err)
	}
	return out
}

func TestMigrationsAppliedTwiceChangeNothing(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Migrate(ctx)
	if err != nil {
		t.Fatalf("first migrate: %v", err)
	}
	if len(first) != len(ms) {
		t.Fatalf("got %d migrations applied on an empty database, want %d", len(first), len(ms))
	}
	before := schema(t, s)
	second, err := s.Migrate(ctx)
	if err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if len(second) != 0 {
		t.Errorf("got %v applied again, want none", second)
	}
	after := schema(t, s)
	if len(before) != len(after) {
		t.Fatalf("got %d columns after the second run, want %d", len(after), len(before))
	}
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("column %d: got %s, want %s", i, after[i], before[i])
		}
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) {
		t.Errorf("got %d rows in schema_migrations, want %d", n, len(ms))
	}
}

func TestConcurrentMigrationsApplyOnce(t *testing.T) {
	url := stacktest.Database(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	var total atomic.Int64
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(ctx, Config{URL: url, Tracer: testSQL})
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			applied, err := s.Migrate(ctx)
			if err != nil {
				errs <- err
				return
			}
			total.Add(int64(len(applied)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("migrate: %v", err)
	}
	ms, _ := Migrations()
	if got := total.Load(); got != int64(len(ms)) {
		t.Errorf("got %d migrations applied by 4 instances together, want %d", got, len(ms))
	}
}

// TestCommitTimeSerializationFailureIsRetriedNotLost builds a write skew
// at SERIALIZABLE: each transaction reads what the other writes, both write,
// and only then do they commit. PostgreSQL fails the second COMMIT with
// 40001 ("during commit attempt"). Tx must see that failure and run the
// transaction again, so both rows exist exactly once in the end.
func TestCommitTimeSerializationFailureIsRetriedNotLost(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, `CREATE TABLE oncall (doctor TEXT PRIMARY KEY, shift INT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	var wrote sync.WaitGroup
	wrote.Add(2)
	var attempts [2]atomic.Int64
	run := func(i int, reads, writes string) error {
		return s.Tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
			n := attempts[i].Add(1)
			var c int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM oncall WHERE doctor = $1`, reads).Scan(&c); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO oncall (doctor, shift) VALUES ($1, 1) ON CONFLICT (doctor) DO UPDATE SET shift = oncall.shift + 1`, writes); err != nil {
				return err
			}
			if n == 1 {
				// Both first attempts have written before either commits.
				wrote.Done()
				wrote.Wait()
			}
			return nil
		})
	}
	var mu sync.Mutex
	var seen []error
	s.onRetry = func(err error) { mu.Lock(); seen = append(seen, err); mu.Unlock() }
	before := s.TxStats()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs[0] = run(0, "bob", "alice") }()
	go func() { defer wg.Done(); errs[1] = run(1, "alice", "bob") }()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("transaction %d: %v", i, err)
		}
	}
	retried := attempts[0].Load() + attempts[1].Load() - 2
	if retried < 1 {
		t.Fatalf("got no retry, want the serialization failure at COMMIT to be seen and retried (attempts %d, %d)", attempts[0].Load(), attempts[1].Load())
	}
	// The metrics (omsd_db_transactions_total) count what happened.
	after := s.TxStats()
	if d := after.Committed - before.Committed; d != 2 {
		t.Errorf("TxStats: %d more committed, want 2", d)
	}
	if d := after.Serialization - before.Serialization; int64(d) != retried || after.Retried-before.Retried != d {
		t.Errorf("TxStats: %d more retried for serialization (%d in all), want %d", d, after.Retried-before.Retried, retried)
	}
	if after.Failed != before.Failed || after.Deadlock != before.Deadlock {
		t.Errorf("TxStats: failed %d -> %d, deadlock %d -> %d, want no change", before.Failed, after.Failed, before.Deadlock, after.Deadlock)
	}
	atCommit := false
	for _, err := range seen {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "40001" && strings.Contains(err.Error(), "pgstore: commit") {
			atCommit = true
		}
	}
	if !atCommit {
		t.Errorf("got retries for %v, want one for a 40001 returned by COMMIT", seen)
	}
	rows, err := s.pool.Query(ctx, `SELECT doctor, shift FROM oncall ORDER BY doctor`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Doctor string
		Shift  int
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	want := []row{{"alice", 1}, {"bob", 1}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got rows %v, want %v (each write applied exactly once)", got, want)
	}
}

// TestCommitErrorIsReturned shows the runner's own contract directly: a
// transaction whose COMMIT fails (here a deferred constraint) returns the
// error instead of reporting success.
func TestCommitErrorIsReturned(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	// CockroachDB has no deferrable constraints; this test only needs some
	// error that PostgreSQL raises at COMMIT.
	if _, err := s.pool.Exec(ctx, `-- PostgreSQL only (test): a foreign key checked at COMMIT
		CREATE TABLE parent (id INT PRIMARY KEY);
		CREATE TABLE child (id INT PRIMARY KEY, parent INT REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)`); err != nil {
		t.Fatal(err)
	}
	before := s.TxStats()
	err := s.Tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO child (id, parent) VALUES (1, 42)`)
		return err
	})
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23503" {
		t.Fatalf("got %v, want the foreign-key violation raised at COMMIT (23503)", err)
	}
	if after := s.TxStats(); after.Failed != before.Failed+1 || after.Committed != before.Committed || after.Retried != before.Retried {
		t.Errorf("TxStats %+v -> %+v, want one more failed and nothing else", before, after)
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM child`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("got %d child rows, want 0", n)
	}
}

func TestTxGivesUpOnContextEnd(t *testing.T) {
	s := openTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := s.Tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT pg_sleep(5)`)
		return err
	})
	if err == nil {
		t.Fatal("got nil, want the context error")
	}
}

// TestDeadlockIsRetriedAndCounted makes two transactions lock two rows in
// opposite orders. PostgreSQL ends one with a deadlock (40P01) after
// deadlock_timeout; Tx must run it again (both updates land once) and
// count the retry as a deadlock.
func TestDeadlockIsRetriedAndCounted(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, `CREATE TABLE pair (id INT PRIMARY KEY, n INT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO pair (id, n) VALUES (1, 0), (2, 0)`); err != nil {
		t.Fatal(err)
	}
	before := s.TxStats()
	var locked sync.WaitGroup
	locked.Add(2)
	var attempts [2]atomic.Int64
	run := func(i, first, second int) error {
		return s.Tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
			n := attempts[i].Add(1)
			if _, err := tx.Exec(ctx, `UPDATE pair SET n = n + 1 WHERE id = $1`, first); err != nil {
				return err
			}
			if n == 1 {
				// Each holds its first row before either asks for the second.
				locked.Done()
				locked.Wait()
			}
			_, err := tx.Exec(ctx, `UPDATE pair SET n = n + 1 WHERE id = $1`, second)
			return err
		})
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs[0] = run(0, 1, 2) }()
	go func() { defer wg.Done(); errs[1] = run(1, 2, 1) }()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("transaction %d: %v", i, err)
		}
	}
	after := s.TxStats()
	if d := after.Deadlock - before.Deadlock; d < 1 || after.Retried-before.Retried != d {
		t.Errorf("TxStats %+v -> %+v, want at least one retry counted as a deadlock and no other", before, after)
	}
	if d := after.Committed - before.Committed; d != 2 {
		t.Errorf("TxStats: %d more committed, want 2", d)
	}
	var sum int
	if err := s.pool.QueryRow(ctx, `SELECT sum(n) FROM pair`).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	if sum != 4 {
		t.Errorf("got sum %d, want 4 (each transaction's two updates applied once)", sum)
	}
}
