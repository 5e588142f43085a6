package loadtest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
)

// The order body of POST /v1/orders, field for field as the v1 API (openapi.yaml) gives it.
type (
	orderBody struct {
		ExternalID  string       `json:"external_id"`
		Customer    customer     `json:"customer"`
		ShipTo      address      `json:"ship_to"`
		Lines       []orderLine  `json:"lines"`
		Currency    string       `json:"currency"`
		Payment     payment      `json:"payment"`
		Fulfillment fulfillment  `json:"fulfillment"`
		Attribution *attribution `json:"attribution,omitempty"`
	}
	customer struct {
		ID    string `json:"id"`
		Email string `json:"email,omitempty"`
		Phone string `json:"phone"`
	}
	attribution struct {
		Associate   string `json:"associate,omitempty"`
		Distributor string `json:"distributor,omitempty"`
	}
	address struct {
		Name       string  `json:"name"`
		Line1      string  `json:"line1"`
		City       string  `json:"city"`
		Region     string  `json:"region"`
		PostalCode string  `json:"postal_code"`
		Country    string  `json:"country"`
		Lat        float64 `json:"lat"`
		Lon        float64 `json:"lon"`
	}
	orderLine struct {
		SKU       string `json:"sku"`
		Qty       int64  `json:"qty"`
		UnitPrice int64  `json:"unit_price"`
	}
	payment struct {
		Status string `json:"status"`
	}
	fulfillment struct {
		Type string `json:"type"`
	}
)

// Line is a SKU and a quantity.
type Line struct {
	SKU string `json:"sku"`
	Qty int64  `json:"qty"`
}

// MixConfig shapes the generated orders. The zero value means: every order
// paid, 20 hot SKUs taking half of the lines, Zipf exponent 1.1.
type MixConfig struct {
	// PendingShare is the share of orders submitted with payment pending
	// (they keep their reservation until paid or expired; the load test
	// never pays them). Default 0: all paid.
	PendingShare float64
	// HotSKUs is the number of hot SKUs (the first of the catalogue).
	// Default 20 (or the catalogue, if smaller). Negative: none.
	HotSKUs int
	// HotShare is the share of order lines that go to a hot SKU; the rest
	// pick uniformly from the whole catalogue. Default 0.5.
	HotShare float64
	// ZipfS is the Zipf exponent among hot SKUs (> 1): P(rank k) ∝
	// (1+k)^-s. Default 1.1.
	ZipfS float64
	// Buyers is the number of distinct buyers. A buyer has one phone (and
	// an email on half of its orders) and a customer id of its own in
	// each channel, as channels know buyers under their own ids; the OMS
	// is to see one customer. Default 50,000.
	Buyers int
	// AttributedShare is the share of orders that carry an attribution
	// (one of 100 associates and 10 distributors). Default 0.2; negative:
	// none.
	AttributedShare float64
}

func (m *MixConfig) setDefaults(nSKUs int) {
	if m.HotSKUs == 0 {
		m.HotSKUs = 20
	}
	if m.HotSKUs < 0 {
		m.HotSKUs = 0
	}
	m.HotSKUs = min(m.HotSKUs, nSKUs)
	if m.HotShare == 0 {
		m.HotShare = 0.5
	}
	if m.ZipfS == 0 {
		m.ZipfS = 1.1
	}
	if m.Buyers <= 0 {
		m.Buyers = 50_000
	}
	if m.AttributedShare == 0 {
		m.AttributedShare = 0.2
	}
}

func (m MixConfig) validate() error {
	if m.PendingShare < 0 || m.PendingShare > 1 {
		return fmt.Errorf("loadtest: pending share must be in [0,1], got %v", m.PendingShare)
	}
	if m.HotShare < 0 || m.HotShare > 1 {
		return fmt.Errorf("loadtest: hot share must be in [0,1], got %v", m.HotShare)
	}
	if m.AttributedShare > 1 {
		return fmt.Errorf("loadtest: attributed share must be at most 1, got %v", m.AttributedShare)
	}
	if !(m.ZipfS > 1) {
		return fmt.Errorf("loadtest: zipf exponent must be > 1, got %v", m.ZipfS)
	}
	return nil
}

// orderGen makes order bodies. It is shared read-only by all workers;
// each worker brings its own *rand.Rand and *rand.Zipf.
type orderGen struct {
	mix        MixConfig
	runID      string
	channels   []Channel
	chanCum    []float64
	skus       []SKU
	cityCum    []float64
	lineCounts []float64 // cumulative probabilities of 1..5 lines
}

