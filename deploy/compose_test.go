package deploy

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/omsd/omsd/deploy/localstack"
)

const composeFile = "compose/docker-compose.yml"

// composeEnv is what an operator exports before `docker compose up`.
var composeEnv = map[string]string{
	"OMS_ADMIN_KEY":          "compose-test-admin-key-0123456789",
	"OMS_CUSTOMER_HASH_KEYS": "k1:compose-test-secret",
}

// loadCompose loads the compose file as `docker compose config` does
// (schema validation, interpolation, merge keys, path resolution,
// consistency checks), with every profile enabled and only env set.
func loadCompose(t *testing.T, env map[string]string) (*types.Project, error) {
	t.Helper()
	var kv []string
	for k, v := range env {
		kv = append(kv, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{composeFile},
		cli.WithWorkingDirectory(filepath.Dir(composeFile)),
		cli.WithEnv(kv),
		cli.WithProfiles([]string{"*"}),
	)
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

var (
	pinnedTag = regexp.MustCompile(`^v?\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?$`) // PostgreSQL tags are major.minor
	// The settings omsd serve reads from the environment, and the ones
	// its validate() refuses to start without, read from the code so that
	// a renamed or new required setting fails here.
	declaredEnvRE = regexp.MustCompile(`\(&c\.[A-Za-z]+, "[a-z0-9.-]+", "(OMS_[A-Z0-9_]+)"`)
	requiredEnvRE = regexp.MustCompile(`missing = append\(missing, "[^"]*\((OMS_[A-Z0-9_]+)\)"\)`)
)

// omsdSettings returns the environment variables cmd/omsd declares and
// those it requires.
func omsdSettings(t *testing.T) (declared, required map[string]bool) {
	t.Helper()
	b, err := os.ReadFile("../cmd/omsd/config.go")
	if err != nil {
		t.Fatal(err)
	}
	declared, required = map[string]bool{}, map[string]bool{}
	for _, m := range declaredEnvRE.FindAllStringSubmatch(string(b), -1) {
		declared[m[1]] = true
	}
	for _, m := range requiredEnvRE.FindAllStringSubmatch(string(b), -1) {
		required[m[1]] = true
	}
	if len(declared) < 10 || len(required) < 5 {
		t.Fatalf("read %d declared and %d required settings from cmd/omsd/config.go: has its form changed?", len(declared), len(required))
	}
	return declared, required
}

func splitImage(image string) (name, tag string) {
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return image, ""
	}
	return image[:i], image[i+1:]
}

func env(s types.ServiceConfig, k string) string {
	if v := s.Environment[k]; v != nil {
		return *v
	}
	return ""
}

var (
	oneShot    = []string{"migrate", "redis-init", "kafka-topics"}
	omsdInsts  = []string{"omsd1", "omsd2"}
	brokers    = []string{"kafka1", "kafka2", "kafka3"}
	redisNodes = []string{"redis1", "redis2", "redis3"}
)

func TestComposeConfigIsValid(t *testing.T) {
	p, err := loadCompose(t, composeEnv)
	if err != nil {
		t.Fatalf("docker compose config would fail: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range p.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	want := []string{"grafana", "kafka-topics", "kafka1", "kafka2", "kafka3", "migrate", "omsd1", "omsd2",
		"postgres", "prometheus", "redis-init", "redis1", "redis2", "redis3", "wms-sim"}
	if !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}

	for _, name := range names {
		s := p.Services[name]
		// Images: pinned tags (third-party ones to a full version), our
		// own built from the repository root.
		img, tag := splitImage(s.Image)
		switch {
		case tag == "" || tag == "latest":
			t.Errorf("%s: image %q is not pinned to a tag", name, s.Image)
		case s.Build != nil:
			if img != "omsd/omsd" {
				t.Errorf("%s: builds image %q, want omsd/omsd", name, s.Image)
			}
			if s.Build.Context != root {
				t.Errorf("%s: build context %s, want the repository root %s (the root .dockerignore applies only there)", name, s.Build.Context, root)
			}
			if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("%s: dockerfile: %v", name, err)
			}
		case !pinnedTag.MatchString(tag):
			t.Errorf("%s: image %q: want a version tag (at least major.minor)", name, s.Image)
		}
		// Restart policies and health checks.
		if slices.Contains(oneShot, name) {
			if s.Restart != "no" {
				t.Errorf("%s: a one-shot job needs restart \"no\" (compose fails up on its first non-zero exit), got %q", name, s.Restart)
			}
		} else {
			if s.Restart != "unless-stopped" && s.Restart != "always" {
				t.Errorf("%s: restart %q, want unless-stopped or always", name, s.Restart)
			}
			if name != "wms-sim" && (s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) < 2) {
				t.Errorf("%s: no health check", name)
			}
		}
		// Every dependency is gated on health or on a job's success.
		for dep, d := range s.DependsOn {
			ds, ok := p.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on unknown service %s", name, dep)
			case d.Condition == types.ServiceConditionHealthy:
				if ds.HealthCheck == nil || ds.HealthCheck.Disable {
					t.Errorf("%s waits for %s to be healthy, but %s has no health check", name, dep, dep)
				}
			case d.Condition == types.ServiceConditionCompletedSuccessfully:
				if !slices.Contains(oneShot, dep) {
					t.Errorf("%s waits for %s to complete, but %s is not a one-shot job", name, dep, dep)
				}
			default:
				t.Errorf("%s -> %s: condition %q; want service_healthy or service_completed_successfully", name, dep, d.Condition)
			}
		}
	}

	wantDeps := func(name string, conds map[string]string) {
		t.Helper()
		for dep, cond := range conds {
			if got := p.Services[name].DependsOn[dep].Condition; got != cond {
				t.Errorf("%s -> %s: condition %q, want %q", name, dep, got, cond)
			}
		}
	}
	healthy, done := types.ServiceConditionHealthy, types.ServiceConditionCompletedSuccessfully
	wantDeps("migrate", map[string]string{"postgres": healthy})
	wantDeps("redis-init", map[string]string{"redis1": healthy, "redis2": healthy, "redis3": healthy})
	wantDeps("kafka-topics", map[string]string{"kafka1": healthy, "kafka2": healthy, "kafka3": healthy})
	wantDeps("grafana", map[string]string{"prometheus": healthy})
	wantDeps("wms-sim", map[string]string{"kafka-topics": done})

	// omsd serve: every setting it requires, only settings it knows, the
	// services' real addresses, migrations left to the migrate job.
	declared, required := omsdSettings(t)
	for _, name := range omsdInsts {
		s := p.Services[name]
		wantDeps(name, map[string]string{"postgres": healthy, "migrate": done, "redis-init": done, "kafka-topics": done})
		if !slices.Equal(s.Command, types.ShellCommand{"serve"}) {
			t.Errorf("%s: command %v, want [serve]", name, s.Command)
		}
		for k := range required {
			if env(s, k) == "" {
				t.Errorf("%s: required setting %s is not set", name, k)
			}
		}
		for k := range s.Environment {
			if !declared[k] {
				t.Errorf("%s: %s is not a setting of omsd serve (cmd/omsd/config.go)", name, k)
			}
		}
		if env(s, "OMS_MIGRATE") != "false" {
			t.Errorf("%s: OMS_MIGRATE=%q, want false (the migrate job applies the schema)", name, env(s, "OMS_MIGRATE"))
		}
		if env(s, "OMS_ADMIN_KEY") != composeEnv["OMS_ADMIN_KEY"] || env(s, "OMS_CUSTOMER_HASH_KEYS") != composeEnv["OMS_CUSTOMER_HASH_KEYS"] {
			t.Errorf("%s: the keys do not come from the operator's environment", name)
		}
		if !strings.Contains(env(s, "OMS_DATABASE_URL"), "@postgres:5432/") {
			t.Errorf("%s: OMS_DATABASE_URL %q does not point at the postgres service", name, env(s, "OMS_DATABASE_URL"))
		}
		if got, want := env(s, "OMS_REDIS_URL"), "redis1:6379,redis2:6379,redis3:6379"; got != want || env(s, "OMS_REDIS_CLUSTER") != "true" {
			t.Errorf("%s: OMS_REDIS_URL %q (cluster %q), want %q as a cluster", name, got, env(s, "OMS_REDIS_CLUSTER"), want)
		}
		if got, want := env(s, "OMS_KAFKA_BROKERS"), "kafka1:9092,kafka2:9092,kafka3:9092"; got != want {
			t.Errorf("%s: OMS_KAFKA_BROKERS %q, want %q", name, got, want)
		}
		hc := strings.Join(s.HealthCheck.Test, " ")
		if !strings.Contains(hc, "/usr/local/bin/omsd-probe") || !strings.Contains(hc, "/readyz") {
			t.Errorf("%s: health check %q, want omsd-probe on /readyz", name, hc)
		}
		if s.HealthCheck.StartPeriod == nil || *s.HealthCheck.StartPeriod < types.Duration(60e9) {
			t.Errorf("%s: health check start_period %v is too short for the Redis rebuild at start", name, s.HealthCheck.StartPeriod)
		}
	}
	m := p.Services["migrate"]
	if !slices.Equal(m.Command, types.ShellCommand{"migrate"}) {
		t.Errorf("migrate: command %v, want [migrate]", m.Command)
	}
	if env(m, "OMS_DATABASE_URL") != env(p.Services["omsd1"], "OMS_DATABASE_URL") {
		t.Error("migrate and omsd use different databases")
	}

	// Kafka: one cluster id, distinct node ids, advertised under the
	// service's name, no topic auto-creation.
	ids := map[string]bool{}
	for _, name := range brokers {
		s := p.Services[name]
		if env(s, "KAFKA_AUTO_CREATE_TOPICS_ENABLE") != "false" {
			t.Errorf("%s: topic auto-creation is not off", name)
		}
		if id, err := base64.RawURLEncoding.DecodeString(env(s, "CLUSTER_ID")); err != nil || len(id) != 16 {
			t.Errorf("%s: CLUSTER_ID %q is not a base64url 16-byte id", name, env(s, "CLUSTER_ID"))
		}
		if env(s, "CLUSTER_ID") != env(p.Services["kafka1"], "CLUSTER_ID") {
			t.Errorf("%s: another cluster id than kafka1", name)
		}
		ids[env(s, "KAFKA_NODE_ID")] = true
		if !strings.Contains(env(s, "KAFKA_ADVERTISED_LISTENERS"), "PLAINTEXT://"+name+":9092") {
			t.Errorf("%s: advertised listeners %q do not name %s:9092", name, env(s, "KAFKA_ADVERTISED_LISTENERS"), name)
		}
		for _, voter := range brokers {
			if !strings.Contains(env(s, "KAFKA_CONTROLLER_QUORUM_VOTERS"), voter+":9093") {
				t.Errorf("%s: %s is not a controller voter", name, voter)
			}
		}
	}
	if len(ids) != len(brokers) {
		t.Errorf("broker node ids %v are not distinct", ids)
	}
	// The topic job creates every topic omsd uses.
	script := strings.Join(p.Services["kafka-topics"].Entrypoint, " ")
	for _, topic := range localstack.Topics {
		if !regexp.MustCompile(`(^|\s)` + regexp.QuoteMeta(topic) + `(\s|;|$)`).MatchString(script) {
			t.Errorf("kafka-topics does not create %s", topic)
		}
	}
	for _, w := range []string{"kafka-topics.sh", "--create", "--if-not-exists", "--replication-factor 3"} {
		if !strings.Contains(script, w) {
			t.Errorf("kafka-topics script lacks %q", w)
		}
	}
	rinit := strings.Join(p.Services["redis-init"].Entrypoint, " ")
	for _, n := range redisNodes {
		if !strings.Contains(rinit, n) {
			t.Errorf("redis-init does not join %s", n)
		}
		if !slices.Contains(p.Services[n].Command, "--cluster-enabled") {
			t.Errorf("%s is not started as a cluster node", n)
		}
	}

	checkPrometheusService(t, p, root)
	checkGrafanaService(t, p, root)
}

