package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// RunConfig configures Run. Rate (unless Closed) and Duration are
// required; the rest has defaults given per field.
type RunConfig struct {
	// Closed runs a closed loop instead of the open model: each of the
	// Workers clients sends its next order as soon as its previous one is
	// answered, until Duration has passed. There is no schedule (Rate and
	// Profile are ignored), so each request's latency is measured from its
	// actual send: Latency equals ServiceTime, and the achieved rate is the
	// figure (the capacity at that concurrency).
	Closed bool
	// Profile shapes the offered load. Default steady.
	Profile Profile
	// Rate is the peak offered rate in orders per second.
	Rate float64
	// Duration is how long arrivals are scheduled for.
	Duration time.Duration
	// Workers is the number of requests that may be in flight at once.
	// When all are busy, arrivals wait in a queue with their intended
	// time: the schedule never slows down, and the wait shows up in the
	// measured latency. In a closed loop, the number of clients. Default
	// 256.
	Workers int
	// Poisson spaces arrivals randomly (a Poisson process following the
	// profile) instead of evenly. Default false: even spacing.
	Poisson bool
	// Seed makes the arrival times and the content of each order
	// reproducible (arrival k's order depends on Seed and k only; the run
	// id in external ids still differs). Default: random.
	Seed uint64
	// Mix shapes the orders.
	Mix MixConfig
	// Drain bounds how long queued and in-flight requests may take after
	// the last arrival; what is still queued then is counted as unsent and
	// what is in flight is cancelled. Default 30s.
	Drain time.Duration
	// Progress, if not nil, gets a progress line every ProgressEvery.
	Progress io.Writer
	// ProgressEvery defaults to 1s.
	ProgressEvery time.Duration
	// Faults are injected through Injector at their offsets into the
	// schedule (each offset below Duration).
	Faults   []FaultSpec
	Injector FaultInjector
	// ReturnShare is the share of accepted paid orders returned once they
	// ship (returns.go); 0: none. ReturnTimeout bounds the returns after
	// the load's last answer (default 2m); ReturnWorkers (default 16) run
	// them, polling every ReturnPoll (default 500ms).
	ReturnShare   float64
	ReturnTimeout time.Duration
	ReturnWorkers int
	ReturnPoll    time.Duration
}

func (c *RunConfig) setDefaults(nSKUs int) {
	if c.Profile == "" {
		c.Profile = ProfileSteady
	}
	if c.Workers <= 0 {
		c.Workers = 256
	}
	if c.Seed == 0 {
		c.Seed = mrand.Uint64()
	}
	if c.Drain <= 0 {
		c.Drain = 30 * time.Second
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = time.Second
	}
	if c.ReturnTimeout <= 0 {
		c.ReturnTimeout = 2 * time.Minute
	}
	if c.ReturnWorkers <= 0 {
		c.ReturnWorkers = 16
	}
	if c.ReturnPoll <= 0 {
		c.ReturnPoll = 500 * time.Millisecond
	}
	c.Mix.setDefaults(nSKUs)
}

// AcceptedOrder is an order the API answered 201 or 200, with what the
// audit needs: the lines sent, the payment status sent, and the order's
// id, status and reservation deadline from the answer.
type AcceptedOrder struct {
	ID            string    `json:"id"`
	Channel       string    `json:"channel"`
	ExternalID    string    `json:"external_id"`
	HTTPStatus    int       `json:"http_status"`
	Status        string    `json:"status"`
	Pending       bool      `json:"pending"`
	ReservedUntil time.Time `json:"reserved_until,omitzero"`
	Lines         []Line    `json:"lines"`
	// The buyer side: the generated buyer, the omsd customer the answer
	// named, whether the order carried its own attribution, and the
	// attribution answered (associate and source).
	Buyer      int       `json:"buyer,omitempty"`
	OmsdID     string    `json:"omsd_id,omitempty"`
	Attributed bool      `json:"attributed,omitempty"`
	Associate  string    `json:"associate,omitempty"`
	Source     string    `json:"attribution_source,omitempty"`
	SentAt     time.Time `json:"sent_at,omitzero"`
	AnsweredAt time.Time `json:"answered_at,omitzero"`
}

