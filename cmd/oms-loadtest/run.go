package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/omsd/omsd/loadtest"
)

const usage = `oms-loadtest: seed an omsd stack and offer it open-model (or closed-loop) load, then audit it

Usage:
  oms-loadtest seed [target flags] [--skus N] [--nodes N] [--stock N] [--prefix P] [--seed FILE]
  oms-loadtest run  [target flags] (--rate N | --closed) [--duration D] [--profile steady|ramp|flash-sale]
                    [--json FILE] [--html FILE] [--seed FILE] [--workers N] [--retries N]
                    [--timeout D] [--paid-share F] [--hot-skus N] [--hot-share F] [--zipf-s S]
                    [--poisson] [--random-seed N] [--drain D] [--settle D]
                    [--audit-sample N] [--audit-concurrency N] [--quiet]
                    [--backoff D] [--no-retry-503] [--no-audit] [--fault KIND@OFFSET ...] [--return-share F]
                    [--max-p99 D] [--max-error-rate F]

Target flags (flags beat the env file, which beats the environment):
  --env FILE         a stack.env (KEY=VALUE lines: OMS_API_URL, OMS_API_URLS, OMS_ADMIN_KEY,
                     OMS_KAFKA_BROKERS, OMS_DEV_CONTROL_URL, OMS_DEV_CONTROL_TOKEN), as written by
                     'omsd dev'; requests are spread over every URL of OMS_API_URLS
  --api URL          the API base URL (OMS_API_URL; replaces OMS_API_URLS)
  --admin-key KEY    the admin key (OMS_ADMIN_KEY)
  --brokers ADDRS    comma-separated Kafka brokers (OMS_KAFKA_BROKERS); none: the shipment
                     topic is not audited

The seed file (default loadtest-seed.json next to the env file, or in the current directory)
holds the channel keys that seed created; run reads it. The JSON report defaults to
loadtest-report.json beside it, the HTML report to the JSON path with .html.

Profiles (--rate is the peak): steady = rate throughout; ramp = linear from rate/10 to rate;
flash-sale = rate/10, then rate for one minute in the middle, then rate/10 (in runs shorter
than 3 minutes the spike lasts a third of the run).

Closed loop (--closed): --workers clients, each sending its next order the moment its previous
one is answered, for --duration. There is no schedule: the report gives the achieved rate (the
capacity at that concurrency) and latency from the actual send. --no-audit runs the load only (no
stock snapshot, no settling, no audit; exit status 0 whatever the answers): for a server that keeps
no stock, such as a reference HTTP server.

Faults (--fault KIND@OFFSET, repeatable; needs a stack run by 'omsd dev', which carries them out):
  pg-stall        PostgreSQL frozen (SIGSTOP of every postgres process) for 5 s
  omsd-kill       kill -9 of one omsd serve instance, restarted 2 s later on the same port
  redis-flush     Redis loses every key (FLUSHALL)
  broker-restart  the Kafka broker stops for 5 s and comes back on its address with its data
  wms-poison      malformed messages on wms.events (invalid JSON, unknown type, unknown shipment)
OFFSET is the time into the run (30s). The report gives each fault's start and duration and the
answers the clients saw in [start, end + 5 s]; the audit after the run must be clean as always.

Clients behave like channels: a network error, a timeout (--timeout per attempt) or a 5xx/429 is
retried (--retries times, backoff from --backoff doubling to 2 s, Retry-After up to 5 s honoured)
with the same external_id, Idempotency-Key and bytes, on the next API URL. An order whose every
attempt failed is "gave up": the audit looks it up by external id and requires it either stored
with its shipments or not stored at all. --no-retry-503 counts a 503 carrying Retry-After instead
of retrying it (overload measurements: the report gives the share answered 503).

Thresholds (off unless given): --max-p99 D fails the run when the p99 latency (from the intended
send time, as the report gives it; from the actual send with --closed) exceeds D; --max-error-rate F
when the share of scheduled orders that got no answer, were never sent or whose final answer was a
5xx exceeds F (0 to 1). The run prints which threshold failed, with the measured value.

` + runExitStatus + `Run 'oms-loadtest seed -h' or 'oms-loadtest run -h' for every flag.
`

// runExitStatus is the exit status of oms-loadtest run (main.go).
const runExitStatus = `Exit status of run:
  0  the audit passes (or --no-audit) and every threshold holds
  1  an error: bad arguments, a target that cannot be reached, a report that cannot be written
  2  the audit found a fault or could not run (whatever the thresholds)
  3  the audit passes (or --no-audit) but a threshold (--max-p99, --max-error-rate) failed
`

var (
	errAuditFailed     = errors.New("audit failed")
	errThresholdFailed = errors.New("threshold failed")
)

