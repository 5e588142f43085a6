package sourcing

import (
	"math"
	"slices"
	"strings"
)

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
