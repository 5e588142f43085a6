package deploy

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "regenerate k8s/prometheusrule.yaml from prometheus/alerts.yml")

const (
	kubeDir        = "k8s"
	alertsFile     = "prometheus/alerts.yml"
	promRuleFile   = "k8s/prometheusrule.yaml"
	omsdImage      = "ghcr.io/omsd/omsd"
	minStartupSecs = 600 // the Redis rebuild before omsd listens
)

// kubeObjects holds every object of the manifests, decoded strictly.
type kubeObjects struct {
	serviceAccounts []corev1.ServiceAccount
	deployments     []appsv1.Deployment
	jobs            []batchv1.Job
	services        []corev1.Service
	pdbs            []policyv1.PodDisruptionBudget
	serviceMonitors []monv1.ServiceMonitor
	promRules       []monv1.PrometheusRule
}

// splitDocs splits a multi-document YAML file.
func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(append([]byte("\n"), b...), []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// decodeStrict decodes one object, refusing unknown and duplicate fields,
// and checks its apiVersion and kind.
func decodeStrict(doc []byte, gv, kind string, into any) error {
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		return err
	}
	tm := reflect.ValueOf(into).Elem().FieldByName("TypeMeta").Interface().(metav1.TypeMeta)
	if tm.APIVersion != gv || tm.Kind != kind {
		return fmt.Errorf("decoded %s/%s as %s/%s", tm.APIVersion, tm.Kind, gv, kind)
	}
	return nil
}

type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewTag  string `json:"newTag"`
		NewName string `json:"newName,omitempty"`
	} `json:"images"`
}

func loadKube(t *testing.T) (kubeObjects, kustomization) {
	t.Helper()
	var k kustomization
	b, err := os.ReadFile(filepath.Join(kubeDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml: %s/%s", k.APIVersion, k.Kind)
	}
	files, _ := filepath.Glob(filepath.Join(kubeDir, "*.yaml"))
	var listed []string
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" {
			listed = append(listed, base)
		}
	}
	res := slices.Clone(k.Resources)
	sort.Strings(res)
	if !slices.Equal(res, listed) {
		t.Errorf("kustomization resources %v, files %v: every manifest must be listed", k.Resources, listed)
	}
	var objs kubeObjects
	for _, name := range k.Resources {
		b, err := os.ReadFile(filepath.Join(kubeDir, name))
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocs(b) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s #%d: %v", name, i, err)
			}
			var err error
			switch tm.Kind {
			case "ServiceAccount":
				var o corev1.ServiceAccount
				err = decodeStrict(doc, "v1", tm.Kind, &o)
				objs.serviceAccounts = append(objs.serviceAccounts, o)
			case "Deployment":
				var o appsv1.Deployment
				err = decodeStrict(doc, "apps/v1", tm.Kind, &o)
				objs.deployments = append(objs.deployments, o)
			case "Job":
				var o batchv1.Job
				err = decodeStrict(doc, "batch/v1", tm.Kind, &o)
				objs.jobs = append(objs.jobs, o)
			case "Service":
				var o corev1.Service
				err = decodeStrict(doc, "v1", tm.Kind, &o)
				objs.services = append(objs.services, o)
			case "PodDisruptionBudget":
				var o policyv1.PodDisruptionBudget
				err = decodeStrict(doc, "policy/v1", tm.Kind, &o)
				objs.pdbs = append(objs.pdbs, o)
			case "ServiceMonitor":
				var o monv1.ServiceMonitor
				err = decodeStrict(doc, "monitoring.coreos.com/v1", tm.Kind, &o)
				objs.serviceMonitors = append(objs.serviceMonitors, o)
			case "PrometheusRule":
				var o monv1.PrometheusRule
				err = decodeStrict(doc, "monitoring.coreos.com/v1", tm.Kind, &o)
				objs.promRules = append(objs.promRules, o)
			default:
				err = fmt.Errorf("kind %q has no decoder in this test", tm.Kind)
			}
			if err != nil {
				t.Fatalf("%s #%d (%s): %v", name, i, tm.Kind, err)
			}
		}
	}
	return objs, k
}

