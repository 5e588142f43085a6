package pgstore

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/omsd/omsd/oms"
)

// claimTx: claims take row locks (FOR UPDATE SKIP LOCKED) and need no
// snapshot isolation; under SERIALIZABLE two relays scanning the same index
// range would fail each other for nothing. CockroachDB runs it as
// SERIALIZABLE unless read committed is enabled, which is also correct.
var claimTx = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// ClaimOutbox claims up to limit unsent outbox rows for one relay until
// leaseUntil, oldest first (created_at, seq), and returns them in that
// order. Rows claimed by another relay whose lease has not ended, and rows
// locked by a claim in progress, are skipped (FOR UPDATE SKIP LOCKED).
//
// Per-key order across relays: a row is only claimed if every earlier
// unsent row of the same topic and key is claimed in the same batch. So a
// relay never publishes an event of a key while an earlier one of that key
// waits in another relay's hands (or in a lease that has not expired
// yet), and events of one key reach Kafka in (created_at, seq) order even
// with several relays.
func (s *Store) ClaimOutbox(ctx context.Context, now, leaseUntil time.Time, limit int) ([]oms.OutboxEvent, error) {
	return s.ClaimOutboxSince(ctx, time.Time{}, now, leaseUntil, limit)
}

// ClaimOutboxSince is ClaimOutbox over the rows created at or after since.
// Sent rows stay in the unsent index as dead entries until VACUUM, and a
// claim from the start of the index walks all of them; a relay that keeps a
// low-water mark skips them (and sweeps from the start now and then for
// rows that committed late).
func (s *Store) ClaimOutboxSince(ctx context.Context, since, now, leaseUntil time.Time, limit int) ([]oms.OutboxEvent, error) {
	var out []oms.OutboxEvent
	err := s.TxWith(ctx, claimTx, func(ctx context.Context, tx pgx.Tx) error {
		out = out[:0]
		rows, err := tx.Query(ctx, `SELECT id::text, topic, msg_key, seq, payload::text, created_at FROM outbox
			WHERE sent_at IS NULL AND (claimed_until IS NULL OR claimed_until < $1) AND created_at >= $3
			ORDER BY created_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED`, now, limit, since)
		if err != nil {
			return fmt.Errorf("pgstore: claim outbox: %w", err)
		}
		var cand []oms.OutboxEvent
		for rows.Next() {
			var e oms.OutboxEvent
			var payload string
			if err := rows.Scan(&e.ID, &e.Topic, &e.Key, &e.Seq, &payload, &e.At); err != nil {
				rows.Close()
				return err
			}
			e.Payload = []byte(payload)
			cand = append(cand, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("pgstore: claim outbox: %w", err)
		}
		if len(cand) == 0 {
			return nil
		}
		keep, err := keyHeads(ctx, tx, cand)
		if err != nil {
			return err
		}
		if len(keep) == 0 {
			return nil
		}
		ids := make([]string, len(keep))
		for i, e := range keep {
			ids[i] = e.ID
		}
		if _, err := tx.Exec(ctx, `UPDATE outbox SET claimed_until = $2 WHERE id = ANY($1::uuid[])`, ids, leaseUntil); err != nil {
			return fmt.Errorf("pgstore: claim outbox: %w", err)
		}
		out = keep
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

type topicKey struct{ topic, key string }

type rowPos struct {
	id  string
	at  time.Time
	seq int64
}

func before(a, b rowPos) bool {
	if !a.at.Equal(b.at) {
		return a.at.Before(b.at)
	}
	if a.seq != b.seq {
		return a.seq < b.seq
	}
	return a.id < b.id
}

// keyHeads keeps, per (topic, key), the candidates that form an unbroken
// prefix of that key's unsent rows: a candidate preceded by an unsent row
// of its key that is not a candidate is dropped, with every later one of
// its key.
func keyHeads(ctx context.Context, tx pgx.Tx, cand []oms.OutboxEvent) ([]oms.OutboxEvent, error) {
	mine := make(map[string]bool, len(cand))
	keys := map[string]bool{}
	var last time.Time
	for _, e := range cand {
		mine[e.ID] = true
		keys[e.Key] = true
		if e.At.After(last) {
			last = e.At
		}
	}
	keyList := make([]string, 0, len(keys))
	for k := range keys {
		keyList = append(keyList, k)
	}
	rows, err := tx.Query(ctx, `SELECT id::text, topic, msg_key, seq, created_at FROM outbox
		WHERE sent_at IS NULL AND msg_key = ANY($1) AND created_at <= $2`, keyList, last)
	if err != nil {
		return nil, fmt.Errorf("pgstore: outbox key order: %w", err)
	}
	all := map[topicKey][]rowPos{}
	for rows.Next() {
		var p rowPos
		var tk topicKey
		if err := rows.Scan(&p.id, &tk.topic, &tk.key, &p.seq, &p.at); err != nil {
			rows.Close()
			return nil, err
		}
		all[tk] = append(all[tk], p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: outbox key order: %w", err)
	}
	ok := make(map[string]bool, len(cand))
	for _, ps := range all {
		sort.Slice(ps, func(i, j int) bool { return before(ps[i], ps[j]) })
		for _, p := range ps {
			if !mine[p.id] {
				break // an earlier row of this key is elsewhere: stop here
			}
			ok[p.id] = true
		}
	}
	keep := cand[:0:0]
	for _, e := range cand {
		if ok[e.ID] {
			keep = append(keep, e)
		}
	}
	return keep, nil
}

// MarkOutboxSent records that the rows were published.
func (s *Store) MarkOutboxSent(ctx context.Context, ids []string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `UPDATE outbox SET sent_at = $2, claimed_until = NULL WHERE id = ANY($1::uuid[])`, ids, at); err != nil {
		return fmt.Errorf("pgstore: mark outbox sent: %w", err)
	}
	return nil
}

// UnclaimOutbox gives claimed rows back before their lease ends (their
// publication failed), so that the next claim retries them at once.
func (s *Store) UnclaimOutbox(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `UPDATE outbox SET claimed_until = NULL WHERE id = ANY($1::uuid[]) AND sent_at IS NULL`, ids); err != nil {
		return fmt.Errorf("pgstore: unclaim outbox: %w", err)
	}
	return nil
}

// OldestUnsentOutbox returns the creation time of the oldest unsent row,
// and false when every row is sent.
func (s *Store) OldestUnsentOutbox(ctx context.Context) (time.Time, bool, error) {
	var at *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT min(created_at) FROM outbox WHERE sent_at IS NULL`).Scan(&at); err != nil {
		return time.Time{}, false, fmt.Errorf("pgstore: oldest unsent: %w", err)
	}
	if at == nil {
		return time.Time{}, false, nil
	}
	return *at, true, nil
}
