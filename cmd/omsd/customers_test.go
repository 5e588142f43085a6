package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"
)

type customerOrderView struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Customer struct {
		ID     string `json:"id"`
		Email  string `json:"email"`
		OmsdID string `json:"omsd_id"`
	} `json:"customer"`
	ReviewReasons []string          `json:"hold_reasons"`
	Attribution   map[string]string `json:"attribution"`
}

type customerView struct {
	ID         string   `json:"id"`
	MergedFrom string   `json:"merged_from"`
	Channels   []string `json:"channels"`
	Orders     int64    `json:"orders"`
	GMV        int64    `json:"gmv"`
	Binding    *struct {
		Associate string    `json:"associate"`
		Store     string    `json:"store"`
		ExpiresAt time.Time `json:"expires_at"`
	} `json:"binding"`
}

// buyer is an order body of one buyer: the given channel customer id,
// phone and email ("" leaves them out).
func buyer(ext, custID, phone, email string, attribution map[string]any) map[string]any {
	b := orderBody(ext, line("SKU-1", 1))
	c := map[string]any{"id": custID}
	if phone != "" {
		c["phone"] = phone
	}
	if email != "" {
		c["email"] = email
	}
	b["customer"] = c
	if attribution != nil {
		b["attribution"] = attribution
	}
	return b
}

func seedCustomers(t *testing.T, s *testServer) (app, store string) {
	t.Helper()
	app = s.channel("app", nil)
	store = s.channel("store", nil)
	s.node("WH-HZ", "warehouse", 30.27, 120.15, nil, 10)
	s.node("ST-HZ1", "store", 30.26, 120.17, []string{"CN-ZJ"}, 1)
	s.node("ST-HZ2", "store", 30.28, 120.12, []string{"CN-ZJ"}, 1)
	s.stock("WH-HZ", "SKU-1", 1000)
	s.stock("WH-HZ", "SKU-2", 1000)
	return app, store
}

