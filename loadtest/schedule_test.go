package loadtest

import (
	"math"
	"testing"
	"time"
)

// countPerSecond buckets the arrivals of s by whole second.
func countPerSecond(t *testing.T, s *Schedule, poisson bool) []int {
	t.Helper()
	counts := make([]int, int(math.Ceil(s.Duration.Seconds())))
	prev := time.Duration(-1)
	for at := range s.Arrivals(poisson, 42) {
		if at < prev {
			t.Fatalf("arrival at %v after one at %v: intended times must not go back", at, prev)
		}
		if at < 0 || at >= s.Duration {
			t.Fatalf("arrival at %v outside [0, %v)", at, s.Duration)
		}
		prev = at
		counts[int(at/time.Second)]++
	}
	return counts
}

func TestScheduleArrivalsPerSecondFollowTheProfile(t *testing.T) {
	tests := []struct {
		scenario string
		profile  Profile
		rate     float64
		duration time.Duration
		want     func(sec int) float64 // expected arrivals in second sec
	}{
		{"steady offers the rate every second", ProfileSteady, 200, 10 * time.Second,
			func(int) float64 { return 200 }},
		{"ramp rises linearly from rate/10 to rate", ProfileRamp, 500, 20 * time.Second,
			func(sec int) float64 { return 50 + 450*(float64(sec)+0.5)/20 }},
		{"a 3-minute flash sale has a one-minute spike of ten times the baseline in the middle", ProfileFlashSale, 400, 180 * time.Second,
			func(sec int) float64 {
				if sec >= 60 && sec < 120 {
					return 400
				}
				return 40
			}},
		{"a 10-minute flash sale keeps its spike at one minute", ProfileFlashSale, 100, 600 * time.Second,
			func(sec int) float64 {
				if sec >= 270 && sec < 330 {
					return 100
				}
				return 10
			}},
		{"a 30s flash sale scales the spike down to a third of the run", ProfileFlashSale, 300, 30 * time.Second,
			func(sec int) float64 {
				if sec >= 10 && sec < 20 {
					return 300
				}
				return 30
			}},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			s, err := NewSchedule(tt.profile, tt.rate, tt.duration)
			if err != nil {
				t.Fatal(err)
			}
			total := 0.0
			for sec, got := range countPerSecond(t, s, false) {
				want := tt.want(sec)
				total += want
				// Even spacing: each second gets its expected count ±1
				// (the boundaries cut between arrivals).
				if math.Abs(float64(got)-want) > 1.01 {
					t.Errorf("second %d: got %d arrivals, want %.1f ±1", sec, got, want)
				}
			}
			if got := s.Total(); math.Abs(got-total) > 1 {
				t.Errorf("got Total %.1f, want %.1f", got, total)
			}
		})
	}
}

func TestScheduleRateAt(t *testing.T) {
	s, err := NewSchedule(ProfileFlashSale, 1000, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		at   time.Duration
		want float64
	}{{0, 100}, {119 * time.Second, 100}, {2 * time.Minute, 1000}, {179 * time.Second, 1000}, {3 * time.Minute, 100}, {5 * time.Minute, 0}} {
		if got := s.RateAt(c.at); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("RateAt(%v): got %v, want %v", c.at, got, c.want)
		}
	}
	// 4 minutes at 100/s and 1 at 1000/s.
	if got, want := s.OfferedRate(), (240*100.0+60*1000)/300; math.Abs(got-want) > 1e-6 {
		t.Errorf("got offered rate %v, want %v", got, want)
	}
}

func TestPoissonArrivalsKeepTheMeanRate(t *testing.T) {
	s, err := NewSchedule(ProfileSteady, 1000, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	counts := countPerSecond(t, s, true)
	total := 0
	uneven := false
	for _, c := range counts {
		total += c
		uneven = uneven || c != 1000
	}
	// 20,000 expected; a Poisson count has σ ≈ 141: allow 5σ.
	if math.Abs(float64(total)-20000) > 710 {
		t.Errorf("got %d arrivals, want 20000 ± 710", total)
	}
	if !uneven {
		t.Error("got exactly 1000 in every second: the arrivals are not random")
	}
	a := collect(s.Arrivals(true, 7))
	b := collect(s.Arrivals(true, 7))
	if len(a) != len(b) || a[100] != b[100] {
		t.Error("the same seed gave different arrivals")
	}
}

func collect(seq func(func(time.Duration) bool)) []time.Duration {
	var out []time.Duration
	for at := range seq {
		out = append(out, at)
	}
	return out
}

func TestNewScheduleRejectsBadArguments(t *testing.T) {
	for _, c := range []struct {
		scenario string
		p        Profile
		rate     float64
		d        time.Duration
	}{
		{"an unknown profile", "burst", 10, time.Second},
		{"a zero rate", ProfileSteady, 0, time.Second},
		{"a NaN rate", ProfileSteady, math.NaN(), time.Second},
		{"a zero duration", ProfileRamp, 10, 0},
	} {
		if _, err := NewSchedule(c.p, c.rate, c.d); err == nil {
			t.Errorf("%s: got no error", c.scenario)
		}
	}
}
