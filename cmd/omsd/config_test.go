package main

import (
	"bytes"
	"context"
	"errors"
	"github.com/omsd/omsd/oms"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// goodEnv is a complete serve environment; the cases change one value.
func goodEnv(over map[string]string) func(string) string {
	env := map[string]string{
		"OMS_DATABASE_URL":       "postgres://omsd:pg-secret-pw@127.0.0.1:1/omsd",
		"OMS_REDIS_URL":          "redis://127.0.0.1:1/0",
		"OMS_KAFKA_BROKERS":      "127.0.0.1:1",
		"OMS_ADMIN_KEY":          "admin-key-0123456789",
		"OMS_CUSTOMER_HASH_KEYS": "k1:customer-secret-0123",
	}
	for k, v := range over {
		env[k] = v
	}
	return func(k string) string { return env[k] }
}

func TestBadSettingsStopTheStartNamingTheSetting(t *testing.T) {
	tests := []struct {
		scenario string
		env      map[string]string
		args     []string
		want     string // in the error
		secret   string // never in the error
	}{
		{scenario: "a rate that is not a number", env: map[string]string{"OMS_CHANNEL_RATE": "abc"}, want: "OMS_CHANNEL_RATE"},
		{scenario: "a negative rate", env: map[string]string{"OMS_CHANNEL_RATE": "-1"}, want: "OMS_CHANNEL_RATE"},
		{scenario: "a rate that is NaN", env: map[string]string{"OMS_CHANNEL_RATE": "NaN"}, want: "OMS_CHANNEL_RATE"},
		{scenario: "a negative pool size", env: map[string]string{"OMS_PG_MAX_CONNS": "-1"}, want: "OMS_PG_MAX_CONNS"},
		{scenario: "a pool size with a fraction", env: map[string]string{"OMS_PG_MAX_CONNS": "1.5"}, want: "OMS_PG_MAX_CONNS"},
		{scenario: "a duration without a unit", env: map[string]string{"OMS_RECONCILE_EVERY": "5"}, want: "OMS_RECONCILE_EVERY"},
		{scenario: "a duration that is not one", env: map[string]string{"OMS_PAYMENT_TIMEOUT": "soon"}, want: "OMS_PAYMENT_TIMEOUT"},
		{scenario: "a negative duration", env: map[string]string{"OMS_INTAKE_BATCH_WINDOW": "-1s"}, want: "OMS_INTAKE_BATCH_WINDOW"},
		{scenario: "a zero start timeout", env: map[string]string{"OMS_START_TIMEOUT": "0s"}, want: "OMS_START_TIMEOUT"},
		{scenario: "an unknown log level", env: map[string]string{"OMS_LOG_LEVEL": "verbose"}, want: "OMS_LOG_LEVEL"},
		{scenario: "a boolean that is not one", env: map[string]string{"OMS_REDIS_CLUSTER": "yes"}, want: "OMS_REDIS_CLUSTER"},
		{scenario: "a migrate switch that is not a boolean", env: map[string]string{"OMS_MIGRATE": "nope"}, want: "OMS_MIGRATE"},
		{scenario: "zero shards", env: map[string]string{"OMS_INTAKE_SHARDS": "0"}, want: "OMS_INTAKE_SHARDS"},
		{scenario: "a body limit in exponent notation", env: map[string]string{"OMS_MAX_BODY": "1e3"}, want: "OMS_MAX_BODY"},
		{scenario: "a listen address without a port", env: map[string]string{"OMS_HTTP_ADDR": "localhost"}, want: "OMS_HTTP_ADDR"},
		{scenario: "an empty broker in the list", env: map[string]string{"OMS_KAFKA_BROKERS": "a:1,,b:2"}, want: "OMS_KAFKA_BROKERS"},
		{scenario: "an unknown binding policy", env: map[string]string{"OMS_BINDING_POLICY": "first"}, want: "OMS_BINDING_POLICY"},
		{scenario: "a hash key secret too short", env: map[string]string{"OMS_CUSTOMER_HASH_KEYS": "k1:short-secret"},
			want: "OMS_CUSTOMER_HASH_KEYS", secret: "short-secret"},
		{scenario: "a hash key without an id", env: map[string]string{"OMS_CUSTOMER_HASH_KEYS": ":customer-secret-0123"},
			want: "OMS_CUSTOMER_HASH_KEYS", secret: "customer-secret-0123"},
		{scenario: "a hash key id listed twice", env: map[string]string{"OMS_CUSTOMER_HASH_KEYS": "k1:customer-secret-0123,k1:customer-secret-4567"},
			want: "OMS_CUSTOMER_HASH_KEYS", secret: "customer-secret"},
		{scenario: "a hash key that is not id:secret", env: map[string]string{"OMS_CUSTOMER_HASH_KEYS": "customer-secret-0123"},
			want: "OMS_CUSTOMER_HASH_KEYS", secret: "customer-secret-0123"},
		{scenario: "an admin key too short", env: map[string]string{"OMS_ADMIN_KEY": "tiny-admin"}, want: "OMS_ADMIN_KEY", secret: "tiny-admin"},
		{scenario: "a database URL that does not parse", env: map[string]string{"OMS_DATABASE_URL": "postgres://omsd:pg-secret-pw@127.0.0.1:notaport/omsd"},
			want: "OMS_DATABASE_URL", secret: "pg-secret-pw"},
		{scenario: "a Redis URL that does not parse", env: map[string]string{"OMS_REDIS_URL": "http://u:redis-secret-pw@127.0.0.1:1"},
			want: "OMS_REDIS_URL", secret: "redis-secret-pw"},
		{scenario: "a smallest admission limit above the largest", env: map[string]string{"OMS_INTAKE_MIN_INFLIGHT": "64", "OMS_INTAKE_MAX_INFLIGHT": "32"},
			want: "OMS_INTAKE_MIN_INFLIGHT"},
		{scenario: "a missing setting", env: map[string]string{"OMS_KAFKA_BROKERS": ""}, want: "OMS_KAFKA_BROKERS"},
		{scenario: "a bad flag is named as the flag", args: []string{"-channel.rate", "abc"}, want: "-channel.rate"},
		{scenario: "a bad secret flag is named and not echoed", args: []string{"-admin.key", "tiny-admin"}, want: "-admin.key", secret: "tiny-admin"},
		{scenario: "a flag of another command", args: []string{"-draft", "rules.json"}, want: "-draft"},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			var stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := run(ctx, append([]string{"serve"}, tt.args...), goodEnv(tt.env), &bytes.Buffer{}, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %s", err, tt.want)
			}
			if code := exitCode(err); code != exitUsage {
				t.Errorf("got exit code %d, want %d", code, exitUsage)
			}
			if tt.secret != "" && (strings.Contains(err.Error(), tt.secret) || strings.Contains(stderr.String(), tt.secret)) {
				t.Errorf("the secret %q is in the error %q or the output %q", tt.secret, err, stderr.String())
			}
		})
	}
}