func TestKubeManifestsDecodeStrictly(t *testing.T) {
	objs, _ := loadKube(t)
	for what, n := range map[string]int{
		"Deployment": len(objs.deployments), "Service": len(objs.services), "PodDisruptionBudget": len(objs.pdbs),
		"ServiceMonitor": len(objs.serviceMonitors), "PrometheusRule": len(objs.promRules),
	} {
		if n != 1 {
			t.Errorf("%d %s objects, want 1", n, what)
		}
	}
	// A field the API does not know is refused.
	if err := decodeStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 3\n"), "apps/v1", "Deployment", &appsv1.Deployment{}); err == nil {
		t.Error("strict decoding accepted an unknown field")
	}
}

func TestKubeDeploymentIsHardened(t *testing.T) {
	objs, k := loadKube(t)
	if len(objs.deployments) != 1 {
		t.Fatal("want one Deployment")
	}
	d := objs.deployments[0]
	pod := d.Spec.Template.Spec
	podLabels := labels.Set(d.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Fatalf("the Deployment's selector does not match its pods: %v", err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Error("fewer than 2 replicas")
	}

	// The image tag: pinned, the one kustomization.yaml sets.
	kTag := ""
	for _, im := range k.Images {
		if im.Name == omsdImage {
			kTag = im.NewTag
		}
	}
	if kTag == "" || kTag == "latest" || !pinnedTag.MatchString(kTag) {
		t.Errorf("kustomization sets %s to tag %q, want a pinned version", omsdImage, kTag)
	}

	// Pod level: non-root, no token, seccomp.
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("the pod must run as a non-root uid (runAsNonRoot, runAsUser)")
	}
	if psc != nil && (psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
		t.Error("no RuntimeDefault seccomp profile")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the service account token is mounted; omsd does not talk to the API server")
	}

	all := append(slices.Clone(pod.InitContainers), pod.Containers...)
	for _, c := range all {
		name, tag := splitImage(c.Image)
		if name != omsdImage || tag == "" || tag == "latest" || tag != kTag {
			t.Errorf("%s: image %q, want %s:%s (pinned)", c.Name, c.Image, omsdImage, kTag)
		}
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s: no securityContext", c.Name)
		default:
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Errorf("%s: runAsNonRoot is not set", c.Name)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: the root filesystem is writable", c.Name)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: privilege escalation is allowed", c.Name)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s: privileged", c.Name)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s: capabilities must drop ALL and add none", c.Name)
			}
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := c.Resources.Requests[r]
			lim, okLim := c.Resources.Limits[r]
			if !okReq || !okLim {
				t.Errorf("%s: %s needs a request and a limit", c.Name, r)
			} else if req.Cmp(lim) > 0 || req.Cmp(resource.Quantity{}) <= 0 {
				t.Errorf("%s: %s request %s, limit %s", c.Name, r, req.String(), lim.String())
			}
		}
	}

	// The migrate step: an initContainer or a Job running `omsd migrate`.
	migrates := false
	for _, c := range pod.InitContainers {
		migrates = migrates || slices.Equal(c.Args, []string{"migrate"})
	}
	for _, j := range objs.jobs {
		for _, c := range j.Spec.Template.Spec.Containers {
			migrates = migrates || slices.Equal(c.Args, []string{"migrate"})
		}
	}
	if !migrates {
		t.Error("no initContainer or Job runs omsd migrate")
	}

	var c *corev1.Container
	for i := range pod.Containers {
		if pod.Containers[i].Name == "omsd" {
			c = &pod.Containers[i]
		}
	}
	if c == nil {
		t.Fatal("no container named omsd")
	}
	if !slices.Equal(c.Args, []string{"serve"}) {
		t.Errorf("omsd: args %v, want [serve]", c.Args)
	}

	// Settings: every required one, only known ones, keys from Secrets.
	declared, required := omsdSettings(t)
	envs := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		envs[e.Name] = e
		if strings.HasPrefix(e.Name, "OMS_") && !declared[e.Name] {
			t.Errorf("omsd: %s is not a setting of omsd serve (cmd/omsd/config.go)", e.Name)
		}
	}
	for k := range required {
		if _, ok := envs[k]; !ok {
			t.Errorf("omsd: required setting %s is not set", k)
		}
	}
	for _, k := range []string{"OMS_ADMIN_KEY", "OMS_CUSTOMER_HASH_KEYS", "OMS_DATABASE_URL"} {
		e := envs[k]
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name == "" || e.ValueFrom.SecretKeyRef.Key == "" {
			t.Errorf("omsd: %s must come from a Secret (secretKeyRef), got %+v", k, e)
		}
	}
	if envs["OMS_MIGRATE"].Value != "false" {
		t.Error("omsd: OMS_MIGRATE must be false (the migrate step applies the schema)")
	}
	if envs["OMS_HTTP_ADDR"].Value != "0.0.0.0:8080" {
		t.Errorf("omsd: OMS_HTTP_ADDR %q, want 0.0.0.0:8080", envs["OMS_HTTP_ADDR"].Value)
	}
	httpPort := false
	for _, p := range c.Ports {
		httpPort = httpPort || (p.Name == "http" && p.ContainerPort == 8080)
	}
	if !httpPort {
		t.Error("omsd: no container port http = 8080")
	}

	// Probes: startup generous enough for the rebuild, liveness on
	// /healthz, readiness on /readyz tolerating a broker outage.
	probePath := func(p *corev1.Probe) string {
		switch {
		case p == nil:
			return ""
		case p.HTTPGet != nil:
			return p.HTTPGet.Path
		case p.Exec != nil:
			for _, a := range p.Exec.Command {
				if i := strings.Index(a, "://"); i >= 0 {
					if j := strings.Index(a[i+3:], "/"); j >= 0 {
						return a[i+3+j:]
					}
				}
			}
		}
		return ""
	}
	if got := probePath(c.StartupProbe); got != "/healthz" {
		t.Errorf("startupProbe on %q, want /healthz", got)
	} else if budget := c.StartupProbe.PeriodSeconds * c.StartupProbe.FailureThreshold; budget < minStartupSecs {
		t.Errorf("startupProbe allows %d s before a restart; the Redis rebuild at start needs at least %d", budget, minStartupSecs)
	}
	if got := probePath(c.LivenessProbe); got != "/healthz" {
		t.Errorf("livenessProbe on %q, want /healthz", got)
	}
	if got := probePath(c.ReadinessProbe); got != "/readyz" {
		t.Errorf("readinessProbe on %q, want /readyz", got)
	}
	if rp := c.ReadinessProbe; rp != nil && rp.Exec != nil {
		cmd := strings.Join(rp.Exec.Command, " ")
		if !strings.HasPrefix(cmd, "/usr/local/bin/omsd-probe ") || !strings.Contains(cmd, "-tolerate broker") {
			t.Errorf("readiness %q: want omsd-probe tolerating the broker check (the outbox absorbs a broker outage)", cmd)
		}
		if rp.TimeoutSeconds < 3 {
			t.Errorf("readiness timeout %d s: the ready checks take up to a second each", rp.TimeoutSeconds)
		}
	}

	// preStop drain, and a grace period that covers it and the shutdown.
	drain := int64(0)
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		t.Error("no preStop hook: the pod gets SIGTERM while still in the Service's endpoints")
	} else if s := c.Lifecycle.PreStop.Sleep; s != nil {
		drain = s.Seconds
	} else if e := c.Lifecycle.PreStop.Exec; e != nil && len(e.Command) > 0 {
		drain = 5
	}
	if drain < 5 {
		t.Errorf("preStop drains %d s, want at least 5", drain)
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g < drain+30 {
		grace := "unset"
		if g != nil {
			grace = fmt.Sprint(*g)
		}
		t.Errorf("terminationGracePeriodSeconds %s: want at least the preStop %d s + 30 s (15 s HTTP drain, commits, relay)", grace, drain)
	}
	if c.Resources.Limits.Memory().Cmp(resource.MustParse("1Gi")) < 0 {
		t.Errorf("memory limit %s is below 1Gi", c.Resources.Limits.Memory())
	}
	if pod.Volumes == nil || !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/tmp" }) {
		t.Error("no writable /tmp (emptyDir) beside the read-only root filesystem")
	}

	// The PodDisruptionBudget covers the pods and lets one go at a time.
	if len(objs.pdbs) != 1 {
		t.Fatal("want one PodDisruptionBudget")
	}
	pdb := objs.pdbs[0]
	ps, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !ps.Matches(podLabels) {
		t.Errorf("the PodDisruptionBudget does not select omsd's pods")
	}
	switch {
	case pdb.Spec.MaxUnavailable != nil:
		if pdb.Spec.MaxUnavailable.IntValue() < 1 {
			t.Errorf("PDB maxUnavailable %s blocks every eviction", pdb.Spec.MaxUnavailable.String())
		}
	case pdb.Spec.MinAvailable != nil:
		if int32(pdb.Spec.MinAvailable.IntValue()) >= *d.Spec.Replicas {
			t.Errorf("PDB minAvailable %s with %d replicas blocks every eviction", pdb.Spec.MinAvailable.String(), *d.Spec.Replicas)
		}
	default:
		t.Error("PDB sets neither minAvailable nor maxUnavailable")
	}

	// The Service reaches the pods' http port; the ServiceMonitor scrapes
	// it under job "omsd", which the alerts expect.
	if len(objs.services) != 1 || len(objs.serviceMonitors) != 1 {
		t.Fatal("want one Service and one ServiceMonitor")
	}
	svc := objs.services[0]
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Error("the Service does not select omsd's pods")
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "http" || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("Service ports %+v, want one named http to targetPort http", svc.Spec.Ports)
	}
	sm := objs.serviceMonitors[0]
	ss, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil || !ss.Matches(labels.Set(svc.Labels)) {
		t.Error("the ServiceMonitor does not select the Service")
	}
	job := svc.Name
	if sm.Spec.JobLabel != "" {
		job = svc.Labels[sm.Spec.JobLabel]
	}
	if job != "omsd" {
		t.Errorf("the ServiceMonitor's job label is %q; the alerts use job=\"omsd\"", job)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "http" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v, want port http, path /metrics", sm.Spec.Endpoints)
	}
}

