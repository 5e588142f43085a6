package loadtest

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// CustomerStats says how the OMS matched the run's buyers. Each generated
// buyer orders under a customer id of its own in every channel, with one
// phone (and its email on half of the orders); the OMS is to see one
// customer.
type CustomerStats struct {
	// Buyers that placed accepted orders, and those among them whose
	// orders came through two or more channels.
	Buyers       int `json:"buyers"`
	CrossChannel int `json:"cross_channel"`
	// Matched: cross-channel buyers whose every order named one omsd
	// customer. Split: those whose orders named two or more (two first
	// orders that raced: the OMS links them afterwards, so both ids
	// answer as one).
	Matched int `json:"matched"`
	Split   int `json:"split"`
	// Orders answered without an omsd customer (an OMS without customer
	// matching: the other counts are then zero).
	Unmatched int `json:"unmatched_orders,omitempty"`
	// Attributed orders carried their own attribution; Inherited orders
	// did not and came back with the binding's.
	Attributed int `json:"attributed_orders"`
	Inherited  int `json:"inherited_orders"`
}

// customerStats counts CustomerStats over the accepted orders.
func customerStats(acc []AcceptedOrder) CustomerStats {
	type buyer struct {
		channels map[string]bool
		ids      map[string]bool
	}
	var st CustomerStats
	byBuyer := map[int]*buyer{}
	for _, o := range acc {
		if o.Attributed {
			st.Attributed++
		} else if o.Source == "binding" {
			st.Inherited++
		}
		if o.OmsdID == "" {
			st.Unmatched++
			continue
		}
		b := byBuyer[o.Buyer]
		if b == nil {
			b = &buyer{channels: map[string]bool{}, ids: map[string]bool{}}
			byBuyer[o.Buyer] = b
		}
		b.channels[o.Channel], b.ids[o.OmsdID] = true, true
	}
	st.Buyers = len(byBuyer)
	for _, b := range byBuyer {
		if len(b.channels) < 2 {
			continue
		}
		st.CrossChannel++
		if len(b.ids) == 1 {
			st.Matched++
		} else {
			st.Split++
		}
	}
	return st
}

// auditBindings checks that every order that should carry a binding does:
// an order sent without attribution after an attributed order of the same
// buyer was answered (so committed, and the binding with it) must come
// back with source "binding" and one of the associates that buyer's
// attributed orders named. Orders sent while the first attributed order
// was still in flight may or may not see it and are not judged. The
// check assumes the default binding period (a year) and that the OMS
// matches customers; with no omsd customer in the answers it is skipped.
func auditBindings(acc []AcceptedOrder, res *AuditResult) {
	type bound struct {
		first      time.Time // earliest answer of an attributed order
		associates []string
	}
	byBuyer := map[int]*bound{}
	matched := false
	for _, o := range acc {
		matched = matched || o.OmsdID != ""
		if !o.Attributed || o.AnsweredAt.IsZero() {
			continue
		}
		b := byBuyer[o.Buyer]
		if b == nil {
			b = &bound{first: o.AnsweredAt}
			byBuyer[o.Buyer] = b
		}
		if o.AnsweredAt.Before(b.first) {
			b.first = o.AnsweredAt
		}
		if !slices.Contains(b.associates, o.Associate) {
			b.associates = append(b.associates, o.Associate)
		}
	}
	if !matched {
		if len(acc) > 0 {
			res.Notes = append(res.Notes, "bindings not checked: the answers name no omsd customer")
		}
		return
	}
	for _, o := range acc {
		b := byBuyer[o.Buyer]
		if o.Attributed || b == nil || o.SentAt.IsZero() || !o.SentAt.After(b.first) {
			continue
		}
		res.BindingsChecked++
		if o.Source != "binding" || !slices.Contains(b.associates, o.Associate) {
			res.BindingsMissing++
			res.find(Finding{Check: "bindings_missing", Key: o.ID, Detail: fmt.Sprintf(
				"sent %s after buyer %d's attributed order was answered (associates %s) but came back with attribution source %q associate %q",
				o.SentAt.UTC().Format(time.RFC3339Nano), o.Buyer, strings.Join(b.associates, ","), o.Source, o.Associate)})
		}
	}
}