// run is the whole program; tests call it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "seed":
		return cmdSeed(ctx, args[1:], getenv, stdout, stderr)
	case "run":
		return cmdRun(ctx, args[1:], getenv, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// targetFlags are shared by both commands.
type targetFlags struct {
	env, api, adminKey, brokers string
}

func (t *targetFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.env, "env", "", "stack.env file with OMS_API_URL, OMS_ADMIN_KEY, OMS_KAFKA_BROKERS")
	fs.StringVar(&t.api, "api", "", "API base URL (overrides the env file)")
	fs.StringVar(&t.adminKey, "admin-key", "", "admin key (overrides the env file)")
	fs.StringVar(&t.brokers, "brokers", "", "comma-separated Kafka brokers (overrides the env file)")
}

// resolve merges, by rising precedence: the process environment, the env
// file, the flags that were set.
func (t *targetFlags) resolve(fs *flag.FlagSet, getenv func(string) string) (loadtest.Target, error) {
	lookup := getenv
	if t.env != "" {
		env, err := loadtest.ReadEnvFile(t.env)
		if err != nil {
			return loadtest.Target{}, err
		}
		lookup = func(k string) string {
			if v, ok := env[k]; ok {
				return v
			}
			return getenv(k)
		}
	}
	tg := loadtest.TargetFromEnv(lookup)
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "api":
			tg.APIURL = strings.TrimRight(t.api, "/")
			tg.APIURLs = nil
		case "admin-key":
			tg.AdminKey = t.adminKey
		case "brokers":
			tg.Brokers = loadtest.SplitList(t.brokers)
		}
	})
	return tg, tg.Validate()
}

// besideEnv is name in the env file's directory, or in the current one.
func (t *targetFlags) besideEnv(name string) string {
	if t.env == "" {
		return name
	}
	return filepath.Join(filepath.Dir(t.env), name)
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("oms-loadtest "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return nil
}

func cmdSeed(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("seed", stderr)
	var tf targetFlags
	tf.register(fs)
	skus := fs.Int("skus", 1000, "catalogue size (SKU-000001 ...)")
	nodes := fs.Int("nodes", 12, "nodes: up to 6 warehouses, then stores across Chinese cities")
	stock := fs.Int64("stock", 100, "on-hand per warehouse and SKU (stores: a fifth, for about half the SKUs)")
	prefix := fs.String("prefix", "lt", "channel id prefix (lt-tmall ...); change it to seed the same stack again")
	seedPath := fs.String("seed", "", "seed file to write (default loadtest-seed.json next to --env)")
	conc := fs.Int("concurrency", 32, "requests in flight while seeding")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	if err := parse(fs, args); err != nil {
		return err
	}
	tg, err := tf.resolve(fs, getenv)
	if err != nil {
		return err
	}
	if *skus <= 0 || *nodes <= 0 || *stock <= 0 {
		return errors.New("--skus, --nodes and --stock must be > 0")
	}
	if *seedPath == "" {
		*seedPath = tf.besideEnv("loadtest-seed.json")
	}
	c := loadtest.NewClient(tg, loadtest.ClientConfig{Timeout: *timeout, Retries: 3, MaxConns: *conc * 2})
	defer c.Close()
	start := time.Now()
	sf, err := loadtest.Seed(ctx, c, loadtest.SeedConfig{SKUs: *skus, Nodes: *nodes, Stock: *stock, Prefix: *prefix,
		Concurrency: *conc, Progress: stderr})
	if err != nil {
		return err
	}
	if err := loadtest.WriteSeedFile(*seedPath, sf); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "seeded %d channels, %d nodes, %d SKUs, %d stock rows in %s; wrote %s\n",
		len(sf.Channels), len(sf.Nodes), len(sf.SKUs), len(sf.Stock), time.Since(start).Round(time.Millisecond), *seedPath)
	return nil
}