// promRuleHeader precedes alerts.yml's groups in the generated
// PrometheusRule.
const promRuleHeader = `# Code generated from deploy/prometheus/alerts.yml by
# go test ./deploy -run TestPrometheusRuleMatchesAlerts -update. DO NOT EDIT.
# The alerting rules of omsd for the Prometheus Operator: the same rules as
# the compose topology's Prometheus loads.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: omsd
  labels: { app.kubernetes.io/name: omsd }
spec:
`

// generatePromRule writes alerts.yml's groups, as they are (comments
// included), under the PrometheusRule's spec.
func generatePromRule(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\ngroups:\n")
	if i < 0 {
		t.Fatalf("%s: no top-level groups:", alertsFile)
	}
	var out strings.Builder
	out.WriteString(promRuleHeader)
	for _, l := range strings.Split(strings.TrimRight(s[i+1:], "\n"), "\n") {
		if l != "" {
			out.WriteString("  ")
		}
		out.WriteString(l + "\n")
	}
	return []byte(out.String())
}

func TestPrometheusRuleMatchesAlerts(t *testing.T) {
	want := generatePromRule(t)
	if *update {
		if err := os.WriteFile(promRuleFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(promRuleFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not generated from %s: run go test ./deploy -run TestPrometheusRuleMatchesAlerts -update", promRuleFile, alertsFile)
	}
	// And semantically: the rule groups decode strictly, both ways, to the
	// same rules.
	var rule monv1.PrometheusRule
	if err := decodeStrict(got, "monitoring.coreos.com/v1", "PrometheusRule", &rule); err != nil {
		t.Fatalf("%s: %v", promRuleFile, err)
	}
	a, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var spec monv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(a, &spec); err != nil {
		t.Fatalf("%s does not decode as a PrometheusRule spec: %v", alertsFile, err)
	}
	if !reflect.DeepEqual(rule.Spec, spec) {
		t.Errorf("the PrometheusRule's groups differ from %s", alertsFile)
	}
	n := 0
	for _, g := range spec.Groups {
		n += len(g.Rules)
	}
	if n < 17 {
		t.Errorf("only %d rules decoded", n)
	}
}
