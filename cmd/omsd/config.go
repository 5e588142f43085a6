package main

import (
	"errors"
	"flag"
	"fmt"
	"github.com/omsd/omsd/oms"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// config is every setting of omsd serve. Each is declared once, in
// declareSettings: its flag (dotted name), its environment variable, its
// default, its type and its check. A flag and its variable go through the
// same parse (the setting's flag.Value Set), so OMS_X=bad fails exactly as
// -x bad does; a flag beats the variable.
type config struct {
	HTTPAddr     string
	HTTPListenFD int
	DatabaseURL  string
	RedisURL     string
	RedisCluster bool
	Brokers      string
	AdminKey     string
	LogLevel     string
	PGMaxConns   int
	Migrate      bool
	StartTimeout time.Duration
	AccessLog    bool

	IntakeShards    int
	BatchWindow     time.Duration
	BatchMax        int
	MaxInFlight     int
	MinInFlight     int
	LatencyBudget   time.Duration
	PaymentTimeout  time.Duration
	ReconcileEvery  time.Duration
	MaxBodyBytes    int64
	EventBatch      int
	AvailabilityTTL time.Duration
	WMSWorkers      int
	DebugAddr       string
	ChannelRate     float64
	ChannelBurst    int

	// Customers and attribution.
	CustomerMatch    bool          // match orders to customers (and bind them)
	CustomerHashKeys string        // "id:secret,id:secret"; the first hashes new keys, all are matched
	BindingPeriod    time.Duration // how long an attribution binding lasts
	BindingPolicy    string        // keep_first or latest
}

// setting is one configuration value.
type setting struct {
	name   string // flag name, without the dash
	env    string // environment variable
	usage  string
	kind   string // for the help and the README table: string, int, bool, ...
	value  flag.Value
	secret bool // never printed: redacted in the start-up line, left out of errors
	url    bool // a connection string: printed with its password redacted
	def    string

	from string // where the value came from: "" (default), "flag", "env"
	err  error  // the parse error, reported after the flags were parsed
}

// label names the setting as the operator wrote it.
func (s *setting) label() string {
	if s.from == "env" {
		return s.env
	}
	return "-" + s.name
}

// bound is the flag.Value the flag set holds: it records a parse error
// instead of returning it, so that the flag package never echoes a secret,
// and errors name the setting in one form whether a flag or the
// environment gave the value.
type bound struct{ s *setting }

func (b bound) String() string {
	if b.s == nil {
		return ""
	}
	if b.s.secret {
		return ""
	}
	return b.s.value.String()
}

func (b bound) Set(v string) error {
	b.s.from = "flag"
	b.s.set(v)
	return nil
}

func (b bound) IsBoolFlag() bool { return b.s != nil && b.s.kind == "bool" }

func (s *setting) set(v string) {
	if err := s.value.Set(v); err != nil {
		if s.secret || s.url { // a URL may hold a password
			s.err = fmt.Errorf("%s: %w", s.label(), err)
		} else {
			s.err = fmt.Errorf("%s=%q: %w", s.label(), v, err)
		}
	}
}

// settings is the declared set; a command binds the subset it uses.
type settings struct {
	all   []*setting
	bound []*setting
}

func (ss *settings) add(s *setting) {
	s.def = s.value.String()
	if s.secret {
		s.def = ""
	}
	ss.all = append(ss.all, s)
}

func (ss *settings) get(name string) *setting {
	for _, s := range ss.all {
		if s.name == name {
			return s
		}
	}
	panic("omsd: no setting " + name)
}

// bind declares the named settings (all when none is named) on fs.
func (ss *settings) bind(fs *flag.FlagSet, names ...string) {
	list := ss.all
	if len(names) > 0 {
		list = nil
		for _, n := range names {
			list = append(list, ss.get(n))
		}
	}
	for _, s := range list {
		fs.Var(bound{s}, s.name, s.usage+" (env "+s.env+")")
		ss.bound = append(ss.bound, s)
	}
	fs.Usage = func() { ss.printUsage(fs) }
}

// printUsage lists the command's settings with their type, environment
// variable and default, then its other flags.
func (ss *settings) printUsage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintf(w, "Usage of %s (a flag beats its environment variable):\n", fs.Name())
	mine := map[string]bool{}
	for _, s := range ss.bound {
		mine[s.name] = true
		def := ""
		if s.def != "" {
			def = ", default " + s.def
		}
		fmt.Fprintf(w, "  -%s %s  (env %s%s)\n    \t%s\n", s.name, s.kind, s.env, def, s.usage)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if mine[f.Name] {
			return
		}
		name, usage := flag.UnquoteUsage(f)
		def := ""
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "  -%s %s\n    \t%s%s\n", f.Name, name, usage, def)
	})
}