func cmdRun(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", stderr)
	var tf targetFlags
	tf.register(fs)
	rate := fs.Float64("rate", 0, "peak offered rate, orders per second (required, except with --closed)")
	closed := fs.Bool("closed", false, "closed loop: --workers clients, each sending its next order as soon as the previous one is answered, for --duration (no --rate; reports the achieved rate)")
	noAudit := fs.Bool("no-audit", false, "load only: no stock snapshot, no settling, no audit (a server without stock, such as a reference HTTP server)")
	duration := fs.Duration("duration", time.Minute, "how long arrivals are scheduled")
	profile := fs.String("profile", "steady", "steady, ramp or flash-sale")
	jsonPath := fs.String("json", "", "JSON report (default loadtest-report.json next to --env)")
	htmlPath := fs.String("html", "", "HTML report (default: the JSON path with .html)")
	seedPath := fs.String("seed", "", "seed file written by seed (default loadtest-seed.json next to --env)")
	workers := fs.Int("workers", 256, "requests in flight at most; arrivals queue (and their latency grows) beyond")
	retries := fs.Int("retries", 6, "resends with the same Idempotency-Key and body on a network error, a timeout or a 5xx/429")
	timeout := fs.Duration("timeout", 5*time.Second, "per-attempt timeout")
	backoff := fs.Duration("backoff", 100*time.Millisecond, "first pause between attempts (doubles, with jitter, up to 2s; a Retry-After of at most 5s replaces it)")
	noRetry503 := fs.Bool("no-retry-503", false, "count a 503 that carries Retry-After as the answer instead of retrying it (overload measurements)")
	var faults faultList
	returnShare := fs.Float64("return-share", 0, "share of accepted paid orders returned once shipped (request, approve, receipt by the warehouse, refund), 0 to 1; the audit checks them")
	fs.Var(&faults, "fault", "inject a fault KIND@OFFSET (repeatable): pg-stall, omsd-kill, redis-flush, broker-restart, wms-poison")
	paid := fs.Float64("paid-share", 0.8, "share of orders paid; the rest are submitted with payment pending")
	hot := fs.Int("hot-skus", 20, "number of hot SKUs (the first of the catalogue); 0: none")
	hotShare := fs.Float64("hot-share", 0.5, "share of order lines that go to hot SKUs")
	zipf := fs.Float64("zipf-s", 1.1, "Zipf exponent among hot SKUs (> 1)")
	poisson := fs.Bool("poisson", false, "Poisson arrivals (random gaps) instead of evenly spaced ones")
	rseed := fs.Uint64("random-seed", 0, "seed for arrivals and order contents (0: random)")
	drain := fs.Duration("drain", 30*time.Second, "after the last arrival, how long queued and in-flight requests may take")
	settle := fs.Duration("settle", 2*time.Second, "pause before the audit, for asynchronous work to catch up")
	sample := fs.Int("audit-sample", 20000, "read back every accepted order up to N, a random sample of N beyond (-1: all)")
	auditConc := fs.Int("audit-concurrency", 32, "API reads in flight during the audit")
	quiet := fs.Bool("quiet", false, "no progress line on stderr")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage of oms-loadtest run:")
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\n"+runExitStatus)
	}
	maxP99 := fs.Duration("max-p99", 0, "fail the run (exit 3) when the p99 latency exceeds this; 0: no threshold")
	maxErrRate := fs.Float64("max-error-rate", 0, "fail the run (exit 3) when the share of orders without an answer, unsent or answered 5xx exceeds this (0 to 1); not given: no threshold")
	if err := parse(fs, args); err != nil {
		return err
	}
	var th thresholds
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "max-p99":
			th.maxP99 = *maxP99
		case "max-error-rate":
			th.checkErrors, th.maxErrorRate = true, *maxErrRate
		}
	})
	if th.maxP99 < 0 {
		return errors.New("--max-p99 must be >= 0")
	}
	if th.checkErrors && (*maxErrRate < 0 || *maxErrRate > 1) {
		return errors.New("--max-error-rate must be in [0,1]")
	}
	tg, err := tf.resolve(fs, getenv)
	if err != nil {
		return err
	}
	if *closed {
		if *rate != 0 {
			return errors.New("--rate has no meaning with --closed: the clients send as fast as they are answered")
		}
		if *workers <= 0 {
			return errors.New("--workers must be > 0")
		}
	} else if *rate <= 0 {
		return errors.New("--rate must be > 0")
	}
	if *duration <= 0 {
		return errors.New("--duration must be > 0")
	}
	for _, f := range faults {
		if f.Offset >= *duration {
			return fmt.Errorf("--fault %s: the offset is not within --duration %s", f, *duration)
		}
	}
	if len(faults) > 0 && (tg.ControlURL == "" || tg.ControlToken == "") {
		return errors.New("--fault needs a stack run by 'omsd dev': its stack.env (--env) has OMS_DEV_CONTROL_URL and OMS_DEV_CONTROL_TOKEN")
	}
	if *paid < 0 || *paid > 1 {
		return errors.New("--paid-share must be in [0,1]")
	}
	hotSKUs := *hot
	if hotSKUs == 0 {
		hotSKUs = -1 // MixConfig: negative means none
	}
	if *seedPath == "" {
		*seedPath = tf.besideEnv("loadtest-seed.json")
	}
	if *jsonPath == "" {
		*jsonPath = tf.besideEnv("loadtest-report.json")
	}
	if *htmlPath == "" {
		*htmlPath = strings.TrimSuffix(*jsonPath, filepath.Ext(*jsonPath)) + ".html"
	}
	sf, err := loadtest.ReadSeedFile(*seedPath)
	if err != nil {
		return err
	}
	var progress io.Writer = stderr
	if *quiet {
		progress = nil
	}
	rep, err := loadtest.Execute(ctx, loadtest.Options{
		Target: tg,
		Seed:   sf,
		Run: loadtest.RunConfig{
			Closed: *closed, Profile: loadtest.Profile(*profile), Rate: *rate, Duration: *duration, Workers: *workers,
			Poisson: *poisson, Seed: *rseed, Drain: *drain, Progress: progress, Faults: faults,
			ReturnShare: *returnShare,
			Mix:         loadtest.MixConfig{PendingShare: 1 - *paid, HotSKUs: hotSKUs, HotShare: *hotShare, ZipfS: *zipf},
		},
		Client:  loadtest.ClientConfig{Timeout: *timeout, Retries: *retries, Backoff: *backoff, NoRetry503: *noRetry503, MaxConns: *workers * 2},
		Audit:   loadtest.AuditConfig{Concurrency: *auditConc, SampleMax: *sample},
		Settle:  *settle,
		NoAudit: *noAudit,
		Log:     progress,
	})
	if err != nil {
		return err
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if err := rep.WriteJSON(*jsonPath); err != nil {
		return err
	}
	if err := rep.WriteHTMLFile(*htmlPath); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "reports: %s %s\n", *jsonPath, *htmlPath)
	failed := th.check(rep)
	for _, f := range failed {
		fmt.Fprintln(stdout, "threshold FAILED:", f)
	}
	var thErr error
	if len(failed) > 0 {
		thErr = fmt.Errorf("%w: %s", errThresholdFailed, strings.Join(failed, "; "))
	}
	if rep.NotAudited {
		return thErr
	}
	if !rep.Passed() {
		if rep.Audit == nil {
			return fmt.Errorf("%w: %s", errAuditFailed, rep.AuditError)
		}
		a := rep.Audit
		return fmt.Errorf("%w: oversold_units=%d missing_orders=%d duplicate_shipments=%d leaked_units=%d unpaid_shipments=%d gave_up_unheld=%d refunds_without_receipt=%d returns_past_shipped=%d duplicate_return_events=%d bindings_missing=%d unreadable_orders=%d unresolved_orders=%d",
			errAuditFailed, a.OversoldUnits, a.MissingOrders, a.DuplicateShipments, a.LeakedUnits, a.UnpaidShipments, a.GaveUpUnheld,
			a.RefundsWithoutReceipt, a.ReturnsPastShipped, a.DuplicateReturnEvents, a.BindingsMissing, a.OrdersUnreadable, rep.Unresolved)
	}
	return thErr
}