func TestCustomersAcrossChannels(t *testing.T) {
	s := newTestServer(t)
	app, store := seedCustomers(t, s)
	ctx := context.Background()

	// The same phone, written two ways, through two channels: one customer.
	var a, b customerOrderView
	s.mustCall("POST", "/v1/orders", app, buyer("A-1", "app-77", "+86 138 0013 8000", "", nil), 201, &a)
	bb := buyer("S-1", "store-5", "13800138000", "", nil)
	bb["lines"] = []map[string]any{line("SKU-2", 1)}
	s.mustCall("POST", "/v1/orders", store, bb, 201, &b)
	if a.Customer.OmsdID == "" || a.Customer.OmsdID != b.Customer.OmsdID {
		t.Fatalf("one phone through two channels: omsd ids %q and %q, want one", a.Customer.OmsdID, b.Customer.OmsdID)
	}
	if a.Attribution["source"] != "none" {
		t.Errorf("an order without attribution: source %q, want none", a.Attribution["source"])
	}
	var c customerView
	s.mustCall("GET", "/v1/customers/"+a.Customer.OmsdID, s.Admin, nil, 200, &c)
	if c.Orders != 2 || len(c.Channels) != 2 || c.GMV != 2000 {
		t.Errorf("customer: %+v, want 2 orders over 2 channels, GMV 2000", c)
	}

	// The repeat-order check sees the buyer across channels: the same
	// lines through the other channel within minutes go on hold.
	var rep customerOrderView
	s.mustCall("POST", "/v1/orders", store, buyer("S-2", "store-5", "+8613800138000", "", nil), 201, &rep)
	if rep.Status != "on_hold" || len(rep.ReviewReasons) == 0 || rep.ReviewReasons[0] != "repeat_order" {
		t.Errorf("the same lines through another channel: %s %v, want on_hold for repeat_order", rep.Status, rep.ReviewReasons)
	}

	// An email match merges: X by phone, Y by email, then an order with
	// X's phone and Y's email links them; both ids answer as one.
	var x, y, xy customerOrderView
	s.mustCall("POST", "/v1/orders", app, buyer("A-2", "app-1", "+8613911112222", "", nil), 201, &x)
	s.mustCall("POST", "/v1/orders", store, buyer("S-3", "store-1", "", "Mei.Han@Example.com", nil), 201, &y)
	if x.Customer.OmsdID == y.Customer.OmsdID {
		t.Fatal("a phone-only and an email-only buyer were matched before anything linked them")
	}
	xyb := buyer("A-3", "app-1", "+8613911112222", "mei.han@example.com", nil)
	xyb["lines"] = []map[string]any{line("SKU-2", 2)}
	s.mustCall("POST", "/v1/orders", app, xyb, 201, &xy)
	if xy.Customer.OmsdID != x.Customer.OmsdID {
		t.Errorf("the linking order went to %s, want the older customer %s", xy.Customer.OmsdID, x.Customer.OmsdID)
	}
	var viaY customerView
	s.mustCall("GET", "/v1/customers/"+y.Customer.OmsdID, s.Admin, nil, 200, &viaY)
	if viaY.ID != x.Customer.OmsdID || viaY.MergedFrom != y.Customer.OmsdID || viaY.Orders != 3 {
		t.Errorf("the merged id answers %+v, want survivor %s with 3 orders", viaY, x.Customer.OmsdID)
	}
	// The customer's orders, in pages.
	var page struct {
		Orders []struct {
			ID string `json:"id"`
		} `json:"orders"`
		Next string `json:"next"`
	}
	s.mustCall("GET", "/v1/customers/"+x.Customer.OmsdID+"/orders?limit=2", s.Admin, nil, 200, &page)
	if len(page.Orders) != 2 || page.Next == "" {
		t.Fatalf("first page: %+v, want 2 orders and a cursor", page)
	}
	first := page.Orders[0].ID
	next := page.Next
	page.Orders, page.Next = nil, ""
	s.mustCall("GET", "/v1/customers/"+x.Customer.OmsdID+"/orders?limit=2&after="+url.QueryEscape(next), s.Admin, nil, 200, &page)
	if len(page.Orders) != 1 || page.Next != "" || page.Orders[0].ID == first {
		t.Errorf("second page: %+v, want the last order and no cursor", page)
	}
	var p problem
	if got := s.call("GET", "/v1/customers/"+x.Customer.OmsdID+"/orders?limit=0", s.Admin, nil, nil, &p); got != 422 || !p.fields()["limit"] {
		t.Errorf("limit=0: %d %+v, want 422 naming limit", got, p)
	}
	if got := s.call("GET", "/v1/customers/"+x.Customer.OmsdID, app, nil, nil, nil); got != 401 && got != 403 {
		t.Errorf("a channel key reads customers: %d, want 401 or 403", got)
	}
	if got := s.call("GET", "/v1/customers/00000000-0000-0000-0000-000000000001", s.Admin, nil, nil, nil); got != 404 {
		t.Errorf("an unknown customer: %d, want 404", got)
	}

	// Neither the phone nor the email is stored outside the orders: the
	// keys are HMACs under the configured key id.
	var n, plain int
	if err := s.app.store.Pool().QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE position('8613800138000'::bytea IN key_hash) > 0
			OR position('mei.han'::bytea IN key_hash) > 0 OR key_id <> 'k1') FROM customer_keys`).Scan(&n, &plain); err != nil {
		t.Fatal(err)
	}
	if n != 3 || plain != 0 {
		t.Errorf("customer_keys: %d rows (%d readable or under another key), want 3 hashed under k1", n, plain)
	}
	// A request may not set what omsd decides.
	bad := buyer("A-9", "app-9", "", "", map[string]any{"associate": "A1", "source": "binding"})
	bad["customer"].(map[string]any)["omsd_id"] = x.Customer.OmsdID
	if got := s.call("POST", "/v1/orders", app, bad, nil, &p); got != 422 || !p.fields()["customer.omsd_id"] || !p.fields()["attribution.source"] {
		t.Errorf("omsd_id and source in a request: %d %+v, want 422 naming both", got, p)
	}
}

// bindingEvents are the customer.* events of a customer in the outbox.
func bindingEvents(t *testing.T, s *testServer, customer string) []string {
	t.Helper()
	rows, err := s.app.store.Pool().Query(context.Background(),
		`SELECT payload->>'type', coalesce(payload->>'reason', '') FROM outbox WHERE topic = 'oms.orders' AND msg_key = $1 ORDER BY seq`, customer)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var typ, reason string
		if err := rows.Scan(&typ, &reason); err != nil {
			t.Fatal(err)
		}
		out = append(out, typ+"/"+reason)
	}
	return out
}

func TestAttributionBinding(t *testing.T) {
	for _, policy := range []string{"keep_first", "latest"} {
		t.Run(policy, func(t *testing.T) {
			s := newTestServer(t, func(c *config) { c.BindingPolicy = policy; c.BindingPeriod = 3 * time.Second })
			app, store := seedCustomers(t, s)
			phone := "+8613700001111"
			var first, inherit, other, after customerOrderView
			s.mustCall("POST", "/v1/orders", store, buyer("S-1", "s-1", phone, "", map[string]any{"associate": "A1", "store": "ST-HZ1"}), 201, &first)
			if first.Attribution["source"] != "order" || first.Attribution["associate"] != "A1" {
				t.Fatalf("the first attributed order: %v, want its own attribution (source order)", first.Attribution)
			}
			// Another channel, no attribution: inherits the binding.
			ib := buyer("A-1", "a-1", phone, "", nil)
			ib["lines"] = []map[string]any{line("SKU-2", 1)}
			s.mustCall("POST", "/v1/orders", app, ib, 201, &inherit)
			if inherit.Attribution["source"] != "binding" || inherit.Attribution["associate"] != "A1" || inherit.Attribution["store"] != "ST-HZ1" {
				t.Errorf("a later unattributed order: %v, want A1/ST-HZ1 from the binding", inherit.Attribution)
			}
			var ev struct {
				Order struct {
					Attribution map[string]string `json:"attribution"`
				} `json:"order"`
			}
			var payload []byte
			if err := s.app.store.Pool().QueryRow(context.Background(), `SELECT payload FROM outbox WHERE msg_key = $1 AND payload->>'type' = 'order.created'`, inherit.ID).Scan(&payload); err != nil {
				t.Fatal(err)
			}
			_ = json.Unmarshal(payload, &ev)
			if ev.Order.Attribution["source"] != "binding" {
				t.Errorf("order.created does not carry the attribution source: %s", payload)
			}
			// An order attributed to someone else: latest rebinds,
			// keep_first does not; the order keeps its own either way.
			ob := buyer("S-2", "s-1", phone, "", map[string]any{"associate": "A2", "store": "ST-HZ2"})
			ob["lines"] = []map[string]any{line("SKU-1", 3)}
			s.mustCall("POST", "/v1/orders", store, ob, 201, &other)
			if other.Attribution["associate"] != "A2" || other.Attribution["source"] != "order" {
				t.Errorf("an order with its own attribution: %v", other.Attribution)
			}
			var c customerView
			s.mustCall("GET", "/v1/customers/"+first.Customer.OmsdID, s.Admin, nil, 200, &c)
			want := map[string]string{"keep_first": "A1", "latest": "A2"}[policy]
			if c.Binding == nil || c.Binding.Associate != want {
				t.Errorf("binding after an order for A2: %+v, want %s", c.Binding, want)
			}
			wantEvents := map[string]string{"keep_first": "[customer.bound/]", "latest": "[customer.bound/ customer.rebound/latest]"}[policy]
			if got := fmt.Sprint(bindingEvents(t, s, first.Customer.OmsdID)); got != wantEvents {
				t.Errorf("binding events %s, want %s", got, wantEvents)
			}
			// After the period an unattributed order inherits nothing.
			time.Sleep(time.Until(c.Binding.ExpiresAt) + 100*time.Millisecond)
			ab := buyer("A-2", "a-1", phone, "", nil)
			ab["lines"] = []map[string]any{line("SKU-2", 4)}
			s.mustCall("POST", "/v1/orders", app, ab, 201, &after)
			if after.Attribution["source"] != "none" || after.Attribution["associate"] != "" {
				t.Errorf("an unattributed order after the period: %v, want none", after.Attribution)
			}
			// The next attributed order binds again: a rebind for expiry.
			var again customerOrderView
			s.mustCall("POST", "/v1/orders", store, buyer("S-3", "s-1", phone, "", map[string]any{"associate": "A3"}), 201, &again)
			s.mustCall("GET", "/v1/customers/"+first.Customer.OmsdID, s.Admin, nil, 200, &c)
			if c.Binding == nil || c.Binding.Associate != "A3" {
				t.Errorf("binding after expiry and a new attributed order: %+v, want A3", c.Binding)
			}
			evs := bindingEvents(t, s, first.Customer.OmsdID)
			if len(evs) == 0 || evs[len(evs)-1] != "customer.rebound/expired" {
				t.Errorf("binding events %v, want the last one customer.rebound/expired", evs)
			}
		})
	}
}

func TestAttributionSummaryAddsUp(t *testing.T) {
	s := newTestServer(t)
	app, store := seedCustomers(t, s)
	ctx := context.Background()
	type sum struct{ orders, gmv int64 }
	for i := range 30 {
		var attr map[string]any
		switch i % 3 {
		case 0:
			attr = map[string]any{"associate": fmt.Sprintf("A%d", i%4), "store": "ST-HZ1", "distributor": "D1"}
		case 1:
			attr = map[string]any{"associate": fmt.Sprintf("A%d", i%4)}
		}
		key := app
		if i%2 == 0 {
			key = store
		}
		b := buyer(fmt.Sprintf("O-%d", i), fmt.Sprintf("c-%d", i%7), fmt.Sprintf("+86136%08d", i%7), "", attr)
		b["lines"] = []map[string]any{{"sku": "SKU-1", "qty": i%3 + 1, "unit_price": 100 * (i + 1)}}
		s.mustCall("POST", "/v1/orders", key, b, 201, nil)
	}
	now := time.Now().UTC()
	from, to := now.Add(-time.Hour).Truncate(time.Hour), now.Add(2*time.Hour).Truncate(time.Hour)
	for _, dim := range []string{"associate", "store", "distributor"} {
		rows, err := s.app.store.Pool().Query(ctx, `SELECT doc->'attribution'->>$1, count(*), sum((doc->>'total')::bigint) FROM orders
			WHERE coalesce(doc->'attribution'->>$1, '') <> '' AND created_at >= $2 AND created_at < $3 GROUP BY 1`, dim, from, to)
		if err != nil {
			t.Fatal(err)
		}
		direct := map[string]sum{}
		for rows.Next() {
			var k string
			var v sum
			if err := rows.Scan(&k, &v.orders, &v.gmv); err != nil {
				t.Fatal(err)
			}
			direct[k] = v
		}
		rows.Close()
		if len(direct) == 0 {
			t.Fatalf("%s: no attributed orders to compare", dim)
		}
		var out struct {
			Rows []struct {
				Key      string `json:"key"`
				Orders   int64  `json:"orders"`
				GMV      int64  `json:"gmv"`
				Refunded int64  `json:"refunded"`
				Net      int64  `json:"net"`
			} `json:"rows"`
		}
		s.mustCall("GET", fmt.Sprintf("/v1/attribution/summary?from=%s&to=%s&group_by=%s", from.Format(time.RFC3339), to.Format(time.RFC3339), dim), s.Admin, nil, 200, &out)
		got := map[string]sum{}
		for _, r := range out.Rows {
			got[r.Key] = sum{r.Orders, r.GMV}
			if r.Net != r.GMV-r.Refunded {
				t.Errorf("%s %s: net %d, want gmv - refunded", dim, r.Key, r.Net)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(direct) {
			t.Errorf("%s summary %v, direct count %v", dim, got, direct)
		}
	}
	var p problem
	if got := s.call("GET", "/v1/attribution/summary?from=2026-12-01T00:30:00Z&to=2026-12-01T00:00:00Z&group_by=region", s.Admin, nil, nil, &p); got != 422 ||
		!p.fields()["from"] || !p.fields()["group_by"] {
		t.Errorf("bad summary parameters: %d %+v, want 422 naming from and group_by", got, p)
	}
}

// Many first orders of one new buyer at once, through two channels: they
// race to create the customer, and every id they get answers as one.
func TestConcurrentFirstOrdersOfOneBuyerBecomeOneCustomer(t *testing.T) {
	s := newTestServer(t)
	app, store := seedCustomers(t, s)
	const n = 60
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			key := app
			if i%2 == 1 {
				key = store
			}
			var o customerOrderView
			attr := map[string]any{"associate": fmt.Sprintf("A%d", i%3)}
			if got := s.call("POST", "/v1/orders", key, buyer(fmt.Sprintf("R-%d", i), fmt.Sprintf("c-%d", i), "+8613500009999", "", attr), nil, &o); got != 201 {
				t.Errorf("order %d: %d", i, got)
			}
			ids[i] = o.Customer.OmsdID
		})
	}
	wg.Wait()
	survivors := map[string]int{}
	var total int64
	for _, id := range ids {
		var c customerView
		s.mustCall("GET", "/v1/customers/"+id, s.Admin, nil, 200, &c)
		survivors[c.ID]++
		total = c.Orders
		if c.Binding == nil {
			t.Errorf("customer %s: no binding although every order was attributed", c.ID)
		}
	}
	if len(survivors) != 1 || total != n {
		t.Errorf("%d concurrent first orders of one phone: customers %v with %d orders, want one with %d", n, survivors, total, n)
	}
	if evs := bindingEvents(t, s, ids[0]); len(evs) > 1 {
		// Each racing new customer may bind itself before it is merged;
		// the survivor's binding is one of them.
		t.Logf("binding events of %s: %v", ids[0], evs)
	}
}

// Rotating the hash key loses no match: an instance with a new key first
// and the old one after finds the customer the old key stored, and
// stores the new key's hash for it.
func TestCustomerHashKeyRotation(t *testing.T) {
	s := newTestServer(t)
	app, _ := seedCustomers(t, s)
	var before, after customerOrderView
	s.mustCall("POST", "/v1/orders", app, buyer("K-1", "k-1", "+8613600007777", "", nil), 201, &before)

	cfg := s.cfg
	cfg.CustomerHashKeys = "k2:rotated-customer-secret-2,k1:test-customer-hash-secret"
	rotated := startServer(t, cfg, s.Redis)
	b := buyer("K-2", "k-2", "+8613600007777", "", nil)
	b["lines"] = []map[string]any{line("SKU-2", 1)}
	rotated.mustCall("POST", "/v1/orders", app, b, 201, &after)
	if after.Customer.OmsdID != before.Customer.OmsdID {
		t.Fatalf("after the rotation the buyer is %s, before %s: a match was lost", after.Customer.OmsdID, before.Customer.OmsdID)
	}
	rows, err := s.app.store.Pool().Query(context.Background(), `SELECT key_id FROM customer_keys WHERE customer_id = $1 ORDER BY key_id`, before.Customer.OmsdID)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		ids = append(ids, id)
	}
	rows.Close()
	if fmt.Sprint(ids) != "[k1 k2]" {
		t.Errorf("key ids stored for the customer: %v, want [k1 k2] (the old hash kept, the new one added)", ids)
	}
}
