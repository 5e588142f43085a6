package sourcing

import "strconv"

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