// thresholds are the run's pass criteria besides the audit.
type thresholds struct {
	maxP99       time.Duration // 0: none
	checkErrors  bool
	maxErrorRate float64
}

// errorRate is the share of scheduled orders that got no answer, were
// never sent, or whose final answer was a 5xx.
func errorRate(rep *loadtest.Report) float64 {
	if rep.Scheduled == 0 {
		return 0
	}
	bad := rep.Errors + rep.Unsent
	for k, n := range rep.StatusCounts {
		if code, err := strconv.Atoi(k); err == nil && code >= 500 {
			bad += n
		}
	}
	return float64(bad) / float64(rep.Scheduled)
}

// check returns a line per failed threshold.
func (th thresholds) check(rep *loadtest.Report) []string {
	var failed []string
	if th.maxP99 > 0 {
		p99 := time.Duration(rep.LatencyMs.P99 * float64(time.Millisecond))
		if p99 > th.maxP99 {
			failed = append(failed, fmt.Sprintf("--max-p99 %s: p99 latency was %.2f ms", th.maxP99, rep.LatencyMs.P99))
		}
	}
	if th.checkErrors {
		if r := errorRate(rep); r > th.maxErrorRate {
			failed = append(failed, fmt.Sprintf("--max-error-rate %g: error rate was %.4f (%d of %d scheduled orders unanswered, unsent or 5xx)",
				th.maxErrorRate, r, int64(math.Round(r*float64(rep.Scheduled))), rep.Scheduled))
		}
	}
	return failed
}

// faultList is the repeatable --fault flag.
type faultList []loadtest.FaultSpec

func (l *faultList) String() string {
	var parts []string
	for _, f := range *l {
		parts = append(parts, f.String())
	}
	return strings.Join(parts, ",")
}

func (l *faultList) Set(v string) error {
	f, err := loadtest.ParseFaultSpec(v)
	if err != nil {
		return err
	}
	*l = append(*l, f)
	return nil
}
