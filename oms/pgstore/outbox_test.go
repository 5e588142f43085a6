package pgstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
)

// A key's rows come out in seq order even when their created_at (written
// by instances whose clocks disagree) and their enqueue order say
// otherwise, and a claim that sees only the later rows of a key takes the
// earlier ones no relay holds with them.
func TestClaimOutboxOrdersEachKeyBySeqNotByClocks(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	want := map[int64]string{}
	// Enqueued seq 5 first; created_at runs backwards against seq by
	// seconds, as an instance whose clock is ahead would write it.
	for seq := int64(5); seq >= 1; seq-- {
		want[seq] = outboxRow(t, s, "K", seq, t0.Add(-time.Duration(seq)*time.Second))
	}
	got, err := s.ClaimOutbox(ctx, time.Minute, 2)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids(got)) != fmt.Sprint([]string{want[1], want[2]}) {
		t.Fatalf("got %v, want seq 1 and 2 (%s %s)", ids(got), want[1], want[2])
	}
	rest, err := s.ClaimOutbox(ctx, time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 0 {
		t.Fatalf("got %v while seq 1 and 2 are leased, want nothing", ids(rest))
	}
	if err := s.MarkOutboxSent(ctx, ids(got), time.Now()); err != nil {
		t.Fatal(err)
	}
	rest, err = s.ClaimOutbox(ctx, time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids(rest)) != fmt.Sprint([]string{want[3], want[4], want[5]}) {
		t.Fatalf("got %v, want seq 3, 4, 5", ids(rest))
	}
	for i, e := range rest {
		if e.Seq != int64(i+3) {
			t.Errorf("row %d has seq %d, want %d", i, e.Seq, i+3)
		}
	}
}

// A row whose transaction began before the relay's position and committed
// after it is behind the position: the claim from the position alone
// misses it, the claim over the lookback (database time) finds it, however
// old its created_at.
func TestClaimOutboxLookbackFindsALateCommitByDatabaseTime(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	// now() of this transaction is its start: enqueued_at is earlier than
	// the rows committed meanwhile.
	if _, err := tx.Exec(ctx, `SELECT now()`); err != nil {
		t.Fatal(err)
	}
	late := uuid.NewString()
	if _, err := tx.Exec(ctx, `INSERT INTO outbox (id, topic, msg_key, seq, payload, created_at) VALUES ($1, 'oms.orders', 'L', 1, '{}', $2)`,
		late, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // the database clock moves on
	early := outboxRow(t, s, "E", 1, time.Now())
	got, next, err := s.ClaimOutboxWindow(ctx, time.Time{}, 0, time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != early || next.IsZero() {
		t.Fatalf("got %v next %v, want only the committed row and a position", ids(got), next)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got, _, err = s.ClaimOutboxWindow(ctx, next, 0, time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("from the position: got %v, want nothing (the late row is behind it)", ids(got))
	}
	got, _, err = s.ClaimOutboxWindow(ctx, time.Time{}, 15*time.Second, time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != late {
		t.Fatalf("over the lookback: got %v, want the late row %s", ids(got), late)
	}
}

// A row the broker keeps refusing is set aside after maxAttempts (or at
// once when the refusal is permanent); a dead row blocks no later row of
// its key and is counted.
func TestFailOutboxSetsRowsAsideAndTheyBlockNothing(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	now := time.Now()
	a1 := outboxRow(t, s, "A", 1, now)
	a2 := outboxRow(t, s, "A", 2, now)
	b1 := outboxRow(t, s, "B", 1, now)
	claim := func(want ...string) {
		t.Helper()
		got, err := s.ClaimOutbox(ctx, time.Minute, 10)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ids(got)) != fmt.Sprint(want) {
			t.Fatalf("claimed %v, want %v", ids(got), want)
		}
	}
	claim(a1, a2, b1)
	if _, err := s.UnclaimOutbox(ctx, []string{a2, b1}); err != nil {
		t.Fatal(err)
	}
	// The first failure holds a1 for its backoff, and a2 behind it.
	dead, oldest, err := s.FailOutbox(ctx, []string{a1}, "message too large", false, 2, time.Hour, time.Hour)
	if err != nil || len(dead) != 0 || oldest.IsZero() {
		t.Fatalf("first failure: dead %v, oldest %v, err %v; want none dead and a1's position", dead, oldest, err)
	}
	claim(b1)
	if _, err := s.UnclaimOutbox(ctx, []string{b1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE outbox SET claimed_until = now() - interval '1 second' WHERE id = $1`, a1); err != nil {
		t.Fatal(err)
	}
	claim(a1, a2, b1)
	if _, err := s.UnclaimOutbox(ctx, []string{a2}); err != nil {
		t.Fatal(err)
	}
	dead, _, err = s.FailOutbox(ctx, []string{a1}, "message too large", false, 2, time.Hour, time.Hour)
	if err != nil || fmt.Sprint(dead) != fmt.Sprint([]string{a1}) {
		t.Fatalf("second failure: dead %v, err %v; want a1 dead", dead, err)
	}
	dead, _, err = s.FailOutbox(ctx, []string{b1}, "invalid topic", true, 10, time.Hour, time.Hour)
	if err != nil || fmt.Sprint(dead) != fmt.Sprint([]string{b1}) {
		t.Fatalf("permanent failure: dead %v, err %v; want b1 dead", dead, err)
	}
	claim(a2) // a1 is dead: a2 goes on
	if _, n, err := s.OutboxBacklog(ctx); err != nil || n != 2 {
		t.Errorf("got %d dead rows (%v), want 2", n, err)
	}
	rows, err := s.DeadOutbox(ctx, 10)
	if err != nil || len(rows) != 2 || rows[0].ID != a1 || rows[0].Attempts != 2 || rows[0].Error != "message too large" {
		t.Errorf("got dead rows %+v (%v), want a1 (2 attempts, its error) and b1", rows, err)
	}
	if err := s.MarkOutboxSent(ctx, []string{a2}, now); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.OldestUnsentOutbox(ctx); ok || err != nil {
		t.Errorf("got pending rows (%v), want none: dead rows are not pending", err)
	}
	if lag, _, err := s.OutboxBacklog(ctx); err != nil || lag != 0 {
		t.Errorf("got lag %v (%v), want 0", lag, err)
	}
}
