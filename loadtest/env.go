package loadtest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Target says where the stack under test answers. It is read from a
// stack.env file (see ParseEnv), from flags, or from the environment.
type Target struct {
	// APIURL is the base URL of the public HTTP API, e.g. http://127.0.0.1:8080.
	APIURL string
	// APIURLs are every instance of the API (OMS_API_URLS); requests are
	// spread over them. Empty: APIURL alone.
	APIURLs []string
	// AdminKey is the admin bearer key (channels, nodes, stock, audit reads).
	AdminKey string
	// Brokers are the Kafka bootstrap addresses (host:port). Empty: the
	// shipment-topic audit is skipped and reported as such.
	Brokers []string
	// ControlURL and ControlToken reach the fault-injection endpoint of
	// omsd dev (OMS_DEV_CONTROL_URL, OMS_DEV_CONTROL_TOKEN); empty when
	// the stack is not run by omsd dev.
	ControlURL   string
	ControlToken string
}

// URLs are the API base URLs requests are spread over: APIURLs, or
// APIURL alone.
func (t Target) URLs() []string {
	if len(t.APIURLs) > 0 {
		return t.APIURLs
	}
	if t.APIURL == "" {
		return nil
	}
	return []string{t.APIURL}
}

// Validate reports a Target that cannot be used.
func (t Target) Validate() error {
	var errs []error
	if t.APIURL == "" && len(t.APIURLs) == 0 {
		errs = append(errs, errors.New("loadtest: no API URL (OMS_API_URL or --api)"))
	}
	for _, u := range t.URLs() {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			errs = append(errs, fmt.Errorf("loadtest: API URL %q is not http(s)", u))
		}
	}
	if t.AdminKey == "" {
		errs = append(errs, errors.New("loadtest: no admin key (OMS_ADMIN_KEY or --admin-key)"))
	}
	return errors.Join(errs...)
}

// TargetFromEnv builds a Target from the OMS_API_URL, OMS_API_URLS,
// OMS_ADMIN_KEY, OMS_KAFKA_BROKERS, OMS_DEV_CONTROL_URL and
// OMS_DEV_CONTROL_TOKEN settings of a stack.env (or any getenv function).
// Without OMS_API_URL, the first of OMS_API_URLS is the APIURL.
func TargetFromEnv(getenv func(string) string) Target {
	t := Target{
		APIURL:       strings.TrimRight(getenv("OMS_API_URL"), "/"),
		AdminKey:     getenv("OMS_ADMIN_KEY"),
		Brokers:      SplitList(getenv("OMS_KAFKA_BROKERS")),
		ControlURL:   strings.TrimRight(getenv("OMS_DEV_CONTROL_URL"), "/"),
		ControlToken: getenv("OMS_DEV_CONTROL_TOKEN"),
	}
	for _, u := range SplitList(getenv("OMS_API_URLS")) {
		t.APIURLs = append(t.APIURLs, strings.TrimRight(u, "/"))
	}
	if t.APIURL == "" && len(t.APIURLs) > 0 {
		t.APIURL = t.APIURLs[0]
	}
	return t
}

// SplitList splits a comma-separated list, trimming blanks and dropping
// empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ParseEnv reads a stack.env file: one KEY=VALUE per line. Blank lines and
// lines starting with # are ignored, an optional leading "export " is
// accepted, blanks around the key and the value are trimmed, and a value in
// matching single or double quotes is unquoted (double quotes with Go
// escapes). Anything else, such as a line without "=" or an empty key, is an
// error naming the line. A later duplicate key wins, as in a shell.
func ParseEnv(r io.Reader) (map[string]string, error) {
	env := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if n == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("loadtest: env line %d: want KEY=VALUE, got %q", n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("loadtest: env line %d: bad key %q", n, k)
		}
		if len(v) >= 2 {
			switch {
			case v[0] == '"' && v[len(v)-1] == '"':
				u, err := strconv.Unquote(v)
				if err != nil {
					return nil, fmt.Errorf("loadtest: env line %d: bad quoted value: %w", n, err)
				}
				v = u
			case v[0] == '\'' && v[len(v)-1] == '\'':
				v = v[1 : len(v)-1]
			}
		}
		env[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("loadtest: env: %w", err)
	}
	return env, nil
}

// ReadEnvFile parses the stack.env file at path with ParseEnv.
func ReadEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	defer f.Close()
	env, err := ParseEnv(f)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return env, nil
}