func newOrderGen(seed *SeedFile, mix MixConfig, runID string) *orderGen {
	g := &orderGen{mix: mix, runID: runID, channels: seed.Channels, skus: seed.SKUs}
	sum := 0.0
	for _, c := range seed.Channels {
		w := c.Weight
		if w <= 0 {
			w = 1
		}
		sum += w
		g.chanCum = append(g.chanCum, sum)
	}
	sum = 0
	for _, c := range Cities {
		sum += c.Weight
		g.cityCum = append(g.cityCum, sum)
	}
	g.lineCounts = []float64{0.50, 0.75, 0.88, 0.95, 1.00}
	return g
}

func pick(r *rand.Rand, cum []float64) int {
	x := r.Float64() * cum[len(cum)-1]
	return sort.SearchFloat64s(cum, x)
}

// newZipf returns a Zipf generator over the hot SKUs, or nil.
func (g *orderGen) newZipf(r *rand.Rand) *rand.Zipf {
	if g.mix.HotSKUs < 2 {
		return nil
	}
	return rand.NewZipf(r, g.mix.ZipfS, 1, uint64(g.mix.HotSKUs-1))
}

func (g *orderGen) pickSKU(r *rand.Rand, z *rand.Zipf) int {
	if g.mix.HotSKUs > 0 && r.Float64() < g.mix.HotShare {
		if z == nil {
			return 0
		}
		return int(z.Uint64())
	}
	return r.IntN(len(g.skus))
}

// genOrder is one generated order: what is sent and what the audit needs.
type genOrder struct {
	channel    int
	externalID string
	idemKey    string
	pending    bool
	lines      []Line
	body       []byte
	buyer      int  // the generated buyer (one person across channels)
	attributed bool // sent with its own attribution
}

// make builds arrival k's order.
func (g *orderGen) make(r *rand.Rand, z *rand.Zipf, k int64) genOrder {
	ci := pick(r, g.chanCum)
	ch := g.channels[ci]
	prefix := ch.OrderPrefix
	if prefix == "" {
		prefix = "LT"
	}
	o := genOrder{
		channel:    ci,
		externalID: fmt.Sprintf("%s-%s-%07d", prefix, g.runID, k),
		idemKey:    fmt.Sprintf("lt-%s-%d", g.runID, k),
		pending:    r.Float64() < g.mix.PendingShare,
	}
	city := Cities[pick(r, g.cityCum)]
	o.buyer = r.IntN(g.mix.Buyers) + 1
	b := orderBody{
		ExternalID: o.externalID,
		Customer: customer{
			ID:    fmt.Sprintf("%s-C%07d", prefix, o.buyer),
			Phone: fmt.Sprintf("+86137%08d", o.buyer),
		},
		ShipTo: address{
			Name:       familyNames[r.IntN(len(familyNames))] + " " + givenNames[r.IntN(len(givenNames))],
			Line1:      fmt.Sprintf("%d %s", r.IntN(999)+1, streets[r.IntN(len(streets))]),
			City:       city.Name,
			Region:     city.Region,
			PostalCode: fmt.Sprintf("%s%02d", city.Postal, r.IntN(100)),
			Country:    "CN",
			Lat:        round4(city.Lat + (r.Float64()-0.5)*0.2),
			Lon:        round4(city.Lon + (r.Float64()-0.5)*0.2),
		},
		Currency:    "CNY",
		Payment:     payment{Status: "paid"},
		Fulfillment: fulfillment{Type: "ship"},
	}
	if o.pending {
		b.Payment.Status = "pending"
	}
	if r.IntN(2) == 0 {
		b.Customer.Email = fmt.Sprintf("b%07d@example.com", o.buyer)
	}
	if r.Float64() < g.mix.AttributedShare {
		o.attributed = true
		b.Attribution = &attribution{Associate: fmt.Sprintf("AS-%03d", r.IntN(100)), Distributor: fmt.Sprintf("DI-%02d", r.IntN(10))}
	}
	nLines := pick(r, g.lineCounts) + 1
	seen := make(map[int]bool, nLines)
	for len(b.Lines) < nLines {
		si := -1
		for try := 0; try < 8; try++ {
			if s := g.pickSKU(r, z); !seen[s] {
				si = s
				break
			}
		}
		if si < 0 {
			break // a tiny catalogue: fewer lines
		}
		seen[si] = true
		qty := int64(1)
		if x := r.Float64(); x > 0.95 {
			qty = 3
		} else if x > 0.80 {
			qty = 2
		}
		b.Lines = append(b.Lines, orderLine{SKU: g.skus[si].ID, Qty: qty, UnitPrice: g.skus[si].Price})
		o.lines = append(o.lines, Line{SKU: g.skus[si].ID, Qty: qty})
	}
	o.body, _ = json.Marshal(b) // plain structs: cannot fail
	return o
}