// parse parses args, then gives every bound setting that no flag set the
// value of its environment variable, through the same Set. It returns the
// first bad value, naming the setting.
func (ss *settings) parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var errs []error
	for _, s := range ss.bound {
		if s.from == "" {
			if v := getenv(s.env); v != "" {
				s.from = "env"
				s.set(v)
			}
		}
		if s.err != nil {
			errs = append(errs, s.err)
		}
	}
	return errors.Join(errs...)
}

// declareSettings declares every setting of omsd, bound to c, with its
// default written into c.
func declareSettings(c *config) *settings {
	ss := &settings{}
	str := func(p *string, name, env, def, usage string, check func(string) error) *setting {
		*p = def
		s := &setting{name: name, env: env, usage: usage, kind: "string", value: &stringValue{p, check}}
		ss.add(s)
		return s
	}
	integer := func(p *int, name, env string, def, lo, hi int, usage string) {
		*p = def
		ss.add(&setting{name: name, env: env, usage: usage, kind: "int", value: &intValue{p, lo, hi}})
	}
	dur := func(p *time.Duration, name, env string, def, lo time.Duration, usage string) {
		*p = def
		ss.add(&setting{name: name, env: env, usage: usage, kind: "duration", value: &durationValue{p, lo}})
	}
	boolean := func(p *bool, name, env string, def bool, usage string) {
		*p = def
		ss.add(&setting{name: name, env: env, usage: usage, kind: "bool", value: &boolValue{p}})
	}
	enum := func(p *string, name, env, def string, allowed []string, usage string) {
		*p = def
		ss.add(&setting{name: name, env: env, usage: usage, kind: strings.Join(allowed, "|"), value: &enumValue{p, allowed}})
	}

	str(&c.HTTPAddr, "http.addr", "OMS_HTTP_ADDR", "127.0.0.1:8080", "listen address of the HTTP API", checkHostPort)
	integer(&c.HTTPListenFD, "http.listen-fd", "OMS_HTTP_LISTEN_FD", 0, 0, 1<<20, "serve the HTTP API on the listening socket inherited as this file descriptor instead of -http.addr (socket hand-down by a supervisor, as omsd dev does so that an instance keeps its port across restarts); 0: listen on -http.addr")
	str(&c.DatabaseURL, "pg.url", "OMS_DATABASE_URL", "", "PostgreSQL or CockroachDB URL", checkDatabaseURL).url = true
	str(&c.RedisURL, "redis.url", "OMS_REDIS_URL", "", "Redis URL; with -redis.cluster a comma-separated list of cluster nodes", nil).url = true
	boolean(&c.RedisCluster, "redis.cluster", "OMS_REDIS_CLUSTER", false, "Redis is a cluster")
	str(&c.Brokers, "kafka.brokers", "OMS_KAFKA_BROKERS", "", "comma-separated Kafka bootstrap brokers (host:port)", checkBrokers)
	str(&c.AdminKey, "admin.key", "OMS_ADMIN_KEY", "", "admin API key, at least 16 characters", checkAdminKey).secret = true
	enum(&c.LogLevel, "log.level", "OMS_LOG_LEVEL", "info", logLevels, "log level")
	integer(&c.PGMaxConns, "pg.max-conns", "OMS_PG_MAX_CONNS", 32, 1, 10000, "database pool size")
	boolean(&c.Migrate, "migrate", "OMS_MIGRATE", true, "apply migrations at start")
	dur(&c.StartTimeout, "start.timeout", "OMS_START_TIMEOUT", 2*time.Minute, 1, "how long start-up waits for the database and Redis (retried with capped exponential backoff and jitter) before it gives up; the broker is waited for 5 s at most, the outbox keeps events until it is up")
	boolean(&c.AccessLog, "http.access-log", "OMS_HTTP_ACCESS_LOG", false, "log every HTTP request at info level: method, route pattern, status, duration, bytes (never the query, the body or credentials)")
	integer(&c.IntakeShards, "intake.shards", "OMS_INTAKE_SHARDS", 8, 1, 1024, "group-commit shards")
	dur(&c.BatchWindow, "intake.batch-window", "OMS_INTAKE_BATCH_WINDOW", 0, 0, "extra time a shard waits for more orders before it commits; 0: commit what is queued as soon as the shard is free")
	integer(&c.BatchMax, "intake.batch-max", "OMS_INTAKE_BATCH_MAX", 128, 1, 100000, "most orders in one commit")
	dur(&c.LatencyBudget, "intake.latency-budget", "OMS_INTAKE_LATENCY_BUDGET", 100*time.Millisecond, 1, "admission: the limit on orders in progress shrinks while they take longer than this on average and grows while they fit; past it an order is answered 503 overloaded at once")
	integer(&c.MinInFlight, "intake.min-inflight", "OMS_INTAKE_MIN_INFLIGHT", 16, 1, 1<<20, "fewest orders in progress at once the admission limit allows, however low the throughput")
	integer(&c.MaxInFlight, "intake.max-inflight", "OMS_INTAKE_MAX_INFLIGHT", 1024, 1, 1<<20, "most orders in progress at once on this instance, whatever the throughput")
	dur(&c.PaymentTimeout, "intake.payment-timeout", "OMS_PAYMENT_TIMEOUT", 30*time.Minute, 1, "how long a pending-payment order keeps its stock")
	dur(&c.ReconcileEvery, "inventory.reconcile-every", "OMS_RECONCILE_EVERY", 5*time.Minute, 1, "period of the full Redis/SQL reconciliation; a Redis that lost its data is found within 2 s regardless")
	str(&c.DebugAddr, "debug.addr", "OMS_DEBUG_ADDR", "", "listen address of net/http/pprof; empty = off", func(v string) error {
		if v == "" {
			return nil
		}
		return checkHostPort(v)
	})
	c.ChannelRate = 20000
	ss.add(&setting{name: "channel.rate", env: "OMS_CHANNEL_RATE", kind: "number", value: &floatValue{&c.ChannelRate, 0},
		usage: "default orders per second per channel (fractions allowed); 0 = unlimited"})
	integer(&c.ChannelBurst, "channel.burst", "OMS_CHANNEL_BURST", 40000, 0, math.MaxInt32, "default burst per channel")
	dur(&c.AvailabilityTTL, "intake.availability-ttl", "OMS_INTAKE_AVAILABILITY_TTL", 2*time.Second, 0, "how long intake plans from the levels it last read or reserved before reading them again (the reservation script stays the authority; a plan the view cannot fill is made again on fresh levels); 0: read before every plan")
	integer(&c.EventBatch, "wms.event-batch", "OMS_WMS_EVENT_BATCH", 64, 1, 10000, "most warehouse events applied in one SQL transaction; 1: one transaction per event")
	integer(&c.WMSWorkers, "wms.workers", "OMS_WMS_WORKERS", 32, 1, 4096, "warehouse events applied concurrently (each shipment's in order); they gather into the event batches")
	boolean(&c.CustomerMatch, "customers.match", "OMS_CUSTOMER_MATCH", true, "match every order to an omsd customer across channels and apply attribution bindings; false: orders keep the channel's customer id and their own attribution only")
	str(&c.CustomerHashKeys, "customers.hash-keys", "OMS_CUSTOMER_HASH_KEYS", "", "keys of the HMAC that hashes customers' phones and emails for matching, as comma-separated id:secret pairs (unique ids, secrets of at least 16 bytes); the first hashes new keys, every listed one is still matched, so a key is rotated by putting a new one first", func(v string) error {
		if v == "" {
			return nil
		}
		_, err := oms.ParseHashKeys(v)
		return err
	}).secret = true
	dur(&c.BindingPeriod, "attribution.binding-period", "OMS_BINDING_PERIOD", 365*24*time.Hour, 1, "how long a customer stays bound to the associate, store and distributor that first brought them")
	enum(&c.BindingPolicy, "attribution.policy", "OMS_BINDING_POLICY", "keep_first", []string{"keep_first", "latest"}, "keep_first: an order's own attribution never moves a live binding; latest: it rebinds")
	c.MaxBodyBytes = 1 << 20
	ss.add(&setting{name: "http.max-body", env: "OMS_MAX_BODY", kind: "int", value: &int64Value{&c.MaxBodyBytes, 1024, 1 << 30},
		usage: "request body limit in bytes"})
	return ss
}

