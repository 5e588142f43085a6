package sourcing

import "math"

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
	lineOf   []int32          // order line -> merged line, -1 if ignored
	lineExcl []uint64         // per line: bit e set when exclusion filter e matches its tags
	exclTag  []string         // exclusions*L: the tag that made filter e match line l

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
	clear(sc.exclTag)
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
	sc.lineOf = grow(sc.lineOf, len(ls))
	for i := range ls {
		l := &ls[i]
		sc.lineOf[i] = -1
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
			sc.lineOf[i] = int32(len(sc.lines))
			sc.lines = append(sc.lines, aggLine{sku: l.SKU, qty: l.Qty})
		} else if q := sc.lines[j].qty + l.Qty; q > sc.lines[j].qty {
			sc.lines[j].qty = q
		} else {
			sc.lines[j].qty = math.MaxInt64 // saturate instead of overflowing
		}
		if j >= 0 {
			sc.lineOf[i] = int32(j)
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

// markExclusions sets, for every merged line, the bits of the sku_exclusion
// filters whose tags it carries (over every order line with its SKU), and
// remembers the matching tag for explanations.
func (sc *scratch) markExclusions(s *cStrategy) {
	L := len(sc.lines)
	sc.lineExcl = grow(sc.lineExcl, L)
	clear(sc.lineExcl)
	sc.exclTag = grow(sc.exclTag, s.exclusions*L)
	for fi := range s.filters {
		f := &s.filters[fi]
		if f.kind != fkSKUExclusion {
			continue
		}
		for i := range sc.o.Lines {
			l := sc.lineOf[i]
			if l < 0 || sc.lineExcl[l]&(1<<f.excl) != 0 {
				continue
			}
			for _, t := range sc.o.Lines[i].Tags {
				if contains(f.tags, t) {
					sc.lineExcl[l] |= 1 << f.excl
					sc.exclTag[f.excl*L+int(l)] = t
					break
				}
			}
		}
	}
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
		sc.markExclusions(s)
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
				tag := sc.exclTag[f.excl*L+first]
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
				first, most := -1, -1 // first failing line; failing line with the most units
				for l := range use {
					if use[l] && !stockOK(q[l], sc.lines[l].qty, splitLines) {
						use[l] = false
						if first < 0 {
							first = l
						}
						if most < 0 || q[l] > q[most] {
							most = l
						}
					}
				}
				switch {
				case single && first >= 0:
					st.code, st.sku, st.have, st.need = rsStockWhole, sc.lines[first].sku, q[first], sc.lines[first].qty
				case single:
					// every line was already excluded or is in stock
				case !anyTrue(use) && splitLines:
					st.code = rsStockNone
				case !anyTrue(use) && most >= 0 && q[most] > 0:
					st.code, st.sku, st.have, st.need = rsStockNoFull, sc.lines[most].sku, q[most], sc.lines[most].qty
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
