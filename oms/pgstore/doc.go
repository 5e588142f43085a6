// Package pgstore is omsd's SQL store: a pgx pool, versioned migrations
// embedded in the binary, and every read and write of channels, nodes, the
// stock ledger, orders, shipments and the outbox.
//
// The same SQL runs on CockroachDB (production) and PostgreSQL 15 (local
// stand-in); it stays in the subset both accept: no sequences, no SERIAL,
// no hot monotonically increasing keys, TEXT/BIGINT/BOOL/JSONB/TIMESTAMPTZ
// /UUID/BYTEA columns only, INSERT ... ON CONFLICT, and explicit row locks.
//
// Transactions run through Store.Tx, which retries serialization failures
// (SQLSTATE 40001, and PostgreSQL's deadlock 40P01) with cockroach-go's
// crdb.ExecuteCtx around a function that begins a FRESH transaction on
// every attempt and returns the Commit error. crdbpgx.ExecuteTx is not used:
// on PostgreSQL it ignores the COMMIT error and retries inside one
// snapshot, where a retry can never succeed (ARCHITECTURE.md, storage rules).
package pgstore
