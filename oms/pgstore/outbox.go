package pgstore

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/omsd/omsd/oms"
)

// claimTx: claims take row locks (FOR UPDATE SKIP LOCKED) and need no
// snapshot isolation; under SERIALIZABLE two relays scanning the same index
// range would fail each other for nothing. CockroachDB runs it as
// SERIALIZABLE unless read committed is enabled, which is also correct.
var claimTx = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// The outbox is read by the database's clock only: enqueued_at is now() of
// the inserting transaction (a column default, so no writer can get it
// wrong), and leases are compared with now() of the claim. created_at is
// the event's own time, written by the instance that made the event; it is
// the Kafka message time and breaks ties between the events of one
// transaction, nothing else.
//
// A row is pending while it is neither sent nor dead.

// ClaimOutbox claims up to limit pending rows for lease and returns them,
// each key's rows in their order (see ClaimOutboxWindow). It looks at every
// pending row, however old.
func (s *Store) ClaimOutbox(ctx context.Context, lease time.Duration, limit int) ([]oms.OutboxEvent, error) {
	evs, _, err := s.ClaimOutboxWindow(ctx, time.Time{}, 0, lease, limit)
	return evs, err
}

// ClaimOutboxWindow claims up to limit pending rows for one relay for lease
// (database time) and returns them grouped by (topic, key), each key's rows
// in (seq, created_at, id) order: seq is the aggregate's version, which
// grows with each committed transaction of the aggregate, so a key's order
// never depends on an instance's clock.
//
// Which rows it looks at: those enqueued at or after from, and, when
// lookback > 0, within lookback of the database's now(). The oldest of
// them (by enqueued_at) are candidates; rows leased to another relay, or
// locked by a claim in progress, are skipped (FOR UPDATE SKIP LOCKED).
//
// Per-key order across relays: for each candidate's key, the key's pending
// rows are read in order and the claim takes the unbroken prefix of those
// it can lock: a row whose predecessor is leased to another relay is left
// alone, and a predecessor that no relay holds is claimed with it (even if
// it lies outside the window). So no relay publishes an event of a key
// while an earlier one of that key waits elsewhere.
//
// next is where a relay's next claim can start (from): the enqueued_at of
// the oldest candidate left unclaimed, or else of the newest candidate;
// zero when there was no candidate.
func (s *Store) ClaimOutboxWindow(ctx context.Context, from time.Time, lookback, lease time.Duration, limit int) (batch []oms.OutboxEvent, next time.Time, err error) {
	if limit <= 0 {
		return nil, time.Time{}, nil
	}
	if lease <= 0 {
		return nil, time.Time{}, fmt.Errorf("pgstore: claim outbox: lease must be positive")
	}
	q := `SELECT id::text, topic, msg_key, enqueued_at FROM outbox
		WHERE sent_at IS NULL AND dead_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())
			AND enqueued_at >= $1`
	args := []any{from, limit}
	if lookback > 0 {
		q += ` AND enqueued_at >= now() - $3::float8 * interval '1 second'`
		args = append(args, lookback.Seconds())
	}
	q += ` ORDER BY enqueued_at LIMIT $2 FOR UPDATE SKIP LOCKED`
	err = s.TxWith(ctx, claimTx, func(ctx context.Context, tx pgx.Tx) error {
		batch, next = nil, time.Time{}
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("pgstore: claim outbox: %w", err)
		}
		var cand []candidate
		for rows.Next() {
			var c candidate
			if err := rows.Scan(&c.id, &c.key.topic, &c.key.key, &c.enqueued); err != nil {
				rows.Close()
				return err
			}
			cand = append(cand, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("pgstore: claim outbox: %w", err)
		}
		if len(cand) == 0 {
			return nil
		}
		taken, err := keyPrefixes(ctx, tx, cand, limit)
		if err != nil {
			return err
		}
		next = nextFrom(cand, taken)
		if len(taken) == 0 {
			return nil
		}
		ids := make([]string, len(taken))
		for i, r := range taken {
			ids[i] = r.id
		}
		rows, err = tx.Query(ctx, `UPDATE outbox SET claimed_until = now() + $2::float8 * interval '1 second'
			WHERE id = ANY($1::uuid[]) RETURNING id::text, payload::text`, ids, lease.Seconds())
		if err != nil {
			return fmt.Errorf("pgstore: claim outbox: %w", err)
		}
		payloads := make(map[string]string, len(ids))
		for rows.Next() {
			var id, p string
			if err := rows.Scan(&id, &p); err != nil {
				rows.Close()
				return err
			}
			payloads[id] = p
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("pgstore: claim outbox: %w", err)
		}
		out := make([]oms.OutboxEvent, 0, len(taken))
		for _, r := range taken {
			p, ok := payloads[r.id]
			if !ok {
				return fmt.Errorf("pgstore: claim outbox: row %s vanished under its lock", r.id)
			}
			out = append(out, oms.OutboxEvent{ID: r.id, Topic: r.key.topic, Key: r.key.key, Seq: r.seq, Payload: []byte(p), At: r.at})
		}
		batch = out
		return nil
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	return batch, next, nil
}

type topicKey struct{ topic, key string }

// candidate is a row the window scan locked.
type candidate struct {
	id       string
	key      topicKey
	enqueued time.Time
}

// keyRow is a pending row of a candidate's key.
type keyRow struct {
	id     string
	key    topicKey
	seq    int64
	at     time.Time // created_at
	leased bool      // leased to a relay until later than now()
}

// keyPrefixes returns, key by key (in the order the keys first appear among
// the candidates), the unbroken prefix of each key's pending rows, up to
// its last candidate, that this claim holds: candidates, and predecessors
// outside the window that no relay holds (locked here). At most limit rows
// in all.
func keyPrefixes(ctx context.Context, tx pgx.Tx, cand []candidate, limit int) ([]keyRow, error) {
	mine := make(map[string]bool, len(cand))
	var order []topicKey
	cands := map[topicKey]int{}
	for _, c := range cand {
		mine[c.id] = true
		if cands[c.key] == 0 {
			order = append(order, c.key)
		}
		cands[c.key]++
	}
	topics := make([]string, len(order))
	keys := make([]string, len(order))
	for i, k := range order {
		topics[i], keys[i] = k.topic, k.key
	}
	rows, err := tx.Query(ctx, `SELECT k.t, k.k, o.id::text, o.seq, o.created_at, coalesce(o.claimed_until >= now(), false)
		FROM unnest($1::text[], $2::text[]) AS k(t, k),
		LATERAL (SELECT id, seq, created_at, claimed_until FROM outbox
			WHERE topic = k.t AND msg_key = k.k AND sent_at IS NULL AND dead_at IS NULL
			ORDER BY seq, created_at, id LIMIT $3) AS o`, topics, keys, limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: outbox key order: %w", err)
	}
	byKey := map[topicKey][]keyRow{}
	for rows.Next() {
		var r keyRow
		if err := rows.Scan(&r.key.topic, &r.key.key, &r.id, &r.seq, &r.at, &r.leased); err != nil {
			rows.Close()
			return nil, err
		}
		byKey[r.key] = append(byKey[r.key], r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: outbox key order: %w", err)
	}
	for _, rs := range byKey {
		sort.SliceStable(rs, func(i, j int) bool { return rowBefore(rs[i], rs[j]) })
	}
	// Each key's rows up to its last candidate; the predecessors among them
	// that no relay holds are locked, unless a claim in progress has them.
	last := map[topicKey]int{}
	var extra []string
	for _, k := range order {
		rs := byKey[k]
		n, listed := 0, 0
		for i, r := range rs {
			if mine[r.id] {
				n, listed = i+1, listed+1
			}
		}
		if len(rs) == limit && listed < cands[k] {
			// The key has more pending rows than were read, and a
			// candidate lies beyond them: every row read precedes it.
			n = len(rs)
		}
		last[k] = n
		for _, r := range rs[:n] {
			if mine[r.id] {
				continue
			}
			if r.leased {
				break
			}
			extra = append(extra, r.id)
		}
	}
	if len(extra) > 0 {
		rows, err := tx.Query(ctx, `SELECT id::text FROM outbox WHERE id = ANY($1::uuid[])
			AND sent_at IS NULL AND dead_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())
			FOR UPDATE SKIP LOCKED`, extra)
		if err != nil {
			return nil, fmt.Errorf("pgstore: outbox key order: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			mine[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("pgstore: outbox key order: %w", err)
		}
	}
	var out []keyRow
	for _, k := range order {
		for _, r := range byKey[k][:last[k]] {
			if !mine[r.id] || len(out) >= limit {
				break // an earlier row of this key is elsewhere: stop here
			}
			out = append(out, r)
		}
	}
	return out, nil
}

func rowBefore(a, b keyRow) bool {
	if a.seq != b.seq {
		return a.seq < b.seq
	}
	if !a.at.Equal(b.at) {
		return a.at.Before(b.at)
	}
	return a.id < b.id
}

// nextFrom is the start of the next claim's window: the oldest candidate
// not taken, or else the newest candidate.
func nextFrom(cand []candidate, taken []keyRow) time.Time {
	got := make(map[string]bool, len(taken))
	for _, r := range taken {
		got[r.id] = true
	}
	var next time.Time
	for _, c := range cand { // in enqueued_at order
		if !got[c.id] {
			return c.enqueued
		}
		next = c.enqueued
	}
	return next
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
// publication failed for a reason not their own, such as a broker out of
// reach), so that the next claim retries them at once; their attempts are
// not counted. It returns the oldest enqueued_at among them (zero if none
// was given back), for the relay's position.
func (s *Store) UnclaimOutbox(ctx context.Context, ids []string) (time.Time, error) {
	if len(ids) == 0 {
		return time.Time{}, nil
	}
	var oldest *time.Time
	if err := s.pool.QueryRow(ctx, `WITH u AS (UPDATE outbox SET claimed_until = NULL
			WHERE id = ANY($1::uuid[]) AND sent_at IS NULL RETURNING enqueued_at)
		SELECT min(enqueued_at) FROM u`, ids).Scan(&oldest); err != nil {
		return time.Time{}, fmt.Errorf("pgstore: unclaim outbox: %w", err)
	}
	if oldest == nil {
		return time.Time{}, nil
	}
	return *oldest, nil
}

// maxOutboxError bounds the stored error text.
const maxOutboxError = 1000

// FailOutbox records that the broker refused the rows: each one's attempts
// grow by one and reason is kept as its last error. A row is set aside as
// dead (dead_at; no longer pending: it blocks no later row of its key and
// is never retried) when permanent is set or its attempts reach
// maxAttempts. The others stay held, by nobody, for a backoff that doubles
// with each attempt from retryBase up to retryMax (database time), so that
// the rows of their key behind them wait too. It returns the ids set aside
// and the oldest enqueued_at of the others (zero if none), for the relay's
// position.
func (s *Store) FailOutbox(ctx context.Context, ids []string, reason string, permanent bool, maxAttempts int, retryBase, retryMax time.Duration) ([]string, time.Time, error) {
	if len(ids) == 0 {
		return nil, time.Time{}, nil
	}
	reason = strings.ToValidUTF8(reason, "?")
	for len(reason) > maxOutboxError {
		_, n := utf8.DecodeLastRuneInString(reason)
		reason = reason[:len(reason)-n]
	}
	rows, err := s.pool.Query(ctx, `UPDATE outbox SET attempts = attempts + 1, last_error = $2,
			dead_at = CASE WHEN $3 OR attempts + 1 >= $4 THEN now() ELSE NULL END,
			claimed_until = CASE WHEN $3 OR attempts + 1 >= $4 THEN NULL
				ELSE now() + least($5::float8 * power(2::float8, least(attempts, 30)::float8), $6::float8) * interval '1 second' END
		WHERE id = ANY($1::uuid[]) AND sent_at IS NULL AND dead_at IS NULL
		RETURNING id::text, dead_at IS NOT NULL, enqueued_at`, ids, reason, permanent, maxAttempts, retryBase.Seconds(), retryMax.Seconds())
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("pgstore: fail outbox: %w", err)
	}
	defer rows.Close()
	var dead []string
	var oldest time.Time
	for rows.Next() {
		var id string
		var isDead bool
		var at time.Time
		if err := rows.Scan(&id, &isDead, &at); err != nil {
			return nil, time.Time{}, err
		}
		if isDead {
			dead = append(dead, id)
		} else if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	if err := rows.Err(); err != nil {
		return nil, time.Time{}, fmt.Errorf("pgstore: fail outbox: %w", err)
	}
	return dead, oldest, nil
}

// OldestUnsentOutbox returns the creation time of the oldest pending row,
// and false when no row is pending (every row is sent or dead).
func (s *Store) OldestUnsentOutbox(ctx context.Context) (time.Time, bool, error) {
	var at *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT min(created_at) FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL`).Scan(&at); err != nil {
		return time.Time{}, false, fmt.Errorf("pgstore: oldest unsent: %w", err)
	}
	if at == nil {
		return time.Time{}, false, nil
	}
	return *at, true, nil
}

// OutboxBacklog returns how long the oldest pending row has waited since
// it was enqueued, by the database's clock (0 when none is pending), and
// how many rows are dead.
func (s *Store) OutboxBacklog(ctx context.Context) (lag time.Duration, dead int64, err error) {
	var secs *float64
	if err := s.pool.QueryRow(ctx, `SELECT
			(SELECT extract(epoch FROM now() - min(enqueued_at))::float8 FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL),
			(SELECT count(*) FROM outbox WHERE dead_at IS NOT NULL AND sent_at IS NULL)`).Scan(&secs, &dead); err != nil {
		return 0, 0, fmt.Errorf("pgstore: outbox backlog: %w", err)
	}
	if secs != nil && *secs > 0 {
		lag = time.Duration(*secs * float64(time.Second))
	}
	return lag, dead, nil
}

// DeadOutbox lists up to limit dead rows, oldest first: id, topic, key,
// attempts and last error (no payload), for operators. A dead row is sent
// again by clearing it: UPDATE outbox SET dead_at = NULL, attempts = 0
// WHERE id = ...
func (s *Store) DeadOutbox(ctx context.Context, limit int) ([]DeadOutboxRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT id::text, topic, msg_key, seq, attempts, coalesce(last_error, ''), dead_at
		FROM outbox WHERE dead_at IS NOT NULL AND sent_at IS NULL ORDER BY dead_at LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: dead outbox: %w", err)
	}
	defer rows.Close()
	var out []DeadOutboxRow
	for rows.Next() {
		var r DeadOutboxRow
		if err := rows.Scan(&r.ID, &r.Topic, &r.Key, &r.Seq, &r.Attempts, &r.Error, &r.DeadAt); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// DeadOutboxRow is an outbox row the relay gave up on.
type DeadOutboxRow struct {
	ID, Topic, Key string
	Seq            int64
	Attempts       int
	Error          string
	DeadAt         time.Time
}