var logLevels = []string{"debug", "info", "warn", "error"}

// validate checks what one setting alone cannot: required settings and
// settings that depend on each other.
func (c *config) validate() error {
	var missing []string
	if c.DatabaseURL == "" {
		missing = append(missing, "-pg.url (OMS_DATABASE_URL)")
	}
	if c.RedisURL == "" {
		missing = append(missing, "-redis.url (OMS_REDIS_URL)")
	}
	if c.Brokers == "" {
		missing = append(missing, "-kafka.brokers (OMS_KAFKA_BROKERS)")
	}
	if c.AdminKey == "" {
		missing = append(missing, "-admin.key (OMS_ADMIN_KEY)")
	}
	if c.CustomerMatch && c.CustomerHashKeys == "" {
		missing = append(missing, "-customers.hash-keys (OMS_CUSTOMER_HASH_KEYS)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing settings: %s", strings.Join(missing, ", "))
	}
	if err := checkAdminKey(c.AdminKey); err != nil {
		return fmt.Errorf("-admin.key (OMS_ADMIN_KEY): %w", err)
	}
	if err := c.checkRedis(); err != nil {
		return err
	}
	if c.MinInFlight > c.MaxInFlight {
		return fmt.Errorf("-intake.min-inflight (OMS_INTAKE_MIN_INFLIGHT) %d is above -intake.max-inflight (OMS_INTAKE_MAX_INFLIGHT) %d", c.MinInFlight, c.MaxInFlight)
	}
	return nil
}

