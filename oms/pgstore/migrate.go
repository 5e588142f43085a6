package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migration is one versioned schema step.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations lists the embedded migrations in version order. Files are
// named NNNN_name.sql.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		num, rest, ok := strings.Cut(name, "_")
		if !ok || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("pgstore: bad migration file name %q", name)
		}
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("pgstore: bad migration version in %q: %w", name, err)
		}
		b, err := migrationFS.ReadFile("migrations/" + name)
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: strings.TrimSuffix(rest, ".sql"), SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Migrate applies every embedded migration not yet recorded in
// schema_migrations, each in its own transaction together with its record,
// and returns the versions it applied. Running it again applies nothing.
// Two omsd instances migrating at once are safe: the record's primary key
// makes the loser's transaction fail and its retry sees the version
// applied.
func (s *Store) Migrate(ctx context.Context) (_ []int, err error) {
	if _, err := s.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INT PRIMARY KEY,
		name TEXT NOT NULL,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil && !createdConcurrently(err) {
		return nil, fmt.Errorf("pgstore: create schema_migrations: %w", err)
	}
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	var applied []int
	defer func() {
		if err == nil {
			err = s.tune(ctx)
		}
	}()
	for _, m := range ms {
		did := false
		err := s.Tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
			did = false
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("pgstore: migration %d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
				return err
			}
			did = true
			return nil
		})
		if err != nil {
			if createdConcurrently(err) {
				continue // another instance applied it at the same moment
			}
			return applied, err
		}
		if did {
			applied = append(applied, m.Version)
		}
	}
	return applied, nil
}

// createdConcurrently reports the errors PostgreSQL raises when another
// session creates the same table at the same moment (its IF NOT EXISTS is
// not atomic): a unique violation on the catalog, or the type or table
// already existing.
func createdConcurrently(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "23505", "42710", "42P07":
		return true
	}
	return false
}

// tune applies settings that only PostgreSQL has and needs. The outbox is
// a queue: every row is inserted, updated twice (claimed, sent) and never
// read again, and the relay's claim walks the dead index entries those
// updates leave until VACUUM removes them. PostgreSQL's default
// autovacuum waits for 20% of the table to be dead; for the outbox it
// runs every 5,000 dead rows without throttling. CockroachDB has no
// VACUUM (its MVCC garbage is collected by range) and no such storage
// parameters, so nothing is done there.
func (s *Store) tune(ctx context.Context) error {
	var version string
	if err := s.pool.QueryRow(ctx, `SELECT version()`).Scan(&version); err != nil {
		return fmt.Errorf("pgstore: version: %w", err)
	}
	if strings.Contains(version, "CockroachDB") {
		return nil
	}
	_, err := s.pool.Exec(ctx, `ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
		autovacuum_vacuum_cost_delay = 0, autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000)`)
	if err != nil {
		return fmt.Errorf("pgstore: tune outbox autovacuum: %w", err)
	}
	return nil
}
