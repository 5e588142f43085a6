package sourcing

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// Plan decides which nodes ship o, and explains why.
//
// Strategies of rules are tried in order; the first whose conditions match
// and that fills the whole order wins (Outcome fulfilled). If none fills it,
// the fallback of the last matching strategy applies, or the rule set's
// fallback when no strategy matches (see the package documentation).
//
// Plan is pure and safe for concurrent use with the same RuleSet, nodes and
// Availability (it only reads them). It never ships more than avail reports
// for a (node, SKU). A nil avail means no stock anywhere. Plan does not fail:
// a nil order is rejected, and a nil or invalid rule set puts the order on
// hold, with the cause in Reason.
func Plan(o *Order, nodes []Node, avail Availability, rules *RuleSet) *Result {
	if rules == nil {
		return &Result{Outcome: OutcomeHold, Reason: "no rule set"}
	}
	if o == nil {
		return &Result{Outcome: OutcomeRejected, Reason: "no order"}
	}
	c, err := compiledOf(rules)
	if err != nil {
		return &Result{Outcome: OutcomeHold, Reason: err.Error()}
	}
	sc, _ := c.pool.Get().(*scratch)
	if sc == nil {
		sc = new(scratch)
	}
	defer c.pool.Put(sc)
	sc.o, sc.nodes, sc.avail = o, nodes, avail
	sc.stock, _ = avail.(StockMap)
	defer sc.release()

	if !sc.prepareLines() {
		return &Result{Outcome: OutcomeRejected, Reason: "order has no lines to ship"}
	}
	last := -1
	for i := range c.strategies {
		if sc.matches(&c.strategies[i]) {
			last = i
		}
	}
	if last < 0 {
		return sc.noStrategy(c.fallback)
	}
	for i := 0; i <= last; i++ {
		s := &c.strategies[i]
		if !sc.matches(s) {
			continue
		}
		if sc.run(s) {
			return sc.result(s, OutcomeFulfilled, "")
		}
		if i == last {
			return sc.fallback(s)
		}
	}
	panic("unreachable")
}

// scratch is the per-call working memory, pooled per compiled rule set so
// that a plan allocates little more than its Result.
type scratch struct {
	o      *Order
	nodes  []Node
	avail  Availability
	stock  StockMap
	cosLat float64 // cos of the ship-to latitude

	lines    []aggLine
	lineIdx  map[string]int32 // SKU -> lines index, for long orders
	lineExcl []uint64         // per line: bit e set when exclusion filter e matches its tags

	st     []nodeState
	qty    []int64   // n*L available units (valid when st.fetched)
	use    []bool    // n*L node may ship line
	keys   []float64 // n*k ranking keys, larger is better
	known  []bool    // n*k
	lo, hi []float64 // per criterion, range of the known keys (weighted mode)
	order  []int32   // candidates, best first
	rem    []int64   // per line, quantity not yet allocated
	take   []int64   // len(chosen)*L allocation
	chose  []int32   // chosen nodes, in pick order
	nCand  int
}

type aggLine struct {
	sku string
	qty int64
}

type nodeState struct {
	removed    int16 // index of the filter that removed the node, -1 if none
	code       uint8
	fetched    bool
	chosen     bool
	rank       int32
	sku        string
	detail     string
	have, need int64
	score      float64
}

func (sc *scratch) release() {
	sc.o, sc.nodes, sc.avail, sc.stock = nil, nil, nil, nil
	clear(sc.lines)
	clear(sc.st)
	if len(sc.lineIdx) > 0 {
		clear(sc.lineIdx)
	}
}

// prepareLines merges the order's lines by SKU, dropping non-positive ones.
func (sc *scratch) prepareLines() bool {
	ls := sc.o.Lines
	sc.lines = sc.lines[:0]
	useMap := len(ls) > 16
	if useMap {
		if sc.lineIdx == nil {
			sc.lineIdx = make(map[string]int32, len(ls))
		}
		clear(sc.lineIdx)
	}
	for i := range ls {
		l := &ls[i]
		if l.Qty <= 0 {
			continue
		}
		j := -1
		if useMap {
			if k, ok := sc.lineIdx[l.SKU]; ok {
				j = int(k)
			} else {
				sc.lineIdx[l.SKU] = int32(len(sc.lines))
			}
		} else {
			for k := range sc.lines {
				if sc.lines[k].sku == l.SKU {
					j = k
					break
				}
			}
		}
		if j < 0 {
			sc.lines = append(sc.lines, aggLine{sku: l.SKU, qty: l.Qty})
		} else if q := sc.lines[j].qty + l.Qty; q > sc.lines[j].qty {
			sc.lines[j].qty = q
		} else {
			sc.lines[j].qty = math.MaxInt64 // saturate instead of overflowing
		}
	}
	return len(sc.lines) > 0
}

