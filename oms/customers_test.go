package oms

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

func TestNormalizePhone(t *testing.T) {
	for _, tt := range []struct{ in, region, want string }{
		{"+86 138 0013 8000", "", "+8613800138000"},
		{"13800138000", "CN", "+8613800138000"},
		{"0086-138-0013-8000", "US", "+8613800138000"},
		{"(415) 555-2671", "US", "+14155552671"},
		{"415 555 2671", "", ""}, // no country code and no country
		{"12", "CN", ""},
		{"not a phone", "CN", ""},
		{"", "CN", ""},
	} {
		if got := NormalizePhone(tt.in, tt.region); got != tt.want {
			t.Errorf("NormalizePhone(%q, %q) = %q, want %q", tt.in, tt.region, got, tt.want)
		}
	}
	if got := NormalizeEmail("  Mei.Han@Example.COM "); got != "mei.han@example.com" {
		t.Errorf("NormalizeEmail: %q", got)
	}
}

func TestParseHashKeys(t *testing.T) {
	keys, err := ParseHashKeys("k2:0123456789abcdef0123, k1:fedcba9876543210fedc")
	if err != nil || len(keys) != 2 || keys[0].ID != "k2" || keys[1].ID != "k1" {
		t.Fatalf("got %+v, %v", keys, err)
	}
	for _, bad := range []string{"", "k1", ":0123456789abcdef", "k1:short", "k1:0123456789abcdef,k1:0123456789abcdeg"} {
		if _, err := ParseHashKeys(bad); err == nil {
			t.Errorf("ParseHashKeys(%q): no error", bad)
		}
	}
}

func TestIdentitiesAreKeyedAndRotatable(t *testing.T) {
	k1 := CustomerHashKey{ID: "k1", Secret: []byte("0123456789abcdef-one")}
	k2 := CustomerHashKey{ID: "k2", Secret: []byte("0123456789abcdef-two")}
	old, _ := NewCustomerHasher([]CustomerHashKey{k1})
	rotated, _ := NewCustomerHasher([]CustomerHashKey{k2, k1})
	req := &OrderRequest{Customer: Customer{ID: "C1", Phone: "13800138000", Email: "A@B.cn"}, ShipTo: &Address{Country: "cn"}}
	a, b := old.Identities("app", req), rotated.Identities("store", req)
	if len(a) != 2 || a[0].Kind != "phone" || a[1].Kind != "email" {
		t.Fatalf("identities %+v, want phone and email", a)
	}
	// The rotated hasher stores under k2 and still matches what k1 stored.
	if bytes.Equal(b[0].Hashes[0], a[0].Hashes[0]) || !bytes.Equal(b[0].Hashes[1], a[0].Hashes[0]) {
		t.Error("after rotation the old key's hash must be tried second, the new one stored")
	}
	if bytes.Contains(a[0].Hashes[0], []byte("8613800138000")) {
		t.Error("the hash carries the phone")
	}
	// Without phone or email, the channel's own id, within the channel.
	anon := &OrderRequest{Customer: Customer{ID: "C1"}}
	x, y := old.Identities("app", anon), old.Identities("store", anon)
	if len(x) != 1 || x[0].Kind != "channel" || bytes.Equal(x[0].Hashes[0], y[0].Hashes[0]) {
		t.Errorf("channel-scoped identity: %+v %+v", x, y)
	}
}

func TestDecideAttribution(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	period := 24 * time.Hour
	a1 := &Attribution{Associate: "A1", Store: "S1"}
	a2 := &Attribution{Associate: "A2"}
	live := &Binding{Associate: "A1", Store: "S1", BoundAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour)}
	expired := &Binding{Associate: "A1", BoundAt: now.Add(-48 * time.Hour), ExpiresAt: now.Add(-24 * time.Hour)}
	for _, tt := range []struct {
		name       string
		policy     string
		binding    *Binding
		adopt      *Binding
		own        *Attribution
		wantSource string
		wantAssoc  string
		wantEvent  string
	}{
		{"first attributed order binds", BindKeepFirst, nil, nil, a1, AttributionFromOrder, "A1", "customer.bound/"},
		{"unattributed inherits", BindKeepFirst, live, nil, nil, AttributionFromBinding, "A1", ""},
		{"empty attribution inherits", BindLatest, live, nil, &Attribution{}, AttributionFromBinding, "A1", ""},
		{"keep_first keeps", BindKeepFirst, live, nil, a2, AttributionFromOrder, "A2", ""},
		{"latest rebinds", BindLatest, live, nil, a2, AttributionFromOrder, "A2", "customer.rebound/latest"},
		{"latest, same party: no change", BindLatest, live, nil, a1, AttributionFromOrder, "A1", ""},
		{"expired: nothing inherited", BindKeepFirst, expired, nil, nil, AttributionNone, "", ""},
		{"expired: rebinds", BindKeepFirst, expired, nil, a2, AttributionFromOrder, "A2", "customer.rebound/expired"},
		{"merged binding adopted", BindKeepFirst, nil, live, nil, AttributionFromBinding, "A1", "customer.rebound/merged"},
		{"no binding, no attribution", BindLatest, nil, nil, nil, AttributionNone, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := &CustomerMatch{ID: "c", Binding: tt.binding, BindingVersion: 3, Adopt: tt.adopt}
			a, bind := decideAttribution(tt.policy, period, m, "o", tt.own, now)
			if a.Source != tt.wantSource || a.Associate != tt.wantAssoc {
				t.Errorf("attribution %+v, want source %s associate %q", a, tt.wantSource, tt.wantAssoc)
			}
			got := ""
			if bind != nil {
				got = fmt.Sprintf("%s/%s", bind.Type, bind.Reason)
				if bind.Expect != 3 {
					t.Errorf("the change expects version %d, want 3", bind.Expect)
				}
			}
			if got != tt.wantEvent {
				t.Errorf("binding change %q, want %q", got, tt.wantEvent)
			}
		})
	}
}

func BenchmarkIdentities(b *testing.B) {
	h, _ := NewCustomerHasher([]CustomerHashKey{{ID: "k1", Secret: []byte("0123456789abcdef-one")}})
	req := &OrderRequest{Customer: Customer{ID: "C1", Phone: "+8613800138000", Email: "a@b.cn"}, ShipTo: &Address{Country: "CN"}}
	b.ReportAllocs()
	for b.Loop() {
		h.Identities("app", req)
	}
}