func TestGoodSettingsParseToTheirValues(t *testing.T) {
	tests := []struct {
		scenario string
		env      map[string]string
		args     []string
		check    func(c *config) bool
	}{
		{"a fractional rate", map[string]string{"OMS_CHANNEL_RATE": "0.5"}, nil, func(c *config) bool { return c.ChannelRate == 0.5 }},
		{"a rate in exponent notation", map[string]string{"OMS_CHANNEL_RATE": "1e3"}, nil, func(c *config) bool { return c.ChannelRate == 1000 }},
		{"a rate of 0 is unlimited", map[string]string{"OMS_CHANNEL_RATE": "0"}, nil, func(c *config) bool { return c.ChannelRate == 0 }},
		{"booleans as strconv.ParseBool reads them", map[string]string{"OMS_REDIS_CLUSTER": "1", "OMS_MIGRATE": "F", "OMS_HTTP_ACCESS_LOG": "TRUE"}, nil,
			func(c *config) bool { return c.RedisCluster && !c.Migrate && c.AccessLog }},
		{"a log level in capitals", map[string]string{"OMS_LOG_LEVEL": "WARN"}, nil, func(c *config) bool { return c.LogLevel == "warn" }},
		{"durations with units; zero without", map[string]string{"OMS_RECONCILE_EVERY": "90s", "OMS_INTAKE_BATCH_WINDOW": "0", "OMS_BINDING_PERIOD": "720h"}, nil,
			func(c *config) bool {
				return c.ReconcileEvery == 90*time.Second && c.BatchWindow == 0 && c.BindingPeriod == 720*time.Hour
			}},
		{"the defaults", nil, nil, func(c *config) bool {
			return c.ChannelRate == 20000 && c.PGMaxConns == 32 && c.Migrate && c.StartTimeout == 2*time.Minute && !c.AccessLog &&
				c.BindingPolicy == "keep_first" && c.MaxBodyBytes == 1<<20 && c.LogLevel == "info"
		}},
		{"a flag beats the environment", map[string]string{"OMS_PG_MAX_CONNS": "10"}, []string{"-pg.max-conns", "20"},
			func(c *config) bool { return c.PGMaxConns == 20 }},
		{"a flag replaces a bad environment value", map[string]string{"OMS_CHANNEL_RATE": "abc"}, []string{"-channel.rate=2.5"},
			func(c *config) bool { return c.ChannelRate == 2.5 }},
		{"a bool flag without a value", nil, []string{"-http.access-log"}, func(c *config) bool { return c.AccessLog }},
		{"rotated hash keys", map[string]string{"OMS_CUSTOMER_HASH_KEYS": "k2:customer-secret-4567, k1:customer-secret-0123"}, nil,
			func(c *config) bool {
				keys, err := oms.ParseHashKeys(c.CustomerHashKeys)
				return err == nil && len(keys) == 2 && keys[0].ID == "k2" && keys[1].ID == "k1"
			}},
		{"no hash keys are needed without customer matching", map[string]string{"OMS_CUSTOMER_MATCH": "false", "OMS_CUSTOMER_HASH_KEYS": ""}, nil,
			func(c *config) bool { return !c.CustomerMatch }},
		{"the latest binding policy", map[string]string{"OMS_BINDING_POLICY": "latest"}, nil, func(c *config) bool { return c.BindingPolicy == "latest" }},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			cfg, _, err := parseCommand("omsd serve", tt.args, goodEnv(tt.env), &bytes.Buffer{}, nil)
			if err == nil {
				err = cfg.validate()
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(cfg) {
				t.Errorf("got %+v", *cfg)
			}
		})
	}
}

