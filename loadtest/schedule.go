package loadtest

import (
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"time"
)

// Profile names the shape of the offered load over time.
type Profile string

// The profiles. Rate below is the --rate given to run: the peak rate.
const (
	// ProfileSteady offers Rate arrivals per second for the whole run.
	ProfileSteady Profile = "steady"
	// ProfileRamp rises linearly from Rate/10 at the start to Rate at the end.
	ProfileRamp Profile = "ramp"
	// ProfileFlashSale offers a baseline of Rate/10, then a spike of Rate
	// (ten times the baseline) for one minute in the middle of the run,
	// then the baseline again. When the run is shorter than three minutes
	// the spike lasts a third of it, so every phase stays visible: a 60s
	// run has 20s of baseline, 20s of spike, 20s of baseline.
	ProfileFlashSale Profile = "flash-sale"
)

// Profiles lists the known profiles.
var Profiles = []Profile{ProfileSteady, ProfileRamp, ProfileFlashSale}

// FlashSaleSpike is the length of the flash-sale spike in runs of at least
// three times as long.
const FlashSaleSpike = time.Minute

// segment is a piece of the rate function, linear from r0 at start to r1
// at end (seconds since the start of the run).
type segment struct {
	start, end float64
	r0, r1     float64
	cum        float64 // expected arrivals before start
}

func (s segment) count(t float64) float64 { // expected arrivals in [start, t]
	tau := t - s.start
	return s.r0*tau + (s.r1-s.r0)/(s.end-s.start)*tau*tau/2
}

// Schedule is the arrival-rate function r(t) of a run, piecewise linear,
// and its integral Λ(t), the expected number of arrivals by t. Arrivals
// are placed by inverting Λ, so they follow the profile exactly and do not
// depend on anything the server does.
type Schedule struct {
	Profile  Profile
	Rate     float64
	Duration time.Duration
	segs     []segment
}

// NewSchedule builds the schedule of profile p at peak rate (arrivals per
// second) for duration d.
func NewSchedule(p Profile, rate float64, d time.Duration) (*Schedule, error) {
	if !(rate > 0) || math.IsInf(rate, 0) {
		return nil, fmt.Errorf("loadtest: rate must be > 0, got %v", rate)
	}
	if d <= 0 {
		return nil, fmt.Errorf("loadtest: duration must be > 0, got %v", d)
	}
	D := d.Seconds()
	s := &Schedule{Profile: p, Rate: rate, Duration: d}
	switch p {
	case ProfileSteady, "":
		s.Profile = ProfileSteady
		s.segs = []segment{{0, D, rate, rate, 0}}
	case ProfileRamp:
		s.segs = []segment{{0, D, rate / 10, rate, 0}}
	case ProfileFlashSale:
		spike := min(FlashSaleSpike.Seconds(), D/3)
		a := (D - spike) / 2
		base := rate / 10
		s.segs = []segment{{0, a, base, base, 0}, {a, a + spike, rate, rate, 0}, {a + spike, D, base, base, 0}}
	default:
		return nil, fmt.Errorf("loadtest: unknown profile %q (want steady, ramp or flash-sale)", p)
	}
	cum := 0.0
	for i := range s.segs {
		s.segs[i].cum = cum
		cum += s.segs[i].count(s.segs[i].end)
	}
	return s, nil
}

// RateAt is r(t), the offered arrivals per second at t.
func (s *Schedule) RateAt(t time.Duration) float64 {
	x := t.Seconds()
	for _, g := range s.segs {
		if x >= g.start && x < g.end {
			return g.r0 + (g.r1-g.r0)*(x-g.start)/(g.end-g.start)
		}
	}
	return 0
}

// Expected is Λ(t): the expected number of arrivals in [0, t].
func (s *Schedule) Expected(t time.Duration) float64 {
	x := min(max(t.Seconds(), 0), s.Duration.Seconds())
	for _, g := range s.segs {
		if x <= g.end {
			return g.cum + g.count(x)
		}
	}
	last := s.segs[len(s.segs)-1]
	return last.cum + last.count(last.end)
}

// Total is the expected number of arrivals of the whole run.
func (s *Schedule) Total() float64 { return s.Expected(s.Duration) }

// OfferedRate is Total over the duration: the mean offered rate.
func (s *Schedule) OfferedRate() float64 { return s.Total() / s.Duration.Seconds() }

// inverse returns the t with Λ(t) = n, or false past the end.
func (s *Schedule) inverse(n float64) (float64, bool) {
	for _, g := range s.segs {
		end := g.cum + g.count(g.end)
		if n >= end {
			continue
		}
		m := n - g.cum
		a := (g.r1 - g.r0) / (g.end - g.start)
		// Solve r0·τ + a·τ²/2 = m for τ ≥ 0, in the form that is stable
		// when a is 0 or tiny.
		root := math.Sqrt(max(g.r0*g.r0+2*a*m, 0))
		if g.r0+root == 0 {
			return g.start, true
		}
		return g.start + 2*m/(g.r0+root), true
	}
	return 0, false
}

// Arrivals yields the intended send times (offsets from the start) of the
// run, in increasing order. Uniform arrivals are spaced evenly in
// "operational time": the k-th comes at Λ⁻¹(k), so a steady run at 100/s
// sends one every 10ms. Poisson arrivals (seeded, reproducible) add an
// exponential gap of mean 1 in operational time, which makes a
// non-homogeneous Poisson process with rate r(t): the bursts real
// customers produce.
func (s *Schedule) Arrivals(poisson bool, seed uint64) iter.Seq[time.Duration] {
	return func(yield func(time.Duration) bool) {
		r := rand.New(rand.NewPCG(seed, 0x5eed))
		n := 0.0
		if poisson {
			n = r.ExpFloat64()
		}
		for {
			t, ok := s.inverse(n)
			if !ok || t >= s.Duration.Seconds() {
				return
			}
			if !yield(time.Duration(t * float64(time.Second))) {
				return
			}
			if poisson {
				n += r.ExpFloat64()
			} else {
				n++
			}
		}
	}
}