// Result is what Run measured.
type Result struct {
	RunID string
	// Closed is set for a closed-loop run (RunConfig.Closed): Profile is
	// empty, Rate and OfferedRate are 0.
	Closed   bool
	Profile  Profile
	Rate     float64
	Duration time.Duration
	Workers  int
	Seed     uint64
	Start    time.Time
	// Elapsed runs from the start of the schedule to the last answer.
	Elapsed time.Duration
	// OfferedRate is the schedule's mean rate (expected arrivals /
	// Duration); 0 in a closed loop, which offers no rate of its own.
	OfferedRate float64
	// Interrupted is set when ctx was cancelled before the schedule ended.
	Interrupted bool

	Scheduled int64 // arrivals dispatched (all of them, unless interrupted)
	Sent      int64 // requests that went out
	Answered  int64 // requests with an HTTP answer (any status)
	Errors    int64 // requests that got no answer after their retries
	Unsent    int64 // arrivals still queued when the drain time ran out
	Retries   int64 // extra attempts
	// GaveUp counts requests whose every attempt failed (no answer, or a
	// 5xx/429 each time): their orders are looked up during the audit.
	GaveUp int64
	// Final503 counts requests whose final answer was 503; Attempts503
	// every attempt answered 503 (retried ones included).
	Final503, Attempts503 int64

	StatusCounts map[string]int64 // "201", "409", "error", "unsent", "cancelled"
	ProblemTypes map[string]int64 // problem+json "type" of non-2xx answers
	ErrorSamples []string         // a few distinct transport errors

	// Latency is from the intended send time to the final answer (or
	// failure), in microseconds: the queueing delay behind busy workers
	// is in it. ServiceTime is from the first actual send (what a
	// closed-loop tool would report). SendLag is actual send − intended.
	Latency, ServiceTime, SendLag *Histogram
	// AcceptedLatency is Latency of the requests answered 2xx only.
	AcceptedLatency *Histogram

	// Series has one entry per second since Start.
	Series []Second

	Accepted []AcceptedOrder
	// Unknown are orders whose POST ended without a definite answer (no
	// answer, or a 5xx/429, after the retries): the audit looks them up.
	Unknown []UnknownOrder

	// Returns are the returns the run made (RunConfig.ReturnShare).
	Returns     []ReturnRecord
	ReturnStats ReturnStats

	// Faults are the faults injected, in the order of their offsets.
	Faults []FaultReport
	events []statusEvent
}