// checkRedis checks the Redis URL (or node list) against -redis.cluster.
func (c *config) checkRedis() error {
	if c.RedisURL == "" {
		return nil
	}
	if c.RedisCluster {
		for _, a := range strings.Split(c.RedisURL, ",") {
			if strings.TrimSpace(a) == "" {
				return errors.New("-redis.url (OMS_REDIS_URL): an empty cluster node in the list")
			}
		}
		return nil
	}
	if _, err := redis.ParseURL(c.RedisURL); err != nil {
		return fmt.Errorf("-redis.url (OMS_REDIS_URL): not a Redis URL (redis://[user:password@]host:port/db): %s", redactIn(err.Error(), c.RedisURL))
	}
	return nil
}

func checkHostPort(v string) error {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return errors.New("not a host:port address")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return errors.New("the port is not a number in [0, 65535]")
	}
	return nil
}

func checkBrokers(v string) error {
	if v == "" {
		return nil
	}
	for _, b := range strings.Split(v, ",") {
		if err := checkHostPort(strings.TrimSpace(b)); err != nil {
			return fmt.Errorf("broker %q: %w", b, err)
		}
	}
	return nil
}

func checkAdminKey(v string) error {
	if v != "" && len(v) < 16 {
		return errors.New("must be at least 16 characters")
	}
	return nil
}

func checkDatabaseURL(v string) error {
	if v == "" {
		return nil
	}
	if _, err := pgxpool.ParseConfig(v); err != nil {
		return fmt.Errorf("not a PostgreSQL connection string: %s", redactIn(err.Error(), v))
	}
	return nil
}

// The typed values. Each Set parses and checks; a failure says what is
// wanted, the caller names the setting.

type stringValue struct {
	p     *string
	check func(string) error
}

func (v *stringValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return *v.p
}

func (v *stringValue) Set(s string) error {
	if v.check != nil {
		if err := v.check(s); err != nil {
			return err
		}
	}
	*v.p = s
	return nil
}

type intValue struct {
	p      *int
	lo, hi int
}

func (v *intValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}

func (v *intValue) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return errors.New("not a whole number")
	}
	if n < int64(v.lo) || n > int64(v.hi) {
		return fmt.Errorf("must be in [%d, %d]", v.lo, v.hi)
	}
	*v.p = int(n)
	return nil
}

type int64Value struct {
	p      *int64
	lo, hi int64
}

func (v *int64Value) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return strconv.FormatInt(*v.p, 10)
}

func (v *int64Value) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return errors.New("not a whole number")
	}
	if n < v.lo || n > v.hi {
		return fmt.Errorf("must be in [%d, %d]", v.lo, v.hi)
	}
	*v.p = n
	return nil
}

type floatValue struct {
	p  *float64
	lo float64
}

func (v *floatValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func (v *floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return errors.New("not a number")
	}
	if f < v.lo {
		return fmt.Errorf("must be >= %g", v.lo)
	}
	*v.p = f
	return nil
}