// mounts maps a service's bind-mount targets to their sources, checking
// that each source exists in the repository.
func mounts(t *testing.T, s types.ServiceConfig, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if !strings.HasPrefix(v.Source, root+string(filepath.Separator)) {
			t.Errorf("%s: mounts %s from outside the repository", s.Name, v.Source)
		}
		if _, err := os.Stat(v.Source); err != nil {
			t.Errorf("%s: mount source: %v", s.Name, err)
		}
		if !v.ReadOnly {
			t.Errorf("%s: %s is mounted read-write", s.Name, v.Target)
		}
		out[v.Target] = v.Source
	}
	return out
}

func checkPrometheusService(t *testing.T, p *types.Project, root string) {
	s := p.Services["prometheus"]
	m := mounts(t, s, root)
	cfgPath := ""
	for _, a := range s.Command {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			cfgPath = v
		}
	}
	if m[cfgPath] != filepath.Join(root, "deploy/prometheus/prometheus.yml") {
		t.Fatalf("prometheus: --config.file %q is not deploy/prometheus/prometheus.yml (mounts %v)", cfgPath, m)
	}
	var cfg struct {
		Global        map[string]string `yaml:"global"`
		RuleFiles     []string          `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	decodeStrictYAML(t, "prometheus/prometheus.yml", &cfg)
	for _, rf := range cfg.RuleFiles {
		if m[filepath.Join(filepath.Dir(cfgPath), rf)] != filepath.Join(root, "deploy/prometheus/alerts.yml") {
			t.Errorf("prometheus: rule file %s is not deploy/prometheus/alerts.yml mounted beside the config", rf)
		}
	}
	if len(cfg.RuleFiles) != 1 {
		t.Errorf("prometheus: rule_files %v, want alerts.yml", cfg.RuleFiles)
	}
	var targets []string
	for _, sc := range cfg.ScrapeConfigs {
		if sc.JobName == "omsd" {
			for _, st := range sc.StaticConfigs {
				targets = append(targets, st.Targets...)
			}
			if sc.MetricsPath != "/metrics" {
				t.Errorf("prometheus: omsd metrics_path %q", sc.MetricsPath)
			}
		}
	}
	var want []string
	for _, n := range omsdInsts {
		want = append(want, n+":8080")
		if port := strings.TrimPrefix(env(p.Services[n], "OMS_HTTP_ADDR"), "0.0.0.0:"); port != "8080" {
			t.Errorf("%s listens on %q, Prometheus scrapes 8080", n, env(p.Services[n], "OMS_HTTP_ADDR"))
		}
	}
	if !slices.Equal(targets, want) {
		t.Errorf("prometheus: job omsd scrapes %v, want %v (the alerts expect job=\"omsd\")", targets, want)
	}
}

func checkGrafanaService(t *testing.T, p *types.Project, root string) {
	s := p.Services["grafana"]
	m := mounts(t, s, root)
	if m["/etc/grafana/provisioning"] != filepath.Join(root, "deploy/grafana/provisioning") {
		t.Errorf("grafana: provisioning is not mounted from deploy/grafana/provisioning (mounts %v)", m)
	}
	dash := ""
	for target, src := range m {
		if src == filepath.Join(root, "deploy/grafana/omsd-dashboard.json") {
			dash = target
		}
	}
	if dash == "" {
		t.Fatalf("grafana: deploy/grafana/omsd-dashboard.json is not mounted (mounts %v)", m)
	}
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name      string         `yaml:"name"`
			UID       string         `yaml:"uid"`
			Type      string         `yaml:"type"`
			Access    string         `yaml:"access"`
			URL       string         `yaml:"url"`
			IsDefault bool           `yaml:"isDefault"`
			Editable  bool           `yaml:"editable"`
			JSONData  map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	decodeStrictYAML(t, "grafana/provisioning/datasources/prometheus.yml", &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 {
		t.Fatalf("grafana datasources: %+v", ds)
	}
	d := ds.Datasources[0]
	if d.Type != "prometheus" || !d.IsDefault || d.URL != "http://prometheus:9090" {
		t.Errorf("grafana datasource %+v: want the default, of type prometheus, at http://prometheus:9090", d)
	}
	if _, ok := p.Services["prometheus"]; !ok {
		t.Error("no prometheus service for the datasource")
	}
	var dp struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name                  string `yaml:"name"`
			Folder                string `yaml:"folder"`
			Type                  string `yaml:"type"`
			DisableDeletion       bool   `yaml:"disableDeletion"`
			AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
			UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
			Options               struct {
				Path                      string `yaml:"path"`
				FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	decodeStrictYAML(t, "grafana/provisioning/dashboards/omsd.yml", &dp)
	if dp.APIVersion != 1 || len(dp.Providers) != 1 || dp.Providers[0].Type != "file" {
		t.Fatalf("grafana dashboard providers: %+v", dp)
	}
	if got := dp.Providers[0].Options.Path; got != filepath.Dir(dash) {
		t.Errorf("grafana: the provider reads %s, the dashboard is mounted at %s", got, dash)
	}
}

func decodeStrictYAML(t *testing.T, path string, v any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestComposeRefusesToStartWithoutTheKeys(t *testing.T) {
	for k := range composeEnv {
		env := map[string]string{}
		for k2, v := range composeEnv {
			if k2 != k {
				env[k2] = v
			}
		}
		_, err := loadCompose(t, env)
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("without %s: got %v, want an error naming it", k, err)
		}
	}
}

func TestDockerfileAndDockerignore(t *testing.T) {
	b, err := os.ReadFile("compose/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	user, entrypoint, build := "", "", ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			user = f[1]
		case "ENTRYPOINT":
			entrypoint = strings.Join(f[1:], " ")
		case "RUN":
			if strings.Contains(line, "go build") {
				build = line
			}
		}
	}
	if len(froms) != 2 {
		t.Fatalf("FROM lines %v, want a build stage and a runtime stage", froms)
	}
	for _, img := range froms {
		if _, tag := splitImage(img); tag == "" || tag == "latest" {
			t.Errorf("base image %s is not pinned", img)
		}
	}
	if froms[1] != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("runtime image %s, want gcr.io/distroless/static-debian12:nonroot", froms[1])
	}
	if user == "" || strings.HasPrefix(user, "0") || strings.HasPrefix(user, "root") {
		t.Errorf("USER %q: the image must not run as root", user)
	}
	for _, pkg := range []string{"./cmd/omsd", "./cmd/wms-sim", "./deploy/omsd-probe"} {
		if !strings.Contains(build, pkg) {
			t.Errorf("the image does not build %s", pkg)
		}
	}
	if !strings.Contains(entrypoint, "/usr/local/bin/omsd") {
		t.Errorf("ENTRYPOINT %s", entrypoint)
	}

	ig, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatalf("no .dockerignore at the repository root: %v", err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(ig), "\n") {
		lines[strings.TrimSuffix(strings.TrimSpace(l), "/")] = true
	}
	for _, want := range []string{".git", ".oms-dev", "bin", ".env"} {
		if !lines[want] {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
}