// Second is one second of the run. Scheduled and latency are by intended
// time, Sent by actual send time, Answered and Errors by completion time.
type Second struct {
	T         int     `json:"t"`
	Scheduled int64   `json:"scheduled"`
	Sent      int64   `json:"sent"`
	Answered  int64   `json:"answered"`
	Accepted  int64   `json:"accepted"`
	Errors    int64   `json:"errors"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	// Status counts final outcomes by completion time ("201", "503",
	// "error", ...).
	Status map[string]int64 `json:"status,omitempty"`

	lat *Histogram
}

type job struct {
	k        int64
	intended time.Time // zero in a closed loop: the worker stamps its send time
}

type outcome struct {
	k        int64
	intended time.Time
	sentAt   time.Time // zero: never sent
	doneAt   time.Time
	status   int   // 0: no answer
	err      error // transport error (status 0)
	attempts int
	tries    []int
	body     []byte // 2xx: the order; else the problem
	order    genOrder
}

// Run offers load to the API as an open model: arrivals follow the
// schedule of cfg, whatever the server does, and each request's latency
// is measured from its intended time. It returns the measurements when
// the schedule is done and the last request answered (or the drain time
// ran out). A cancelled ctx stops it early with what was measured so far
// (Result.Interrupted) and no error. Errors are for unusable arguments.
//
// With cfg.Closed it runs a closed loop instead (see RunConfig.Closed).
func Run(ctx context.Context, c *Client, seed *SeedFile, cfg RunConfig) (*Result, error) {
	if err := seed.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults(len(seed.SKUs))
	if err := cfg.Mix.validate(); err != nil {
		return nil, err
	}
	if cfg.ReturnShare < 0 || cfg.ReturnShare > 1 {
		return nil, fmt.Errorf("loadtest: return share %v outside [0, 1]", cfg.ReturnShare)
	}
	var sched *Schedule
	if cfg.Closed {
		if cfg.Duration <= 0 {
			return nil, errors.New("loadtest: a closed loop needs a duration > 0")
		}
	} else {
		var err error
		if sched, err = NewSchedule(cfg.Profile, cfg.Rate, cfg.Duration); err != nil {
			return nil, err
		}
	}
	if len(cfg.Faults) > 0 && cfg.Injector == nil {
		return nil, errors.New("loadtest: faults given without an injector (a stack run by omsd dev)")
	}
	for _, f := range cfg.Faults {
		if f.Offset >= cfg.Duration {
			return nil, fmt.Errorf("loadtest: fault %s: the offset is not within the run's %s", f, cfg.Duration)
		}
	}
	res := &Result{
		RunID:           newRunID(),
		Closed:          cfg.Closed,
		Duration:        cfg.Duration,
		Workers:         cfg.Workers,
		Seed:            cfg.Seed,
		StatusCounts:    map[string]int64{},
		ProblemTypes:    map[string]int64{},
		Latency:         NewHistogram(),
		ServiceTime:     NewHistogram(),
		SendLag:         NewHistogram(),
		AcceptedLatency: NewHistogram(),
	}
	if sched != nil {
		res.Profile, res.Rate, res.OfferedRate = sched.Profile, cfg.Rate, sched.OfferedRate()
	}
	gen := newOrderGen(seed, cfg.Mix, res.RunID)

	// Open model: a queue in front of the workers, so that the dispatcher
	// keeps to the schedule while they are busy. Closed loop: no queue, a
	// job is handed over only when a worker is free to send it at once.
	jobs := make(chan job, cfg.Workers)
	if cfg.Closed {
		jobs = make(chan job)
	}
	outcomes := make(chan outcome, 4096)
	// Requests live under drainCtx: cancelled with ctx, or Drain after the
	// last arrival.
	drainCtx, cancelDrain := context.WithCancel(ctx)
	defer cancelDrain()
	var sent atomic.Int64

	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Reseeded per arrival, so arrival k's order depends on (Seed,
			// k) only, not on which worker takes it.
			pcg := mrand.NewPCG(0, 0)
			r := mrand.New(pcg)
			z := gen.newZipf(r)
			for j := range jobs {
				pcg.Seed(cfg.Seed, uint64(j.k))
				out := outcome{k: j.k, intended: j.intended}
				if drainCtx.Err() != nil {
					outcomes <- out
					continue
				}
				o := gen.make(r, z, j.k)
				out.order = o
				out.sentAt = time.Now()
				if out.intended.IsZero() {
					out.intended = out.sentAt // closed loop: sent the moment it is taken
				}
				sent.Add(1)
				resp, err := c.Do(drainCtx, http.MethodPost, "/v1/orders", gen.channels[o.channel].APIKey, o.idemKey, o.body)
				out.doneAt = time.Now()
				out.status, out.err, out.attempts, out.body, out.tries = resp.Status, err, resp.Attempts, resp.Body, resp.Tries
				outcomes <- out
			}
		}()
	}

	start := time.Now().Add(10 * time.Millisecond)
	res.Start = start
	col := newCollector(res, gen, start)
	retCtx, cancelRet := context.WithCancel(ctx)
	defer cancelRet()
	if cfg.ReturnShare > 0 {
		col.returns = newReturner(retCtx, c, gen, cfg.ReturnWorkers, cfg.ReturnPoll)
		col.returnShare, col.seed = cfg.ReturnShare, cfg.Seed
	}
	colDone := make(chan struct{})
	go func() {
		defer close(colDone)
		col.loop(outcomes, cfg.Progress, cfg.ProgressEvery, &sent)
	}()

	faultsDone := injectFaults(drainCtx, cfg.Injector, cfg.Faults, start, res)

	var k int64
	if cfg.Closed {
		k = dispatchClosed(ctx, jobs, start, cfg.Duration)
	} else {
		k = dispatchOpen(ctx, jobs, sched, start, cfg)
	}
	close(jobs)
	res.Scheduled = k
	res.Interrupted = ctx.Err() != nil
	drainTimer := time.AfterFunc(cfg.Drain, cancelDrain)
	wg.Wait()
	drainTimer.Stop()
	close(outcomes)
	<-colDone
	if col.returns != nil {
		retTimer := time.AfterFunc(cfg.ReturnTimeout, cancelRet)
		res.Returns, res.ReturnStats = col.returns.finish()
		retTimer.Stop()
	}
	faultsDone()
	col.finish()
	return res, nil
}

// dispatchOpen hands out the schedule's arrivals and returns how many.
// Intended times come from the schedule alone. If the queue is full it
// blocks, but the times it hands out afterwards are still the scheduled
// ones, so the lateness is measured, not hidden.
func dispatchOpen(ctx context.Context, jobs chan<- job, sched *Schedule, start time.Time, cfg RunConfig) int64 {
	var k int64
	timer := time.NewTimer(time.Hour)
	timer.Stop()
dispatch:
	for off := range sched.Arrivals(cfg.Poisson, cfg.Seed) {
		intended := start.Add(off)
		if d := time.Until(intended); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				timer.Stop()
				break dispatch
			case <-timer.C:
			}
		}
		select {
		case jobs <- job{k: k, intended: intended}:
			k++
		case <-ctx.Done():
			break dispatch
		}
	}
	return k
}

// dispatchClosed hands a job to whichever worker is free, from start until
// d has passed, and returns how many it handed out. jobs is unbuffered: a
// job is taken only by a worker whose previous request was answered, so
// at most Workers requests are in flight and each goes out on receipt.
func dispatchClosed(ctx context.Context, jobs chan<- job, start time.Time, d time.Duration) int64 {
	wait := time.NewTimer(time.Until(start))
	select {
	case <-ctx.Done():
		wait.Stop()
		return 0
	case <-wait.C:
	}
	end := time.NewTimer(time.Until(start.Add(d)))
	defer end.Stop()
	var k int64
	for {
		select {
		case jobs <- job{k: k}:
			k++
		case <-end.C:
			return k
		case <-ctx.Done():
			return k
		}
	}
}

// injectFaults starts a goroutine per fault that injects it at its offset
// and records it in res.Faults; the returned function waits for them (a
// fault whose time has not come when ctx ends is recorded as not
// injected).
func injectFaults(ctx context.Context, inj FaultInjector, specs []FaultSpec, start time.Time, res *Result) func() {
	if len(specs) == 0 {
		return func() {}
	}
	recs := make([]FaultReport, len(specs))
	var wg sync.WaitGroup
	for i, f := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := FaultReport{Kind: f.Kind, OffsetS: round3(f.Offset.Seconds())}
			t := time.NewTimer(time.Until(start.Add(f.Offset)))
			defer t.Stop()
			select {
			case <-ctx.Done():
				r.Error = "not injected: the run ended first"
				recs[i] = r
				return
			case <-t.C:
			}
			asked := time.Now()
			ev, err := inj.Inject(ctx, f.Kind)
			if err != nil {
				r.Error = err.Error()
				r.StartS = round3(asked.Sub(start).Seconds())
				recs[i] = r
				return
			}
			at := ev.StartedAt
			if at.IsZero() {
				at = asked
			}
			r.id, r.StartedAt, r.Target, r.Detail, r.Error = ev.ID, at.UTC(), ev.Target, ev.Detail, ev.Error
			r.StartS = round3(at.Sub(start).Seconds())
			r.DurationS = round3((time.Duration(ev.Duration) * time.Millisecond).Seconds())
			if ev.EndedAt != nil {
				r.DurationS, r.Ended = round3(ev.EndedAt.Sub(ev.StartedAt).Seconds()), true
			}
			recs[i] = r
		}()
	}
	return func() {
		wg.Wait()
		sort.SliceStable(recs, func(i, j int) bool { return recs[i].OffsetS < recs[j].OffsetS })
		res.Faults = recs
	}
}

func newRunID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("0102T1504") + hex.EncodeToString(b[:])
}

// collector owns the Result while Run is going: only its goroutine
// touches the histograms.
type collector struct {
	res   *Result
	gen   *orderGen
	start time.Time
	last  time.Time
	seen  map[string]bool // accepted order ids (a retry's 200 repeats the 201)
	// returns, when set, gets the accepted paid orders chosen for a return.
	returns     *returner
	returnShare float64
	seed        uint64

	lastSent, lastAnswered int64
	lastTick               time.Time
}

func newCollector(res *Result, gen *orderGen, start time.Time) *collector {
	return &collector{res: res, gen: gen, start: start, last: start, lastTick: start, seen: map[string]bool{}}
}

func (c *collector) second(t time.Time) *Second {
	i := max(int(t.Sub(c.start)/time.Second), 0)
	for len(c.res.Series) <= i {
		c.res.Series = append(c.res.Series, Second{T: len(c.res.Series)})
	}
	return &c.res.Series[i]
}

func (c *collector) loop(outcomes <-chan outcome, progress io.Writer, every time.Duration, sent *atomic.Int64) {
	var tick <-chan time.Time
	if progress != nil {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case o, ok := <-outcomes:
			if !ok {
				return
			}
			c.add(o)
		case now := <-tick:
			c.progress(progress, now, sent.Load())
		}
	}
}

func (c *collector) progress(w io.Writer, now time.Time, sent int64) {
	dt := now.Sub(c.lastTick).Seconds()
	if dt <= 0 {
		return
	}
	r := c.res
	fmt.Fprintf(w, "%6s  sent %7.0f/s  answered %7.0f/s  2xx %d  errors %d  p99 %s (so far)\n",
		now.Sub(c.start).Truncate(time.Second), float64(sent-c.lastSent)/dt, float64(r.Answered-c.lastAnswered)/dt,
		int64(len(r.Accepted)), r.Errors, fmtMs(r.Latency.Quantile(0.99)))
	c.lastSent, c.lastAnswered, c.lastTick = sent, r.Answered, now
}

func (c *collector) add(o outcome) {
	r := c.res
	sIntended := c.second(o.intended)
	sIntended.Scheduled++
	if o.sentAt.IsZero() {
		r.Unsent++
		r.StatusCounts["unsent"]++
		return
	}
	r.Sent++
	c.second(o.sentAt).Sent++
	r.Retries += int64(max(o.attempts-1, 0))
	if o.doneAt.After(c.last) {
		c.last = o.doneAt
	}
	lat := o.doneAt.Sub(o.intended)
	r.Latency.Record(lat)
	r.ServiceTime.Record(o.doneAt.Sub(o.sentAt))
	r.SendLag.Record(o.sentAt.Sub(o.intended))
	if sIntended.lat == nil {
		sIntended.lat = newSecondHistogram()
	}
	sIntended.lat.Record(lat)
	sDone := c.second(o.doneAt)
	for _, st := range o.tries {
		if st == http.StatusServiceUnavailable {
			r.Attempts503++
		}
	}
	gaveUp := o.err != nil || retryable(o.status)
	if gaveUp {
		r.GaveUp++
		r.Unknown = append(r.Unknown, UnknownOrder{Channel: c.gen.channels[o.order.channel].ID,
			ExternalID: o.order.externalID, Pending: o.order.pending, Lines: o.order.lines})
	}
	key := strconv.Itoa(o.status)
	if o.err != nil {
		key = "error"
		if errors.Is(o.err, context.Canceled) {
			key = "cancelled"
		}
	}
	if sDone.Status == nil {
		sDone.Status = map[string]int64{}
	}
	sDone.Status[key]++
	r.events = append(r.events, statusEvent{at: o.doneAt.Sub(c.start), status: key, retries: max(o.attempts-1, 0), gaveUp: gaveUp})
	if o.err != nil {
		r.StatusCounts[key]++
		r.Errors++
		sDone.Errors++
		if len(r.ErrorSamples) < 10 {
			msg := o.err.Error()
			dup := false
			for _, s := range r.ErrorSamples {
				dup = dup || s == msg
			}
			if !dup {
				r.ErrorSamples = append(r.ErrorSamples, msg)
			}
		}
		return
	}
	r.Answered++
	sDone.Answered++
	r.StatusCounts[key]++
	if o.status == http.StatusServiceUnavailable {
		r.Final503++
	}
	if o.status < 200 || o.status > 299 {
		var p problem
		if json.Unmarshal(o.body, &p) == nil && p.Type != "" {
			r.ProblemTypes[p.Type]++
		}
		return
	}
	sDone.Accepted++
	r.AcceptedLatency.Record(lat)
	var v OrderView
	if err := json.Unmarshal(o.body, &v); err != nil || v.ID == "" {
		r.StatusCounts["2xx-without-id"]++
		return
	}
	if c.seen[v.ID] {
		return
	}
	c.seen[v.ID] = true
	r.Accepted = append(r.Accepted, AcceptedOrder{
		ID:            v.ID,
		Channel:       c.gen.channels[o.order.channel].ID,
		ExternalID:    o.order.externalID,
		HTTPStatus:    o.status,
		Status:        v.Status,
		Pending:       o.order.pending,
		ReservedUntil: v.ReservedUntil.Time,
		Lines:         o.order.lines,
		Buyer:         o.order.buyer,
		OmsdID:        v.Customer.OmsdID,
		Attributed:    o.order.attributed,
		Associate:     v.Attribution.Associate,
		Source:        v.Attribution.Source,
		SentAt:        o.sentAt,
		AnsweredAt:    o.doneAt,
	})
	if c.returns != nil && !o.order.pending && returnSelected(c.seed, c.returnShare, v.ID) {
		c.returns.offer(r.Accepted[len(r.Accepted)-1])
	}
}

func (c *collector) finish() {
	r := c.res
	r.Elapsed = c.last.Sub(c.start)
	if r.Elapsed < r.Duration {
		r.Elapsed = r.Duration
	}
	if r.Interrupted {
		r.Elapsed = max(c.last.Sub(c.start), time.Millisecond)
	}
	for i := range r.Series {
		s := &r.Series[i]
		if s.lat != nil {
			s.P50ms = ms(s.lat.Quantile(0.50))
			s.P99ms = ms(s.lat.Quantile(0.99))
			s.MaxMs = ms(s.lat.Max())
			s.lat = nil
		}
	}
}