// durationValue wants a unit ("5" is refused, "0" is zero); lo is the
// least value allowed (0: >= 0, 1: > 0).
type durationValue struct {
	p  *time.Duration
	lo time.Duration
}

func (v *durationValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return v.p.String()
}

var bareNumber = regexp.MustCompile(`^[+-]?[0-9.]+$`)

func (v *durationValue) Set(s string) error {
	s = strings.TrimSpace(s)
	if bareNumber.MatchString(s) && s != "0" {
		return errors.New("a duration needs a unit (ms, s, m, h), as in 5m")
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration (such as 250ms, 5m, 1h30m)")
	}
	if d < v.lo {
		if v.lo > 0 {
			return errors.New("must be > 0")
		}
		return errors.New("must be >= 0")
	}
	*v.p = d
	return nil
}

type boolValue struct{ p *bool }

func (v *boolValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return strconv.FormatBool(*v.p)
}

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not a boolean (true, false, 1, 0, t, f)")
	}
	*v.p = b
	return nil
}

type enumValue struct {
	p       *string
	allowed []string
}

func (v *enumValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return *v.p
}

func (v *enumValue) Set(s string) error {
	s = strings.ToLower(strings.TrimSpace(s))
	if !slices.Contains(v.allowed, s) {
		return fmt.Errorf("must be one of %s", strings.Join(v.allowed, ", "))
	}
	*v.p = s
	return nil
}

// redacted lists the bound settings for the start-up line: secrets as
// "[redacted]" (hash keys by their ids), URLs without their passwords.
func (ss *settings) redacted() []any {
	var attrs []any
	for _, s := range ss.bound {
		v := s.value.String()
		switch {
		case s.name == "customers.hash-keys":
			keys, _ := oms.ParseHashKeys(v)
			ids := make([]string, len(keys))
			for i, k := range keys {
				ids[i] = k.ID + ":[redacted]"
			}
			v = strings.Join(ids, ",")
		case s.secret && v != "":
			v = "[redacted]"
		case s.url:
			v = redactURLs(v)
		}
		attrs = append(attrs, slog.String(s.name, v))
	}
	return attrs
}

// redactURLs hides the passwords of a connection string or of a
// comma-separated list of them (URLs and key=value strings).
func redactURLs(v string) string {
	parts := strings.Split(v, ",")
	for i, p := range parts {
		parts[i] = redactURL(p)
	}
	return strings.Join(parts, ",")
}

var kvPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

func redactURL(v string) string {
	if u, err := url.Parse(strings.TrimSpace(v)); err == nil && u.Scheme != "" && u.Host != "" {
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return kvPassword.ReplaceAllString(v, "${1}xxxxx")
}

// passwords lists the passwords inside connection strings, so that an
// error text that quotes one can be cleaned (redactIn).
func passwords(urls ...string) []string {
	var out []string
	for _, list := range urls {
		for _, v := range strings.Split(list, ",") {
			if u, err := url.Parse(strings.TrimSpace(v)); err == nil && u.User != nil {
				if p, ok := u.User.Password(); ok && p != "" {
					out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
				}
				if p := u.Query().Get("password"); p != "" {
					out = append(out, p)
				}
			}
			for _, m := range kvPassword.FindAllStringSubmatch(v, -1) {
				out = append(out, strings.Trim(m[2], "'"))
			}
		}
	}
	return out
}

// redactIn replaces every password of the connection strings in text.
func redactIn(text string, urls ...string) string {
	for _, p := range passwords(urls...) {
		if p != "" {
			text = strings.ReplaceAll(text, p, "xxxxx")
		}
	}
	return text
}

// writeSettingsTable writes the settings as the README's Markdown table.
func (ss *settings) writeSettingsTable(w io.Writer) {
	fmt.Fprintln(w, "| flag | env | default | type | meaning |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, s := range ss.all {
		def := s.def
		if def == "" {
			def = "—"
		} else {
			def = "`" + def + "`"
		}
		fmt.Fprintf(w, "| `-%s` | `%s` | %s | %s | %s |\n", s.name, s.env, def,
			strings.ReplaceAll(s.kind, "|", "\\|"), strings.ReplaceAll(s.usage, "|", "\\|"))
	}
}

// newLogger logs JSON lines at level (debug, info, warn or error; checked
// by the settings, info when unknown).
func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