func TestEachCommandTakesOnlyItsOwnFlags(t *testing.T) {
	tests := []struct {
		scenario string
		args     []string
	}{
		{"migrate has no Redis", []string{"migrate", "-redis.url", "redis://x"}},
		{"migrate has no admin key", []string{"migrate", "-admin.key", "admin-key-0123456789"}},
		{"inventory rebuild has no brokers", []string{"inventory", "rebuild", "-kafka.brokers", "a:1"}},
		{"sourcing replay has no listen address", []string{"sourcing", "replay", "-http.addr", ":1"}},
		{"version has no flags", []string{"version", "-pg.url", "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			err := run(context.Background(), tt.args, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || exitCode(err) == 0 {
				t.Fatalf("got %v, want a refusal", err)
			}
		})
	}
	// Each command validates its own settings from the environment alone.
	err := run(context.Background(), []string{"migrate"}, func(k string) string {
		return map[string]string{"OMS_DATABASE_URL": "postgres://127.0.0.1:1/x", "OMS_START_TIMEOUT": "5"}[k]
	}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "OMS_START_TIMEOUT") || exitCode(err) != exitUsage {
		t.Errorf("migrate with OMS_START_TIMEOUT=5: got %v, want a usage error naming it", err)
	}
	// ... and ignores the settings of the others.
	err = run(context.Background(), []string{"migrate"}, func(k string) string {
		return map[string]string{"OMS_CHANNEL_RATE": "abc"}[k]
	}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "-pg.url") {
		t.Errorf("migrate with only OMS_CHANNEL_RATE=abc: got %v, want the missing -pg.url", err)
	}
}

// TestMainExitsNonZeroOnABadSetting runs the binary (this test binary
// standing in for omsd) and reads its exit status.
func TestMainExitsNonZeroOnABadSetting(t *testing.T) {
	for _, tc := range []struct {
		env  string
		code int
	}{
		{"OMS_CHANNEL_RATE=abc", exitUsage},
		{"OMS_PG_MAX_CONNS=-1", exitUsage},
		{"OMS_RECONCILE_EVERY=5", exitUsage},
	} {
		t.Run(tc.env, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "serve")
			cmd.Env = append(cleanEnv(), devChildEnv+"=1", tc.env)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tc.code {
				t.Fatalf("got %v, want exit status %d\n%s", err, tc.code, stderr.String())
			}
			name, _, _ := strings.Cut(tc.env, "=")
			if !strings.Contains(stderr.String(), name) {
				t.Errorf("stderr does not name %s:\n%s", name, stderr.String())
			}
		})
	}
}

// cleanEnv is the test's environment without OMS_ settings.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OMS_") {
			env = append(env, kv)
		}
	}
	return env
}

