package sourcing

import "math"

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
			left := 0 // lines still needed: a node covering them all cannot be beaten
			for _, r := range sc.rem {
				if r > 0 {
					left++
				}
			}
			best, bestFull, bestUnits := -1, 0, int64(0)
			for _, i := range sc.order {
				if bestFull == left {
					break
				}
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
			units = satAdd(units, r)
		case splitLines && q[l] > 0:
			units = satAdd(units, q[l])
		}
	}
	return full, units
}

// satAdd adds two non-negative quantities without wrapping around.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
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
