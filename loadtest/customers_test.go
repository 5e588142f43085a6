package loadtest

import (
	"testing"
	"time"
)

func TestCustomerStatsAndBindingAudit(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	acc := []AcceptedOrder{
		// Buyer 1: attributed through app, answered at 1 s; later orders
		// through store inherit, one sent before the answer does not.
		{ID: "a", Channel: "app", Buyer: 1, OmsdID: "c1", Attributed: true, Associate: "AS-1", Source: "order", SentAt: at(0), AnsweredAt: at(1)},
		{ID: "b", Channel: "store", Buyer: 1, OmsdID: "c1", Associate: "AS-1", Source: "binding", SentAt: at(2), AnsweredAt: at(3)},
		{ID: "c", Channel: "store", Buyer: 1, OmsdID: "c1", Source: "none", SentAt: at(0), AnsweredAt: at(1)},
		// Buyer 2: two channels, two ids (a race the OMS links later).
		{ID: "d", Channel: "app", Buyer: 2, OmsdID: "c2", Source: "none", SentAt: at(0), AnsweredAt: at(1)},
		{ID: "e", Channel: "store", Buyer: 2, OmsdID: "c3", Source: "none", SentAt: at(0), AnsweredAt: at(1)},
		// Buyer 3: one channel.
		{ID: "f", Channel: "app", Buyer: 3, OmsdID: "c4", Source: "none", SentAt: at(0), AnsweredAt: at(1)},
	}
	st := customerStats(acc)
	if st.Buyers != 3 || st.CrossChannel != 2 || st.Matched != 1 || st.Split != 1 || st.Attributed != 1 || st.Inherited != 1 {
		t.Errorf("stats %+v", st)
	}
	var res AuditResult
	auditBindings(acc, &res)
	if res.BindingsChecked != 1 || res.BindingsMissing != 0 || !res.Clean() {
		t.Errorf("clean run: %+v", res)
	}
	// An order sent after the attributed answer that came back without
	// the binding is a finding.
	acc = append(acc, AcceptedOrder{ID: "g", Channel: "app", Buyer: 1, OmsdID: "c1", Source: "none", SentAt: at(5), AnsweredAt: at(6)},
		AcceptedOrder{ID: "h", Channel: "app", Buyer: 1, OmsdID: "c1", Source: "binding", Associate: "AS-9", SentAt: at(5), AnsweredAt: at(6)})
	res = AuditResult{}
	auditBindings(acc, &res)
	if res.BindingsChecked != 3 || res.BindingsMissing != 2 || res.Clean() || len(res.Findings) != 2 || res.Findings[0].Check != "bindings_missing" {
		t.Errorf("two wrong orders: %+v", res)
	}
	// An OMS without customer matching: not judged, said so.
	res = AuditResult{}
	auditBindings([]AcceptedOrder{{ID: "x", Buyer: 1, Attributed: true, AnsweredAt: at(1)}, {ID: "y", Buyer: 1, SentAt: at(2)}}, &res)
	if res.BindingsChecked != 0 || len(res.Notes) != 1 {
		t.Errorf("without omsd ids: %+v", res)
	}
}