func TestVersionPrintsVersionCommitAndGo(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "omsd ") || !strings.HasPrefix(lines[1], "commit ") || !strings.HasPrefix(lines[2], "go go1.") {
		t.Errorf("got %q, want omsd VERSION, commit REV, go GOVERSION", out.String())
	}
	old := version
	version = "v1.2.3-test"
	defer func() { version = old }()
	if b := readBuildInfo(); b.Version != "v1.2.3-test" {
		t.Errorf("got version %q, want the -ldflags -X value", b.Version)
	}
}

func TestStartUpLineRedactsSecretsAndURLPasswords(t *testing.T) {
	var stderr bytes.Buffer
	// Nothing listens on port 1: the start-up line is written, then the
	// database is given up at once.
	err := run(context.Background(), []string{"serve", "-start.timeout", "1ms"}, goodEnv(map[string]string{
		"OMS_REDIS_URL": "redis://:redis-secret-pw@127.0.0.1:1/0",
	}), &bytes.Buffer{}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "database not reachable") || exitCode(err) != exitError {
		t.Fatalf("got %v, want the database not reachable (exit 1)", err)
	}
	out := stderr.String()
	for _, want := range []string{`"msg":"omsd starting"`, `"version":`, `"revision":`, `"pg.url":"postgres://omsd:xxxxx@127.0.0.1:1/omsd"`,
		`"redis.url":"redis://:xxxxx@127.0.0.1:1/0"`, `"customers.hash-keys":"k1:[redacted]"`, `"admin.key":"[redacted]"`, `"channel.rate":"20000"`,
		`"dependency":"database"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %s:\n%s", want, out)
		}
	}
	for _, secret := range []string{"pg-secret-pw", "redis-secret-pw", "customer-secret-0123", "admin-key-0123456789"} {
		if strings.Contains(out, secret) || strings.Contains(err.Error(), secret) {
			t.Errorf("the secret %q was printed:\n%s\n%v", secret, out, err)
		}
	}
}

func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:p%40ss@h:5432/db?sslmode=disable": "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgres://u@h/db?password=pw":                 "postgres://u@h/db?password=xxxxx",
		"host=h user=u password=pw dbname=d":            "host=h user=u password=xxxxx dbname=d",
		"host=h password='p w' dbname=d":                "host=h password=xxxxx dbname=d",
		"redis://:pw@h:6379/0,redis://:pw@h2:6379/0":    "redis://:xxxxx@h:6379/0,redis://:xxxxx@h2:6379/0",
		"h1:7000,h2:7000":                               "h1:7000,h2:7000",
		"postgres://h/db":                               "postgres://h/db",
	} {
		if got := redactURLs(in); got != want {
			t.Errorf("redactURLs(%q): got %q, want %q", in, got, want)
		}
	}
	if got := redactIn("connect u:p@ss failed", "postgres://u:p%40ss@h/db"); strings.Contains(got, "p@ss") {
		t.Errorf("got %q, want the password removed", got)
	}
}

func TestASecondSignalExitsAtOnce(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	cancelled := make(chan struct{})
	exited := make(chan int, 1)
	var logs syncBuffer
	go watchSignals(sigs, func() { close(cancelled) }, func(code int) { exited <- code }, newLogger(&logs, "info"))
	sigs <- syscall.SIGTERM
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the first signal did not start the drain")
	}
	select {
	case code := <-exited:
		t.Fatalf("exited with %d after one signal", code)
	case <-time.After(50 * time.Millisecond):
	}
	sigs <- os.Interrupt
	select {
	case code := <-exited:
		if code != exitSignaled {
			t.Errorf("got exit code %d, want %d", code, exitSignaled)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the second signal did not exit")
	}
	if !strings.Contains(logs.String(), "second signal") {
		t.Errorf("the exit is not logged:\n%s", logs.String())
	}
}

// TestREADMEListsEverySetting keeps the README's settings table in step
// with the declarations.
func TestREADMEListsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var cfg config
	for _, s := range declareSettings(&cfg).all {
		if !bytes.Contains(readme, []byte("`-"+s.name+"`")) || !bytes.Contains(readme, []byte("`"+s.env+"`")) {
			t.Errorf("README.md does not list -%s (%s); go test ./cmd/omsd -run TestREADMEListsEverySetting -v prints the table", s.name, s.env)
		}
	}
	if t.Failed() || testing.Verbose() {
		var b bytes.Buffer
		declareSettings(&cfg).writeSettingsTable(&b)
		t.Log("\n" + b.String())
	}
}