func (sc *scratch) matches(s *cStrategy) bool {
	o := sc.o
	if s.pickup >= 0 && o.Pickup != (s.pickup == 1) {
		return false
	}
	if s.channels != nil {
		if _, ok := s.channels[o.Channel]; !ok {
			return false
		}
	}
	if s.regions != nil {
		if _, ok := s.regions[o.Region]; !ok {
			return false
		}
	}
	if s.hasMin && o.Value < s.minValue || s.hasMax && o.Value > s.maxValue {
		return false
	}
	if s.tags != nil {
		for i := range o.Lines {
			if o.Lines[i].Qty <= 0 {
				continue
			}
			for _, t := range o.Lines[i].Tags {
				if _, ok := s.tags[t]; ok {
					return true
				}
			}
		}
		return false
	}
	return true
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// lineTag returns the first tag of line l (over every order line with its
// SKU) that is in tags.
func (sc *scratch) lineTag(l int, tags []string) string {
	sku := sc.lines[l].sku
	for i := range sc.o.Lines {
		ol := &sc.o.Lines[i]
		if ol.SKU != sku || ol.Qty <= 0 {
			continue
		}
		for _, t := range ol.Tags {
			if contains(tags, t) {
				return t
			}
		}
	}
	return ""
}

func (f *cFilter) matchesNode(n *Node) bool {
	if contains(f.nodeTypes, n.Type) {
		return true
	}
	_, ok := f.nodeIDs[n.ID]
	return ok
}

// fetch reads the available units of node i for every line.
func (sc *scratch) fetch(i int) {
	st := &sc.st[i]
	if st.fetched {
		return
	}
	st.fetched = true
	L := len(sc.lines)
	q := sc.qty[i*L : i*L+L]
	id := sc.nodes[i].ID
	switch {
	case sc.stock != nil:
		row := sc.stock[id]
		for l := range q {
			q[l] = row[sc.lines[l].sku]
		}
	case sc.avail != nil:
		for l := range q {
			q[l] = sc.avail.Available(id, sc.lines[l].sku)
		}
	default:
		clear(q)
	}
}

// run evaluates one strategy: filters, ranking and split. It reports whether
// the allocation covers the whole order.
func (sc *scratch) run(s *cStrategy) bool {
	o, nodes := sc.o, sc.nodes
	n, L, k := len(nodes), len(sc.lines), len(s.crits)
	sc.st = grow(sc.st, n)
	sc.qty = grow(sc.qty, n*L)
	sc.use = grow(sc.use, n*L)
	sc.keys = grow(sc.keys, n*k)
	sc.known = grow(sc.known, n*k)
	sc.order = sc.order[:0]
	single := s.policy == pkSingle
	splitLines := s.splitLines && !single

	if s.exclusions > 0 {
		sc.lineExcl = grow(sc.lineExcl, L)
		clear(sc.lineExcl)
		for fi := range s.filters {
			f := &s.filters[fi]
			if f.kind != fkSKUExclusion {
				continue
			}
			for l := range sc.lines {
				if sc.lineTag(l, f.tags) != "" {
					sc.lineExcl[l] |= 1 << f.excl
				}
			}
		}
	}

	for i := range nodes {
		nd := &nodes[i]
		st := &sc.st[i]
		*st = nodeState{removed: -1}
		use := sc.use[i*L : i*L+L]
		for l := range use {
			use[l] = true
		}
		for fi := range s.filters {
			f := &s.filters[fi]
			switch f.kind {
			case fkActive:
				if !nd.Active {
					st.code = rsInactive
				}
			case fkRegion:
				if len(nd.Regions) > 0 && !contains(nd.Regions, o.Region) {
					st.code, st.detail = rsRegion, o.Region
				}
			case fkChannel:
				if len(nd.Channels) > 0 && !contains(nd.Channels, o.Channel) {
					st.code, st.detail = rsChannel, o.Channel
				}
			case fkCapacity:
				if nd.DailyCapacity > 0 && nd.UsedToday >= nd.DailyCapacity {
					st.code, st.have, st.need = rsCapacity, nd.UsedToday, nd.DailyCapacity
				}
			case fkPickup:
				if o.Pickup {
					if o.PickupNode == "" {
						st.code = rsPickupNone
					} else if nd.ID != o.PickupNode {
						st.code, st.detail = rsPickupOther, o.PickupNode
					}
				}
			case fkSKUExclusion:
				if !f.matchesNode(nd) {
					break
				}
				bit := uint64(1) << f.excl
				first := -1
				for l := range use {
					if use[l] && sc.lineExcl[l]&bit != 0 {
						use[l] = false
						if first < 0 {
							first = l
						}
					}
				}
				if first < 0 {
					break
				}
				tag := sc.lineTag(first, f.tags)
				switch {
				case single:
					st.code, st.sku, st.detail = rsExcludedSome, sc.lines[first].sku, tag
				case !anyTrue(use):
					st.code, st.detail = rsExcludedAll, tag
				default:
					if st.code == rsNone { // a note, not a removal
						st.code, st.sku, st.detail = rsNoteExcluded, sc.lines[first].sku, f.name
					}
					continue
				}
			case fkStock:
				sc.fetch(i)
				q := sc.qty[i*L : i*L+L]
				first := -1
				for l := range use {
					if use[l] && !stockOK(q[l], sc.lines[l].qty, splitLines) {
						use[l] = false
						if first < 0 {
							first = l
						}
					}
				}
				switch {
				case single && first >= 0:
					st.code, st.sku, st.have, st.need = rsStockWhole, sc.lines[first].sku, q[first], sc.lines[first].qty
				case single:
					// every line was already excluded or is in stock
				case !anyTrue(use):
					st.code = rsStockNone
				}
				if st.code == rsNoteExcluded || st.code == rsNone {
					continue
				}
			}
			if st.code != rsNone && st.code != rsNoteExcluded {
				st.removed = int16(fi)
				break
			}
		}
		if st.removed >= 0 {
			continue
		}
		// Allocation never trusts the filters for stock: a line is usable
		// only when the node has the units, whatever the rules say.
		sc.fetch(i)
		q := sc.qty[i*L : i*L+L]
		for l := range use {
			if use[l] && !stockOK(q[l], sc.lines[l].qty, splitLines) {
				use[l] = false
			}
		}
		sc.order = append(sc.order, int32(i))
	}
	sc.nCand = len(sc.order)

	if k > 0 && len(sc.order) > 0 {
		sc.rank(s)
	}
	for r, i := range sc.order {
		sc.st[i].rank = int32(r + 1)
	}
	return sc.allocate(s, splitLines)
}

func anyTrue(b []bool) bool {
	for _, x := range b {
		if x {
			return true
		}
	}
	return false
}

func stockOK(have, need int64, splitLines bool) bool {
	if splitLines {
		return have > 0
	}
	return have >= need
}

// rank computes the ranking keys of the candidates and sorts sc.order.
func (sc *scratch) rank(s *cStrategy) {
	o, nodes := sc.o, sc.nodes
	L, k := len(sc.lines), len(s.crits)
	needCos := false
	for j := range s.crits {
		if s.crits[j].kind == ckDistance {
			needCos = true
		}
	}
	if needCos && o.HasLocation {
		sc.cosLat = math.Cos(o.Lat * math.Pi / 180)
	}
	for _, i := range sc.order {
		nd := &nodes[i]
		keys, known := sc.keys[int(i)*k:int(i)*k+k], sc.known[int(i)*k:int(i)*k+k]
		for j := range s.crits {
			c := &s.crits[j]
			var v float64
			ok := true
			switch c.kind {
			case ckPriority:
				v = float64(nd.Priority)
			case ckDistance:
				v, ok = sc.distance(nd)
				v = -v
			case ckShippingCost:
				v, ok = c.cost(nd.ID, o.Region)
				v = -v
			case ckStockDepth:
				v, ok = sc.depth(int(i), L)
			case ckLoad:
				if nd.DailyCapacity > 0 {
					v = -float64(nd.UsedToday) / float64(nd.DailyCapacity)
				}
			}
			keys[j], known[j] = v, ok
		}
	}
	if s.weighted {
		for _, i := range sc.order {
			sc.st[i].score = 0
		}
		sc.lo, sc.hi = grow(sc.lo, k), grow(sc.hi, k)
		for j := range s.crits {
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, i := range sc.order {
				if sc.known[int(i)*k+j] {
					v := sc.keys[int(i)*k+j]
					lo, hi = min(lo, v), max(hi, v)
				}
			}
			sc.lo[j], sc.hi[j] = lo, hi
			w := s.crits[j].weight
			for _, i := range sc.order {
				if sc.known[int(i)*k+j] {
					norm := 1.0
					if hi > lo {
						norm = (sc.keys[int(i)*k+j] - lo) / (hi - lo)
					}
					sc.st[i].score += w * norm
				}
			}
		}
	}
	slices.SortFunc(sc.order, func(a, b int32) int {
		if s.weighted {
			if sa, sb := sc.st[a].score, sc.st[b].score; sa != sb {
				if sa > sb {
					return -1
				}
				return 1
			}
		} else {
			ka, kb := sc.keys[int(a)*k:int(a)*k+k], sc.keys[int(b)*k:int(b)*k+k]
			na, nb := sc.known[int(a)*k:int(a)*k+k], sc.known[int(b)*k:int(b)*k+k]
			for j := range ka {
				if na[j] != nb[j] {
					if na[j] {
						return -1
					}
					return 1
				}
				if na[j] && ka[j] != kb[j] {
					if ka[j] > kb[j] {
						return -1
					}
					return 1
				}
			}
		}
		if c := strings.Compare(sc.nodes[a].ID, sc.nodes[b].ID); c != 0 {
			return c
		}
		return int(a - b)
	})
}

func (sc *scratch) distance(nd *Node) (float64, bool) {
	o := sc.o
	if !o.HasLocation || (nd.Lat == 0 && nd.Lon == 0) || !validCoord(o.Lat, o.Lon) || !validCoord(nd.Lat, nd.Lon) {
		return 0, false
	}
	const rad = math.Pi / 180
	sdLat := math.Sin((nd.Lat - o.Lat) * rad / 2)
	sdLon := math.Sin((nd.Lon - o.Lon) * rad / 2)
	a := sdLat*sdLat + sc.cosLat*math.Cos(nd.Lat*rad)*sdLon*sdLon
	if a > 1 {
		a = 1
	}
	return 2 * earthRadiusKm * math.Asin(math.Sqrt(a)), true
}

// depth is the stock_depth value: the fewest units the order leaves behind
// over the lines node i can ship (0 for a line it can only partly ship).
func (sc *scratch) depth(i, L int) (float64, bool) {
	use, q := sc.use[i*L:i*L+L], sc.qty[i*L:i*L+L]
	best, ok := int64(math.MaxInt64), false
	for l := range use {
		if use[l] {
			left := max(q[l]-sc.lines[l].qty, 0)
			best, ok = min(best, left), true
		}
	}
	return float64(best), ok
}

// allocate applies the split policy over the ranked candidates. It fills
// sc.chose and sc.take and reports whether every line is covered.
func (sc *scratch) allocate(s *cStrategy, splitLines bool) bool {
	L := len(sc.lines)
	sc.rem = grow(sc.rem, L)
	for l := range sc.lines {
		sc.rem[l] = sc.lines[l].qty
	}
	sc.chose = sc.chose[:0]
	sc.take = sc.take[:0]
	maxNodes := s.maxNodes
	if maxNodes <= 0 {
		maxNodes = math.MaxInt
	}
	switch s.policy {
	case pkSingle:
		for _, i := range sc.order {
			full, _ := sc.coverage(int(i), false)
			if full == L {
				sc.choose(int(i), false)
				return true
			}
		}
		return false
	case pkRanked:
		for _, i := range sc.order {
			if len(sc.chose) >= maxNodes || sc.covered() {
				break
			}
			if _, units := sc.coverage(int(i), splitLines); units > 0 && !sc.isDup(int(i)) {
				sc.choose(int(i), splitLines)
			}
		}
	case pkFewest:
		for len(sc.chose) < maxNodes && !sc.covered() {
			best, bestFull, bestUnits := -1, 0, int64(0)
			for _, i := range sc.order {
				if sc.st[i].chosen {
					continue
				}
				full, units := sc.coverage(int(i), splitLines)
				if !splitLines {
					units = 0 // whole lines only: ties go to the ranking
				}
				if full > bestFull || full == bestFull && units > bestUnits {
					if !sc.isDup(int(i)) {
						best, bestFull, bestUnits = int(i), full, units
					}
				}
			}
			if best < 0 {
				break
			}
			sc.choose(best, splitLines)
		}
	}
	return sc.covered()
}

func (sc *scratch) covered() bool {
	for _, r := range sc.rem {
		if r > 0 {
			return false
		}
	}
	return true
}

// coverage returns how many remaining lines node i can ship in full, and how
// many remaining units it can ship under the line-split rule.
func (sc *scratch) coverage(i int, splitLines bool) (full int, units int64) {
	L := len(sc.lines)
	use, q := sc.use[i*L:i*L+L], sc.qty[i*L:i*L+L]
	for l, r := range sc.rem {
		if r <= 0 || !use[l] {
			continue
		}
		switch {
		case q[l] >= r:
			full++
			units += r
		case splitLines && q[l] > 0:
			units += q[l]
		}
	}
	return full, units
}

// isDup reports whether a node with node i's id is already chosen.
func (sc *scratch) isDup(i int) bool {
	id := sc.nodes[i].ID
	for _, c := range sc.chose {
		if sc.nodes[c].ID == id {
			return true
		}
	}
	return false
}

func (sc *scratch) choose(i int, splitLines bool) {
	L := len(sc.lines)
	use, q := sc.use[i*L:i*L+L], sc.qty[i*L:i*L+L]
	sc.st[i].chosen = true
	sc.chose = append(sc.chose, int32(i))
	for l, r := range sc.rem {
		var t int64
		switch {
		case r <= 0 || !use[l]:
		case q[l] >= r:
			t = r
		case splitLines && q[l] > 0:
			t = q[l]
		}
		sc.take = append(sc.take, t)
		sc.rem[l] -= t
	}
}

// unchoose drops the allocation (reject, hold, single-node backorder).
func (sc *scratch) unchoose() {
	for _, i := range sc.chose {
		sc.st[i].chosen = false
	}
	sc.chose = sc.chose[:0]
	sc.take = sc.take[:0]
	for l := range sc.lines {
		sc.rem[l] = sc.lines[l].qty
	}
}

// result builds the caller-owned Result from the scratch state of s.
func (sc *scratch) result(s *cStrategy, out Outcome, reason string) *Result {
	L, k := len(sc.lines), len(s.crits)
	r := &Result{Outcome: out, Strategy: s.name, Reason: reason}
	if out == OutcomeFulfilled {
		if len(sc.chose) == 1 {
			r.Reason = "fulfilled from one node"
		} else {
			r.Reason = "fulfilled from several nodes"
		}
	}
	if len(sc.chose) > 0 {
		nl := 0
		for _, t := range sc.take {
			if t > 0 {
				nl++
			}
		}
		ships := make([]Shipment, 0, len(sc.chose))
		sl := make([]ShipLine, 0, nl)
		for c, i := range sc.chose {
			start := len(sl)
			for l, t := range sc.take[c*L : c*L+L] {
				if t > 0 {
					sl = append(sl, ShipLine{SKU: sc.lines[l].sku, Qty: t})
				}
			}
			if len(sl) > start {
				ships = append(ships, Shipment{NodeID: sc.nodes[i].ID, Lines: sl[start:len(sl):len(sl)]})
			}
		}
		r.Shipments = ships
	}
	if out != OutcomeFulfilled {
		r.Unfilled = sc.unfilled()
	}
	if len(sc.nodes) > 0 {
		ex := make([]NodeExplanation, len(sc.nodes))
		var rv []RankValue
		if k > 0 {
			rv = make([]RankValue, sc.nCand*k)
		}
		for i := range sc.nodes {
			st := &sc.st[i]
			e := &ex[i]
			e.NodeID = sc.nodes[i].ID
			e.code, e.sku, e.detail, e.have, e.need = st.code, st.sku, st.detail, st.have, st.need
			if st.removed >= 0 {
				e.Status = StatusRemoved
				e.Filter = s.filters[st.removed].name
				continue
			}
			e.Status = StatusCandidate
			if st.chosen {
				e.Status = StatusChosen
			}
			e.Rank = int(st.rank)
			if k == 0 {
				continue
			}
			if s.weighted {
				e.Score = st.score
			}
			vals := rv[:k:k]
			rv = rv[k:]
			e.Rankings = vals
			sc.rankValues(s, i, vals)
		}
		r.Explanation = ex
	}
	return r
}

func (sc *scratch) rankValues(s *cStrategy, i int, out []RankValue) {
	k := len(s.crits)
	keys, known := sc.keys[i*k:i*k+k], sc.known[i*k:i*k+k]
	for j := range s.crits {
		c := &s.crits[j]
		v := keys[j]
		switch c.kind {
		case ckDistance, ckShippingCost, ckLoad:
			v = 0 - v
		}
		out[j] = RankValue{Ranking: c.name, Value: v, Unknown: !known[j]}
		if !known[j] {
			out[j].Value = 0
		}
		if s.weighted && known[j] {
			lo, hi := sc.lo[j], sc.hi[j]
			norm := 1.0
			if hi > lo {
				norm = (keys[j] - lo) / (hi - lo)
			}
			out[j].Score = c.weight * norm
		}
	}
}

func (sc *scratch) unfilled() []ShipLine {
	n := 0
	for _, r := range sc.rem {
		if r > 0 {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]ShipLine, 0, n)
	for l, r := range sc.rem {
		if r > 0 {
			out = append(out, ShipLine{SKU: sc.lines[l].sku, Qty: r})
		}
	}
	return out
}

// fallback builds the result of the last matching strategy s, which did not
// fill the order.
func (sc *scratch) fallback(s *cStrategy) *Result {
	why := sc.shortfall(s)
	var out Outcome
	switch s.fallback {
	case FallbackBackorder:
		out = OutcomeBackorder
		if s.policy == pkSingle {
			sc.unchoose()
		}
	case FallbackHold:
		out = OutcomeHold
		sc.unchoose()
	default:
		out = OutcomeRejected
		sc.unchoose()
	}
	return sc.result(s, out, "strategy "+strconv.Quote(s.name)+" cannot fill the order: "+why+"; fallback "+string(s.fallback))
}

// shortfall says why the allocation of s fell short.
func (sc *scratch) shortfall(s *cStrategy) string {
	if sc.nCand == 0 {
		if len(sc.nodes) == 0 {
			return "no candidate nodes"
		}
		return "every node was removed by a filter"
	}
	if s.policy == pkSingle {
		return "no single node can ship every line"
	}
	first := -1
	for l, r := range sc.rem {
		if r > 0 {
			first = l
			break
		}
	}
	if first < 0 {
		return "nothing short"
	}
	msg := "SKU " + sc.lines[first].sku + " short by " + strconv.FormatInt(sc.rem[first], 10) + " of " +
		strconv.FormatInt(sc.lines[first].qty, 10)
	if s.maxNodes > 0 && len(sc.chose) >= s.maxNodes {
		msg += " with max_nodes " + strconv.Itoa(s.maxNodes) + " reached"
	}
	return msg
}

// noStrategy is the result when no strategy matches the order.
func (sc *scratch) noStrategy(f Fallback) *Result {
	sc.rem = grow(sc.rem, len(sc.lines))
	for l := range sc.lines {
		sc.rem[l] = sc.lines[l].qty
	}
	out := OutcomeRejected
	switch f {
	case FallbackBackorder:
		out = OutcomeBackorder
	case FallbackHold:
		out = OutcomeHold
	}
	return &Result{Outcome: out, Unfilled: sc.unfilled(), Reason: "no strategy matches the order; fallback " + string(f)}
}
