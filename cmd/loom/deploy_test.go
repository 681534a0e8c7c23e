package main

// The tests in this file check deploy/k8s and the Dockerfile against the
// real `loom` command tree (rootCmd), because neither can be run in CI: there
// is no cluster and no container engine. They render every kustomization
// with `kubectl kustomize`, decode each object strictly into its k8s.io/api
// type (an unknown or misspelt field fails), and then check what the
// manifests tell the binary: that every flag exists with a value of the
// right type, that every environment variable is one the binary reads (or
// one the manifests expand in the args), that container ports are the ports
// the flags bind, that probes hit the paths the binary serves, that Raft and
// the collective ring advertise the pods' stable DNS names, and that
// credentials are only ever referenced from Secrets.

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// repoRoot is the module root, relative to this package's directory (the
// working directory of `go test`).
const repoRoot = "../.."

// deployTargets are the kustomizations users apply. Each must render, and
// each rendering must pass every check below.
var deployTargets = []string{
	"deploy/k8s",
	"deploy/k8s/base",
	"deploy/k8s/overlays/dev",
	"deploy/k8s/overlays/gpu",
}

// secretDocs is the page that shows the `kubectl create secret` commands for
// every Secret the manifests reference.
const secretDocs = "docs/deploy.md"

// drainMargin is the least time the kubelet must still allow a worker after
// its drain checkpoint timed out, to flush logs and exit.
const drainMargin = 30 * time.Second

// loomPorts maps, per subcommand, the name of each container port to the
// flag whose address the binary binds it on.
var loomPorts = map[string]map[string]string{
	"coordinator": {"raft": "raft-addr", "grpc": "grpc-addr", "http": "http-addr"},
	"worker":      {"collective": "listen", "http": "http-addr"},
}

// workerContract is the flag set of `loom worker` as its contract (issue 9)
// fixes it. TestWorkerManifestsMatchContract checks the manifests against
// it, and the Dockerfile check takes the worker's default ports from it,
// while the real command is not in the tree; once it is, the real flag set
// is checked too and the two must agree.
func workerContract() *cobra.Command {
	c := &cobra.Command{Use: "worker"}
	fl := c.Flags()
	fl.String("id", "", "worker id (default: the hostname)")
	fl.String("coordinator", "", "coordinator gRPC address(es) (env LOOM_COORDINATOR)")
	fl.String("etcd", "", "etcd client endpoints (env LOOM_ETCD_ENDPOINTS)")
	fl.String("etcd-prefix", "/loom/workers", "registry prefix")
	fl.String("listen", ":7300", "collective gRPC listen address")
	fl.String("advertise", "", "host:port peers dial")
	fl.String("http-addr", ":7301", "serves /healthz, /readyz, /metrics")
	fl.String("s3-endpoint", "", "S3 endpoint host:port (env LOOM_S3_ENDPOINT)")
	fl.String("s3-bucket", "", "bucket (env LOOM_S3_BUCKET)")
	fl.String("s3-region", "", "S3 region (empty: env LOOM_S3_REGION or AWS_REGION, else us-east-1)")
	fl.Bool("s3-insecure", false, "plain HTTP instead of HTTPS")
	fl.String("tls-cert", "", "mutual TLS to the coordinator and ring peers")
	fl.String("tls-key", "", "")
	fl.String("tls-ca", "", "")
	fl.String("etcd-tls-cert", "", "mutual TLS to etcd")
	fl.String("etcd-tls-key", "", "")
	fl.String("etcd-tls-ca", "", "")
	fl.String("cache-dir", "", "local shard cache")
	fl.Int("gpus", 0, "GPUs this worker offers")
	fl.String("device", "host", "where forward and backward run")
	fl.Duration("drain-timeout", 2*time.Minute, "time allowed for the drain checkpoint on SIGTERM")
	rootCmd.PersistentFlags().VisitAll(func(f *pflag.Flag) { c.PersistentFlags().AddFlag(f) })
	return c
}

// probePaths are what each probe of a loom container must GET on its
// --http-addr port: the command contracts of both long-running roles.
var probePaths = map[string]string{
	"readinessProbe": "/readyz",  // coordinator: sees a leader; worker: registered
	"livenessProbe":  "/healthz", // the process is up
}

// roleSources are the non-test Go files whose HTTP handlers a role serves:
// its command file and its package.
var roleSources = map[string][]string{
	"coordinator": {"cmd/loom/coordinator.go", "coordinator"},
	"worker":      {"cmd/loom/worker.go", "worker"},
}

// handleCall matches the registration of a path on an http.ServeMux.
var handleCall = regexp.MustCompile(`\.Handle(?:Func)?\(\s*"(/[^"]*)"`)

// servedPaths returns the paths a role registers with Handle or HandleFunc
// in its sources.
func servedPaths(t *testing.T, sub string) map[string]bool {
	t.Helper()
	paths := map[string]bool{}
	for _, src := range roleSources[sub] {
		root := filepath.Join(repoRoot, src)
		err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range handleCall.FindAllSubmatch(b, -1) {
				paths[string(m[1])] = true
			}
			return nil
		})
		if err != nil {
			t.Fatalf("reading the sources of loom %s: %v", sub, err)
		}
	}
	return paths
}

// binaryEnv lists the environment variables the loom binary reads, with the
// subcommand and the file that reads each; the test checks that the file
// still names the variable, so the table cannot drift from the code.
var binaryEnv = []struct {
	name, sub, file string
}{
	{"LOOM_TOKEN", "coordinator", "cmd/loom/coordinator.go"},
	{"LOOM_WORKER_TOKEN", "coordinator", "cmd/loom/coordinator.go"},
	{"LOOM_NODE_TOKEN", "coordinator", "cmd/loom/coordinator.go"},
	{"LOOM_ADMIN_TOKEN", "coordinator", "cmd/loom/coordinator.go"},
	// The --s3-* flags of both roles (cmd/loom/s3flags.go) fall back to
	// these through shard.S3ConfigFromEnv.
	{"LOOM_S3_ENDPOINT", "coordinator", "shard/location.go"},
	{"LOOM_S3_REGION", "coordinator", "shard/location.go"},
	{"LOOM_S3_ACCESS_KEY", "coordinator", "shard/location.go"},
	{"LOOM_S3_SECRET_KEY", "coordinator", "shard/location.go"},
	{"LOOM_COORDINATOR", "worker", "cmd/loom/worker.go"},
	{"LOOM_ETCD_ENDPOINTS", "worker", "cmd/loom/worker.go"},
	{"LOOM_S3_ENDPOINT", "worker", "shard/location.go"},
	{"LOOM_S3_REGION", "worker", "shard/location.go"},
	{"LOOM_S3_BUCKET", "worker", "cmd/loom/worker.go"},
	{"LOOM_S3_ACCESS_KEY", "worker", "shard/location.go"},
	{"LOOM_S3_SECRET_KEY", "worker", "shard/location.go"},
	{"LOOM_WORKER_TOKEN", "worker", "cmd/loom/worker.go"},
}

// notCredentials are flags whose names look like credentials but are not,
// with the reason.
var notCredentials = map[string]string{
	"initial-cluster-token": "etcd's cluster identifier, which keeps members of different clusters apart; not a secret",
}

// credentialName matches environment variables and ConfigMap keys that hold
// credentials, which must come from a Secret.
var credentialName = regexp.MustCompile(`(?i)(access_?key|secret|token|password|passwd|credential)`)

func kubectlPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skipf("kubectl is not on PATH (%v): cannot render deploy/k8s; install kubectl (it bundles kustomize) to run this check", err)
	}
	return p
}

// renderTarget runs `kubectl kustomize dir` and decodes its output.
func renderTarget(t *testing.T, kubectl, dir string) *rendering {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectl, "kustomize", filepath.Join(repoRoot, dir))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	r, err := decodeRendering(dir, stdout.Bytes())
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	return r
}

// rendering is one kustomization's output, decoded.
type rendering struct {
	target       string
	configMaps   map[string]*corev1.ConfigMap
	services     map[string]*corev1.Service
	statefulSets map[string]*appsv1.StatefulSet
	pdbs         map[string]*policyv1.PodDisruptionBudget
	netpols      map[string]*networkingv1.NetworkPolicy
	accounts     map[string]*corev1.ServiceAccount
	namespaces   map[string]*corev1.Namespace
	namespace    string // where the objects go ("default" when the kustomization sets none)
}

// splitYAMLDocuments splits a multi-document YAML stream at "---" lines.
func splitYAMLDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if len(bytes.TrimSpace(cur.Bytes())) > 0 {
			docs = append(docs, slices.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if s := strings.TrimRight(string(line), "\r\n"); s == "---" || strings.HasPrefix(s, "--- ") {
			flush()
			continue
		}
		cur.Write(line)
	}
	flush()
	return docs
}

// decodeRendering decodes every document strictly into its k8s.io/api type.
// A kind the deployment is not expected to contain, a Secret above all, is an
// error.
func decodeRendering(target string, data []byte) (*rendering, error) {
	r := &rendering{
		target:       target,
		configMaps:   map[string]*corev1.ConfigMap{},
		services:     map[string]*corev1.Service{},
		statefulSets: map[string]*appsv1.StatefulSet{},
		pdbs:         map[string]*policyv1.PodDisruptionBudget{},
		netpols:      map[string]*networkingv1.NetworkPolicy{},
		accounts:     map[string]*corev1.ServiceAccount{},
		namespaces:   map[string]*corev1.Namespace{},
	}
	namespaces := map[string]bool{}
	for i, doc := range splitYAMLDocuments(data) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %v", i, err)
		}
		var obj metav1.Object
		switch gvk := tm.APIVersion + "/" + tm.Kind; gvk {
		case "v1/ConfigMap":
			o := &corev1.ConfigMap{}
			obj = o
		case "v1/Service":
			o := &corev1.Service{}
			obj = o
		case "v1/ServiceAccount":
			o := &corev1.ServiceAccount{}
			obj = o
		case "v1/Namespace":
			o := &corev1.Namespace{}
			obj = o
		case "apps/v1/StatefulSet":
			o := &appsv1.StatefulSet{}
			obj = o
		case "policy/v1/PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			obj = o
		case "networking.k8s.io/v1/NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			obj = o
		case "v1/Secret":
			return nil, fmt.Errorf("document %d is a Secret: credentials are never part of the manifests; they are created with `kubectl create secret generic` (%s) and referenced with secretKeyRef", i, secretDocs)
		default:
			return nil, fmt.Errorf("document %d: unexpected kind %q (apiVersion %q): add it to decodeRendering with its k8s.io/api type", i, tm.Kind, tm.APIVersion)
		}
		if err := decodeStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s (document %d): strict decode into its k8s.io/api type: %v", tm.Kind, i, err)
		}
		name := obj.GetName()
		if name == "" {
			return nil, fmt.Errorf("%s (document %d) has no metadata.name", tm.Kind, i)
		}
		if tm.Kind != "Namespace" {
			namespaces[obj.GetNamespace()] = true
		}
		var dup bool
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			_, dup = r.configMaps[name]
			r.configMaps[name] = o
		case *corev1.Service:
			_, dup = r.services[name]
			r.services[name] = o
		case *corev1.ServiceAccount:
			_, dup = r.accounts[name]
			r.accounts[name] = o
		case *corev1.Namespace:
			_, dup = r.namespaces[name]
			r.namespaces[name] = o
		case *appsv1.StatefulSet:
			_, dup = r.statefulSets[name]
			r.statefulSets[name] = o
		case *policyv1.PodDisruptionBudget:
			_, dup = r.pdbs[name]
			r.pdbs[name] = o
		case *networkingv1.NetworkPolicy:
			_, dup = r.netpols[name]
			r.netpols[name] = o
		}
		if dup {
			return nil, fmt.Errorf("%s %q appears twice", tm.Kind, name)
		}
	}
	if len(namespaces) > 1 {
		return nil, fmt.Errorf("objects span several namespaces %v: a deployment lives in one", keys(namespaces))
	}
	for ns := range namespaces {
		r.namespace = ns
	}
	if r.namespace == "" {
		r.namespace = "default"
	} else if len(r.namespaces) > 0 && r.namespaces[r.namespace] == nil {
		return nil, fmt.Errorf("objects go to namespace %q but the rendering creates %v", r.namespace, keys(r.namespaces))
	}
	return r, nil
}

// decodeStrict decodes a YAML document into obj the way the API server does
// in strict field validation: field names are case-sensitive, and unknown or
// duplicate fields are errors.
func decodeStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---- expansion of $(VAR) references, as the kubelet does it --------------

// expandVars expands $(NAME) references in s from env, with the kubelet's
// rules (k8s.io/kubernetes third_party/forked/golang/expansion): "$$" is an
// escaped "$", a reference to a name env does not define stays as written
// (and is returned in undefined), and any other "$" is literal.
func expandVars(s string, env map[string]string) (out string, undefined []string) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String(), undefined
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
				undefined = append(undefined, name)
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String(), undefined
}

// referencedVars returns the names s references as $(NAME), unescaped.
func referencedVars(s string) []string {
	var names []string
	for i := 0; i+1 < len(s); i++ {
		if s[i] != '$' {
			continue
		}
		if s[i+1] == '$' {
			i++
			continue
		}
		if s[i+1] == '(' {
			if end := strings.IndexByte(s[i+2:], ')'); end >= 0 {
				names = append(names, s[i+2:i+2+end])
				i += 2 + end
			}
		}
	}
	return names
}

// podEnv resolves the environment of container c in pod podName: literal
// values, ConfigMap keys (which must exist), downward-API fields, and for
// Secret references a marker that names the Secret (the value is unknown).
func (r *rendering) podEnv(c corev1.Container, podName string) (map[string]string, error) {
	env := map[string]string{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			return nil, fmt.Errorf("env %s is set twice", e.Name)
		}
		switch {
		case e.ValueFrom == nil:
			v, _ := expandVars(e.Value, env)
			env[e.Name] = v
		case e.ValueFrom.FieldRef != nil:
			switch p := e.ValueFrom.FieldRef.FieldPath; p {
			case "metadata.name":
				env[e.Name] = podName
			case "metadata.namespace":
				env[e.Name] = r.namespace
			default:
				env[e.Name] = "<" + p + ">"
			}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm := r.configMaps[ref.Name]
			if cm == nil {
				return nil, fmt.Errorf("env %s: configMapKeyRef names ConfigMap %q, which the rendering lacks (have %v)", e.Name, ref.Name, keys(r.configMaps))
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				return nil, fmt.Errorf("env %s: ConfigMap %q has no key %q (have %v)", e.Name, ref.Name, ref.Key, keys(cm.Data))
			}
			if ref.Optional != nil && *ref.Optional {
				return nil, fmt.Errorf("env %s: configMapKeyRef is optional; settings must be present", e.Name)
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "<secret " + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key + ">"
		case e.ValueFrom.ResourceFieldRef != nil:
			env[e.Name] = "<" + e.ValueFrom.ResourceFieldRef.Resource + ">"
		default:
			return nil, fmt.Errorf("env %s: unsupported valueFrom", e.Name)
		}
	}
	if len(c.EnvFrom) > 0 {
		return nil, fmt.Errorf("envFrom imports every key of a ConfigMap or Secret as a variable the binary may not read; list env explicitly")
	}
	return env, nil
}

// ---- flags ----------------------------------------------------------------

// cliArg is one flag of a container's args, split as pflag parses it.
type cliArg struct {
	name, value string
	hasValue    bool // written as --name=value or --name value
}

// parseCLIArgs splits args (after the subcommand) into long flags. A value
// is taken from the next argument unless the flag is written --name=value
// or is a bool (isBool). Short flags and positional arguments are errors:
// the manifests spell every flag out.
func parseCLIArgs(args []string, isBool func(name string) bool) ([]cliArg, error) {
	var out []cliArg
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") || len(a) == 2 {
			return nil, fmt.Errorf("argument %d %q: want --name=value (the manifests use long flags only)", i+1, a)
		}
		name, value, hasValue := strings.Cut(a[2:], "=")
		if name == "" {
			return nil, fmt.Errorf("argument %d %q: empty flag name", i+1, a)
		}
		if !hasValue && !isBool(name) {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("flag --%s at the end of the args has no value", name)
			}
			i++
			value, hasValue = args[i], true
		}
		out = append(out, cliArg{name: name, value: value, hasValue: hasValue})
	}
	return out, nil
}

// subcommand returns the loom subcommand named name, or nil when the
// command tree has no such command.
func subcommand(name string) *cobra.Command {
	c, _, err := rootCmd.Find([]string{name})
	if err != nil || c == nil || c == rootCmd || c.Name() != name {
		return nil
	}
	return c
}

// lookupFlag finds a flag of cmd, its own or inherited from the root.
func lookupFlag(cmd *cobra.Command, name string) *pflagFlag {
	if f := cmd.Flags().Lookup(name); f != nil {
		return &pflagFlag{name: f.Name, typ: f.Value.Type(), def: f.DefValue}
	}
	if f := cmd.InheritedFlags().Lookup(name); f != nil {
		return &pflagFlag{name: f.Name, typ: f.Value.Type(), def: f.DefValue}
	}
	return nil
}

type pflagFlag struct{ name, typ, def string }

// checkFlagValue checks that v parses as a value of pflag type typ.
func checkFlagValue(typ, v string) error {
	var err error
	switch typ {
	case "bool":
		_, err = strconv.ParseBool(v)
	case "int", "int64", "int32", "int16", "int8":
		_, err = strconv.ParseInt(v, 0, 64)
	case "uint", "uint64", "uint32", "uint16", "uint8":
		_, err = strconv.ParseUint(v, 0, 64)
	case "float64", "float32":
		_, err = strconv.ParseFloat(v, 64)
	case "duration":
		_, err = time.ParseDuration(v)
	}
	return err
}

// loomInvocation is a container that runs the loom image, with its flags
// resolved for one pod.
type loomInvocation struct {
	sts       *appsv1.StatefulSet
	container corev1.Container
	sub       string            // "coordinator" or "worker"
	cmd       *cobra.Command    // nil when the subcommand is not built yet
	flags     map[string]string // flag name -> value after $(VAR) expansion
	rawFlags  map[string]string // flag name -> value as written
	env       map[string]string
	pod       string
}

// isLoomImage reports whether image is the loom image (any registry, any tag).
func isLoomImage(image string) bool {
	ref := image
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref[strings.LastIndexByte(ref, '/')+1:] == "loom"
}

// loomContainers returns every container of the rendering that runs the loom
// image, resolved for the pod with ordinal 0.
func (r *rendering) loomContainers(t *testing.T) []*loomInvocation {
	t.Helper()
	var out []*loomInvocation
	for _, name := range keys(r.statefulSets) {
		sts := r.statefulSets[name]
		for _, c := range sts.Spec.Template.Spec.Containers {
			if !isLoomImage(c.Image) {
				continue
			}
			inv, err := r.invocation(sts, c, name+"-0")
			if err != nil {
				t.Fatalf("%s: StatefulSet %s container %s: %v", r.target, name, c.Name, err)
			}
			out = append(out, inv)
		}
		for _, c := range sts.Spec.Template.Spec.InitContainers {
			if isLoomImage(c.Image) {
				t.Errorf("%s: StatefulSet %s init container %s runs the loom image; nothing needs that", r.target, name, c.Name)
			}
		}
	}
	return out
}

func (r *rendering) invocation(sts *appsv1.StatefulSet, c corev1.Container, pod string) (*loomInvocation, error) {
	var cmd *cobra.Command
	if len(c.Args) > 0 {
		cmd = subcommand(c.Args[0])
	}
	return r.invocationOf(sts, c, pod, cmd)
}

// invocationOf resolves container c of pod against the flag set of cmd (nil
// when the subcommand is not built yet).
func (r *rendering) invocationOf(sts *appsv1.StatefulSet, c corev1.Container, pod string, cmd *cobra.Command) (*loomInvocation, error) {
	if len(c.Command) > 0 {
		return nil, fmt.Errorf("sets command %q; the image's ENTRYPOINT is the loom binary, so pass the subcommand in args", c.Command)
	}
	if len(c.Args) == 0 {
		return nil, fmt.Errorf("has no args; want a subcommand (coordinator or worker) and its flags")
	}
	sub := c.Args[0]
	if _, ok := loomPorts[sub]; !ok {
		return nil, fmt.Errorf("runs `loom %s`; the deployment runs only coordinator and worker", sub)
	}
	env, err := r.podEnv(c, pod)
	if err != nil {
		return nil, err
	}
	inv := &loomInvocation{sts: sts, container: c, sub: sub, cmd: cmd, env: env, pod: pod,
		flags: map[string]string{}, rawFlags: map[string]string{}}
	isBool := func(name string) bool {
		if inv.cmd == nil {
			return false
		}
		f := lookupFlag(inv.cmd, name)
		return f != nil && f.typ == "bool"
	}
	args, err := parseCLIArgs(c.Args[1:], isBool)
	if err != nil {
		return nil, err
	}
	for _, a := range args {
		if _, dup := inv.rawFlags[a.name]; dup {
			return nil, fmt.Errorf("flag --%s is given twice", a.name)
		}
		v, undefined := expandVars(a.value, env)
		if len(undefined) > 0 {
			return nil, fmt.Errorf("flag --%s=%s references $(%s), which the container's env does not define (the kubelet would pass it literally)", a.name, a.value, strings.Join(undefined, "), $("))
		}
		if !a.hasValue {
			v = "true"
		}
		inv.rawFlags[a.name] = a.value
		inv.flags[a.name] = v
	}
	return inv, nil
}

// flagValue returns the effective value of a flag: the one in the args, or
// the binary's default.
func (inv *loomInvocation) flagValue(name string) (string, bool) {
	if v, ok := inv.flags[name]; ok {
		return v, true
	}
	if inv.cmd != nil {
		if f := lookupFlag(inv.cmd, name); f != nil {
			return f.def, true
		}
	}
	return "", false
}

func portOf(addr string) (int32, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q of %q is not a port number", p, addr)
	}
	return int32(n), nil
}

// ---- the tests --------------------------------------------------------------

func TestDeployManifests(t *testing.T) {
	kubectl := kubectlPath(t)
	for _, target := range deployTargets {
		t.Run(strings.ReplaceAll(target, "/", "_"), func(t *testing.T) {
			r := renderTarget(t, kubectl, target)
			invs := r.loomContainers(t)
			subs := map[string]int{}
			for _, inv := range invs {
				subs[inv.sub]++
			}
			if subs["coordinator"] != 1 || subs["worker"] != 1 {
				t.Fatalf("%s: want one coordinator and one worker container, got %v", target, subs)
			}
			t.Run("flags", func(t *testing.T) { checkFlags(t, r, invs) })
			t.Run("env", func(t *testing.T) { checkEnv(t, r, invs) })
			t.Run("ports", func(t *testing.T) { checkPorts(t, r, invs) })
			t.Run("probes", func(t *testing.T) { checkProbes(t, r, invs) })
			t.Run("raft", func(t *testing.T) { checkRaft(t, r, invs) })
			t.Run("workers", func(t *testing.T) { checkWorkers(t, r, invs) })
			t.Run("services", func(t *testing.T) { checkServices(t, r) })
			t.Run("secrets", func(t *testing.T) { checkSecrets(t, r) })
			t.Run("security", func(t *testing.T) { checkSecurity(t, r) })
			t.Run("volumes", func(t *testing.T) { checkVolumes(t, r, invs) })
			t.Run("networkpolicy", func(t *testing.T) { checkNetworkPolicies(t, r) })
			t.Run("etcd", func(t *testing.T) { checkEtcd(t, r) })
			t.Run("endpoints", func(t *testing.T) { checkEndpoints(t, r) })
			t.Run("apivalidation", func(t *testing.T) { checkAPIValidation(t, r) })
		})
	}
}

func checkFlags(t *testing.T, r *rendering, invs []*loomInvocation) {
	for _, inv := range invs {
		t.Run(inv.sub, func(t *testing.T) {
			if inv.cmd == nil {
				t.Fatalf("%s: StatefulSet %s runs `loom %s`, which is not in the command tree", r.target, inv.sts.Name, inv.sub)
			}
			checkInvocationFlags(t, r, inv)
		})
	}
}

// checkInvocationFlags checks that every flag inv passes exists in inv.cmd
// and has a value of its type.
func checkInvocationFlags(t *testing.T, r *rendering, inv *loomInvocation) {
	t.Helper()
	for _, name := range keys(inv.flags) {
		f := lookupFlag(inv.cmd, name)
		if f == nil {
			t.Errorf("%s: StatefulSet %s passes --%s to `loom %s`, which has no such flag", r.target, inv.sts.Name, name, inv.sub)
			continue
		}
		if err := checkFlagValue(f.typ, inv.flags[name]); err != nil {
			t.Errorf("%s: StatefulSet %s: `loom %s --%s=%s` (after expansion %q): not a %s: %v", r.target, inv.sts.Name, inv.sub, name, inv.rawFlags[name], inv.flags[name], f.typ, err)
		}
	}
}

// TestWorkerManifestsMatchContract checks the worker StatefulSet of every
// rendering against the flag set the `loom worker` contract fixes, and,
// once the command is built, that the real flag set still offers every
// contract flag with its type and default.
func TestWorkerManifestsMatchContract(t *testing.T) {
	contract := workerContract()
	if real := subcommand("worker"); real != nil {
		contract.LocalFlags().VisitAll(func(cf *pflag.Flag) {
			f := lookupFlag(real, cf.Name)
			if f == nil || f.typ != cf.Value.Type() {
				t.Errorf("`loom worker --%s`: the contract fixes a %s flag; the command has %+v", cf.Name, cf.Value.Type(), f)
			} else if cf.DefValue != "" && f.def != cf.DefValue {
				t.Errorf("`loom worker --%s` default %q; the contract fixes %q", cf.Name, f.def, cf.DefValue)
			}
		})
	}
	kubectl := kubectlPath(t)
	for _, target := range deployTargets {
		r := renderTarget(t, kubectl, target)
		sts := r.statefulSets["loom-worker"]
		if sts == nil {
			t.Fatalf("%s has no StatefulSet loom-worker", target)
		}
		for _, c := range sts.Spec.Template.Spec.Containers {
			if !isLoomImage(c.Image) {
				continue
			}
			inv, err := r.invocationOf(sts, c, sts.Name+"-0", contract)
			if err != nil {
				t.Fatalf("%s: loom-worker: %v", target, err)
			}
			checkInvocationFlags(t, r, inv)
		}
	}
}

func checkEnv(t *testing.T, r *rendering, invs []*loomInvocation) {
	for _, inv := range invs {
		t.Run(inv.sub, func(t *testing.T) {
			expanded := map[string]bool{}
			for _, a := range inv.container.Args {
				for _, n := range referencedVars(a) {
					expanded[n] = true
				}
			}
			var readList []string
			for _, e := range binaryEnv {
				if e.sub == inv.sub {
					readList = append(readList, e.name)
				}
			}
			for _, e := range inv.container.Env {
				if expanded[e.Name] {
					continue // consumed by the kubelet's $(VAR) expansion of the args
				}
				if !slices.Contains(readList, e.Name) {
					t.Errorf("%s: StatefulSet %s sets env %s for `loom %s`, which neither reads it (binaryEnv) nor is it expanded in the args", r.target, inv.sts.Name, e.Name, inv.sub)
				}
			}
			if inv.cmd == nil {
				t.Fatalf("`loom %s` is not in the command tree", inv.sub)
			}
			// Every variable the table says the binary reads must still be
			// named by the file that reads it.
			for _, e := range binaryEnv {
				if e.sub != inv.sub {
					continue
				}
				src, err := os.ReadFile(filepath.Join(repoRoot, e.file))
				if err != nil {
					t.Errorf("binaryEnv says %s reads %s: %v", e.file, e.name, err)
					continue
				}
				if !bytes.Contains(src, []byte(strconv.Quote(e.name))) {
					t.Errorf("binaryEnv says `loom %s` reads %s in %s, but that file does not name %q any more: update binaryEnv", e.sub, e.name, e.file, e.name)
				}
			}
		})
	}
}

func checkPorts(t *testing.T, r *rendering, invs []*loomInvocation) {
	for _, inv := range invs {
		want := loomPorts[inv.sub]
		seen := map[string]bool{}
		for _, p := range inv.container.Ports {
			flagName, ok := want[p.Name]
			if !ok {
				t.Errorf("%s: %s container port %q (%d) is not one `loom %s` serves (want names %v)", r.target, inv.sts.Name, p.Name, p.ContainerPort, inv.sub, keys(want))
				continue
			}
			seen[p.Name] = true
			addr, ok := inv.flagValue(flagName)
			if !ok {
				if inv.cmd == nil {
					continue // worker not built: the flags check skips, the others need the address
				}
				t.Errorf("%s: `loom %s` has no --%s", r.target, inv.sub, flagName)
				continue
			}
			port, err := portOf(addr)
			if err != nil {
				t.Errorf("%s: %s --%s=%s: %v", r.target, inv.sts.Name, flagName, addr, err)
				continue
			}
			if p.ContainerPort != port {
				t.Errorf("%s: %s container port %s is %d, but `loom %s --%s=%s` listens on %d", r.target, inv.sts.Name, p.Name, p.ContainerPort, inv.sub, flagName, addr, port)
			}
			if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
				t.Errorf("%s: %s container port %s: protocol %s, want TCP", r.target, inv.sts.Name, p.Name, p.Protocol)
			}
		}
		for name := range want {
			if !seen[name] {
				t.Errorf("%s: %s does not declare container port %q (--%s) that `loom %s` serves", r.target, inv.sts.Name, name, want[name], inv.sub)
			}
		}
	}
}

func checkProbes(t *testing.T, r *rendering, invs []*loomInvocation) {
	for _, inv := range invs {
		c := inv.container
		var served map[string]bool
		if inv.cmd != nil {
			served = servedPaths(t, inv.sub)
		}
		// Prometheus' pod annotations name the metrics port and path.
		ann := inv.sts.Spec.Template.Annotations
		if ann["prometheus.io/scrape"] == "true" {
			httpPort := ""
			for _, p := range c.Ports {
				if p.Name == "http" {
					httpPort = strconv.Itoa(int(p.ContainerPort))
				}
			}
			if ann["prometheus.io/port"] != httpPort {
				t.Errorf("%s: %s annotation prometheus.io/port %q, want the http port %s", r.target, inv.sts.Name, ann["prometheus.io/port"], httpPort)
			}
			if served != nil && !served[ann["prometheus.io/path"]] {
				t.Errorf("%s: %s annotation prometheus.io/path %q is not served by `loom %s` (%v)", r.target, inv.sts.Name, ann["prometheus.io/path"], inv.sub, keys(served))
			}
		}
		for _, pr := range []struct {
			kind  string
			probe *corev1.Probe
		}{
			{"readinessProbe", c.ReadinessProbe},
			{"livenessProbe", c.LivenessProbe},
			{"startupProbe", c.StartupProbe},
		} {
			want := probePaths[pr.kind]
			if pr.probe == nil {
				if want != "" {
					t.Errorf("%s: %s has no %s; want GET %s on port http", r.target, inv.sts.Name, pr.kind, want)
				}
				continue
			}
			g := pr.probe.HTTPGet
			if g == nil {
				t.Errorf("%s: %s %s is not an httpGet probe", r.target, inv.sts.Name, pr.kind)
				continue
			}
			if want != "" && g.Path != want {
				t.Errorf("%s: %s %s GETs %s, want %s", r.target, inv.sts.Name, pr.kind, g.Path, want)
			}
			if served != nil && !served[g.Path] {
				t.Errorf("%s: %s %s GETs %q, which `loom %s` does not serve (its sources %v register %v)", r.target, inv.sts.Name, pr.kind, g.Path, inv.sub, roleSources[inv.sub], keys(served))
			}
			if g.Port.Type != intstr.String || g.Port.StrVal != "http" {
				t.Errorf("%s: %s %s port %s, want the named port http (--http-addr)", r.target, inv.sts.Name, pr.kind, g.Port.String())
			}
			if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
				t.Errorf("%s: %s %s scheme %s; --http-addr serves plain HTTP", r.target, inv.sts.Name, pr.kind, g.Scheme)
			}
		}
	}
}

// podDNSName is the name a StatefulSet pod has through its governing
// headless Service.
func podDNSName(pod string, sts *appsv1.StatefulSet, ns, domain string) string {
	return fmt.Sprintf("%s.%s.%s.svc.%s", pod, sts.Spec.ServiceName, ns, domain)
}

// checkHeadless checks that sts is governed by a headless Service that
// publishes not-ready pods and selects exactly its pods.
func checkHeadless(t *testing.T, r *rendering, sts *appsv1.StatefulSet) {
	t.Helper()
	svc := r.services[sts.Spec.ServiceName]
	if svc == nil {
		t.Errorf("%s: StatefulSet %s names serviceName %q, which the rendering lacks", r.target, sts.Name, sts.Spec.ServiceName)
		return
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("%s: Service %s governs StatefulSet %s but is not headless (clusterIP %q, want None)", r.target, svc.Name, sts.Name, svc.Spec.ClusterIP)
	}
	if !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("%s: headless Service %s must set publishNotReadyAddresses: pods resolve each other before they are Ready", r.target, svc.Name)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(sts.Spec.Template.Labels)) || len(svc.Spec.Selector) == 0 {
		t.Errorf("%s: headless Service %s selector %v does not select StatefulSet %s pods %v", r.target, svc.Name, svc.Spec.Selector, sts.Name, sts.Spec.Template.Labels)
	}
}

func checkRaft(t *testing.T, r *rendering, invs []*loomInvocation) {
	for _, inv := range invs {
		if inv.sub != "coordinator" {
			continue
		}
		sts := inv.sts
		replicas := int(ptrOr(sts.Spec.Replicas, 1))
		if replicas < 3 || replicas%2 == 0 {
			t.Errorf("%s: coordinator replicas %d; want an odd number ≥ 3 (a Raft quorum that survives a lost node)", r.target, replicas)
		}
		if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
			t.Errorf("%s: coordinator podManagementPolicy %q, want Parallel (OrderedReady waits for a Ready pod, and Ready needs a leader, which needs a quorum)", r.target, sts.Spec.PodManagementPolicy)
		}
		checkHeadless(t, r, sts)
		domain := r.configValue(t, "CLUSTER_DOMAIN")
		addr, ok := inv.flagValue("raft-addr")
		if !ok {
			t.Fatalf("%s: coordinator has no --raft-addr", r.target)
		}
		raftPort, err := portOf(addr)
		if err != nil {
			t.Fatalf("%s: --raft-addr=%s: %v", r.target, addr, err)
		}
		wantPeers := map[string]string{}
		for i := range replicas {
			pod := fmt.Sprintf("%s-%d", sts.Name, i)
			wantPeers[pod] = net.JoinHostPort(podDNSName(pod, sts, r.namespace, domain), strconv.Itoa(int(raftPort)))
		}
		for i := range replicas {
			pod := fmt.Sprintf("%s-%d", sts.Name, i)
			pi, err := r.invocation(sts, inv.container, pod)
			if err != nil {
				t.Fatalf("%s: pod %s: %v", r.target, pod, err)
			}
			if got := pi.flags["raft-advertise"]; got != wantPeers[pod] {
				t.Errorf("%s: pod %s: --raft-advertise=%s expands to %q, want its DNS name through the headless Service %q", r.target, pod, pi.rawFlags["raft-advertise"], got, wantPeers[pod])
			}
			if got := pi.flags["id"]; got != pod {
				t.Errorf("%s: pod %s: --id expands to %q, want the pod name (stable across restarts)", r.target, pod, got)
			}
			peers := map[string]string{}
			for _, kv := range strings.Split(pi.flags["peers"], ",") {
				id, a, ok := strings.Cut(kv, "=")
				if !ok {
					t.Errorf("%s: pod %s: --peers entry %q is not id=host:port", r.target, pod, kv)
					continue
				}
				peers[id] = a
			}
			if fmt.Sprint(peers) != fmt.Sprint(wantPeers) {
				t.Errorf("%s: pod %s: --peers expands to %v, want every voter's DNS name %v", r.target, pod, peers, wantPeers)
			}
		}
		// Raft data must survive a pod restart: --data-dir on a claim.
		dir, _ := inv.flagValue("data-dir")
		claim := mountFor(inv.container, dir)
		if claim == nil || !slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(c corev1.PersistentVolumeClaim) bool { return c.Name == claim.Name }) {
			t.Errorf("%s: coordinator --data-dir=%q is not on a volumeClaimTemplate mount: the Raft log would be lost with the pod", r.target, dir)
		}
		// The PodDisruptionBudget keeps a quorum through voluntary disruptions.
		var pdb *policyv1.PodDisruptionBudget
		for _, p := range r.pdbs {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err == nil && sel.Matches(labels.Set(sts.Spec.Template.Labels)) {
				pdb = p
			}
		}
		if pdb == nil {
			t.Errorf("%s: no PodDisruptionBudget selects the coordinator pods", r.target)
		} else {
			quorum := replicas/2 + 1
			if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.Type != intstr.Int || int(pdb.Spec.MaxUnavailable.IntVal) != 1 || replicas-1 < quorum {
				t.Errorf("%s: PodDisruptionBudget %s maxUnavailable %v with %d voters; want 1, which keeps a quorum of %d", r.target, pdb.Name, pdb.Spec.MaxUnavailable, replicas, quorum)
			}
		}
	}
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// configValue returns a key of the rendering's only ConfigMap.
func (r *rendering) configValue(t *testing.T, key string) string {
	t.Helper()
	if len(r.configMaps) != 1 {
		t.Fatalf("%s: want one ConfigMap (loom-config), got %v", r.target, keys(r.configMaps))
	}
	for _, cm := range r.configMaps {
		if v, ok := cm.Data[key]; ok {
			return v
		}
		t.Fatalf("%s: ConfigMap %s has no %s", r.target, cm.Name, key)
	}
	return ""
}

// mountFor returns the volume mount under which path lies.
func mountFor(c corev1.Container, path string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		mp := strings.TrimSuffix(m.MountPath, "/")
		if path == mp || strings.HasPrefix(path, mp+"/") {
			if best == nil || len(mp) > len(best.MountPath) {
				best = &c.VolumeMounts[i]
			}
		}
	}
	return best
}

func checkWorkers(t *testing.T, r *rendering, invs []*loomInvocation) {
	for _, inv := range invs {
		if inv.sub != "worker" {
			continue
		}
		sts := inv.sts
		checkHeadless(t, r, sts)
		domain := r.configValue(t, "CLUSTER_DOMAIN")
		listen, ok := inv.flagValue("listen")
		if !ok {
			listen = workerContract().Flags().Lookup("listen").DefValue
		}
		port, err := portOf(listen)
		if err != nil {
			t.Fatalf("%s: worker --listen=%s: %v", r.target, listen, err)
		}
		for i := range int(ptrOr(sts.Spec.Replicas, 1)) {
			pod := fmt.Sprintf("%s-%d", sts.Name, i)
			pi, err := r.invocation(sts, inv.container, pod)
			if err != nil {
				t.Fatalf("%s: pod %s: %v", r.target, pod, err)
			}
			want := net.JoinHostPort(podDNSName(pod, sts, r.namespace, domain), strconv.Itoa(int(port)))
			if got := pi.flags["advertise"]; got != want {
				t.Errorf("%s: worker pod %s: --advertise expands to %q, want its DNS name %q", r.target, pod, got, want)
			}
		}
		// The coordinator address is the client Service's gRPC port.
		coord := inv.flags["coordinator"]
		if coord == "" {
			coord = inv.env["LOOM_COORDINATOR"]
		}
		target, err := r.resolve(coord)
		if err != nil {
			t.Errorf("%s: worker --coordinator=%q: %v", r.target, coord, err)
		} else if target.sts.Name != "loom-coordinator" || target.port.Name != "grpc" || target.headless {
			t.Errorf("%s: worker --coordinator=%q reaches %s port %s (headless %v), want the coordinator's grpc port through its client Service", r.target, coord, target.sts.Name, target.port.Name, target.headless)
		}
		// The kubelet must wait for the drain checkpoint.
		drain, ok := inv.flags["drain-timeout"]
		if !ok {
			drain, _ = inv.flagValue("drain-timeout")
		}
		if drain == "" {
			drain = "2m" // the contract's default, while loom worker is not built
		}
		d, err := time.ParseDuration(drain)
		if err != nil {
			t.Fatalf("%s: worker --drain-timeout=%q: %v", r.target, drain, err)
		}
		grace := time.Duration(ptrOr(sts.Spec.Template.Spec.TerminationGracePeriodSeconds, 30)) * time.Second
		if grace < d+drainMargin {
			t.Errorf("%s: worker terminationGracePeriodSeconds %v < --drain-timeout %v + %v: the kubelet would kill a drain checkpoint", r.target, grace, d, drainMargin)
		}
		// GPUs offered equal GPUs granted.
		gpus := "0"
		if v, ok := inv.flags["gpus"]; ok {
			gpus = v
		}
		n, err := strconv.Atoi(gpus)
		if err != nil {
			t.Fatalf("%s: worker --gpus=%q: %v", r.target, gpus, err)
		}
		res := inv.container.Resources
		lim, hasLim := res.Limits["nvidia.com/gpu"]
		req, hasReq := res.Requests["nvidia.com/gpu"]
		if hasReq && (!hasLim || req.Cmp(lim) != 0) {
			t.Errorf("%s: worker nvidia.com/gpu request %v differs from limit %v; extended resources need equal values", r.target, req.String(), lim.String())
		}
		if int(lim.Value()) != n {
			t.Errorf("%s: worker --gpus=%d but its nvidia.com/gpu limit is %v", r.target, n, lim.String())
		}
		if n > 0 && strings.HasSuffix(inv.container.Image, ":dev") {
			t.Errorf("%s: GPU worker runs image %s; want the GPU image (Dockerfile target gpu)", r.target, inv.container.Image)
		}
		if dev := inv.flags["device"]; n > 0 && !strings.HasPrefix(dev, "gpu") {
			t.Errorf("%s: worker granted %d GPUs runs with --device=%q; it would compute on the CPU", r.target, n, dev)
		}
	}
}

// endpoint is where an address inside the cluster leads.
type endpoint struct {
	sts      *appsv1.StatefulSet
	port     corev1.ContainerPort
	headless bool
}

// resolve maps host:port to the StatefulSet and container port it reaches
// through a rendered Service: "svc", "svc.ns", "svc.ns.svc[.domain]", or
// "pod-N.svc..." for a headless one. An error means the address names a
// rendered Service wrongly; ok is false for addresses outside the rendering.
func (r *rendering) resolve(hostport string) (endpoint, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return endpoint{}, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return endpoint{}, fmt.Errorf("port %q: %v", portStr, err)
	}
	labelsOf := strings.Split(host, ".")
	svcName, pod := labelsOf[0], ""
	rest := labelsOf[1:]
	if r.services[svcName] == nil && len(labelsOf) > 1 && r.services[labelsOf[1]] != nil {
		pod, svcName, rest = labelsOf[0], labelsOf[1], labelsOf[2:]
	}
	svc := r.services[svcName]
	if svc == nil {
		return endpoint{}, errExternal
	}
	if len(rest) > 0 && rest[0] != r.namespace {
		return endpoint{}, fmt.Errorf("names namespace %q, the deployment is in %q", rest[0], r.namespace)
	}
	if len(rest) > 1 && rest[1] != "svc" {
		return endpoint{}, fmt.Errorf("host %q is not <service>.<namespace>.svc.<domain>", host)
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if int(svc.Spec.Ports[i].Port) == port {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return endpoint{}, fmt.Errorf("Service %s has no port %d", svc.Name, port)
	}
	headless := svc.Spec.ClusterIP == corev1.ClusterIPNone
	for _, sts := range r.statefulSets {
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(sts.Spec.Template.Labels)) {
			continue
		}
		if pod != "" {
			ord, ok := strings.CutPrefix(pod, sts.Name+"-")
			n, err := strconv.Atoi(ord)
			if !ok || err != nil || n < 0 || n >= int(ptrOr(sts.Spec.Replicas, 1)) || !headless || sts.Spec.ServiceName != svc.Name {
				return endpoint{}, fmt.Errorf("pod %q is not a pod of StatefulSet %s through its headless Service", pod, sts.Name)
			}
		}
		for _, c := range sts.Spec.Template.Spec.Containers {
			for _, cp := range c.Ports {
				if (sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal == cp.Name) ||
					(sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal == cp.ContainerPort) {
					if headless && pod != "" && int(cp.ContainerPort) != port {
						return endpoint{}, fmt.Errorf("a pod DNS name reaches the container port directly: %d, not %d", cp.ContainerPort, port)
					}
					return endpoint{sts: sts, port: cp, headless: headless}, nil
				}
			}
		}
		return endpoint{}, fmt.Errorf("Service %s port %d targets %s, which no container of StatefulSet %s declares", svc.Name, port, sp.TargetPort.String(), sts.Name)
	}
	return endpoint{}, fmt.Errorf("Service %s selects no StatefulSet", svc.Name)
}

var errExternal = errors.New("not a Service of this deployment")

func checkServices(t *testing.T, r *rendering) {
	for _, name := range keys(r.services) {
		svc := r.services[name]
		if len(svc.Spec.Selector) == 0 {
			t.Errorf("%s: Service %s has no selector", r.target, name)
			continue
		}
		for _, sp := range svc.Spec.Ports {
			if _, err := r.resolve(net.JoinHostPort(name, strconv.Itoa(int(sp.Port)))); err != nil {
				t.Errorf("%s: Service %s port %s (%d): %v", r.target, name, sp.Name, sp.Port, err)
			}
		}
	}
	for _, name := range keys(r.statefulSets) {
		sts := r.statefulSets[name]
		sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(sts.Spec.Template.Labels)) {
			t.Errorf("%s: StatefulSet %s selector %v does not match its pod labels %v", r.target, name, sts.Spec.Selector, sts.Spec.Template.Labels)
		}
		if sa := sts.Spec.Template.Spec.ServiceAccountName; sa != "" && r.accounts[sa] == nil {
			t.Errorf("%s: StatefulSet %s runs as ServiceAccount %q, which the rendering lacks", r.target, name, sa)
		}
	}
}

// secretRef is a key of a Secret that some container references.
type secretRef struct{ name, key string }

func checkSecrets(t *testing.T, r *rendering) {
	refs := map[secretRef][]string{}
	for _, name := range keys(r.statefulSets) {
		spec := r.statefulSets[name].Spec.Template.Spec
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			for _, e := range c.Env {
				where := fmt.Sprintf("StatefulSet %s container %s env %s", name, c.Name, e.Name)
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					ref := e.ValueFrom.SecretKeyRef
					refs[secretRef{ref.Name, ref.Key}] = append(refs[secretRef{ref.Name, ref.Key}], where)
					continue
				}
				if credentialName.MatchString(e.Name) {
					t.Errorf("%s: %s looks like a credential but is not a secretKeyRef", r.target, where)
				}
			}
			for _, a := range slices.Concat(c.Command, c.Args) {
				flagName, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
				if _, ok := notCredentials[flagName]; ok || !strings.HasPrefix(a, "-") {
					continue
				}
				if credentialName.MatchString(flagName) {
					t.Errorf("%s: StatefulSet %s container %s passes %q on the command line, where `kubectl describe` and ps show it; use a secretKeyRef env var", r.target, name, c.Name, a)
				}
			}
		}
	}
	for _, cm := range r.configMaps {
		for k := range cm.Data {
			if credentialName.MatchString(k) {
				t.Errorf("%s: ConfigMap %s holds %s, which looks like a credential; put it in a Secret", r.target, cm.Name, k)
			}
		}
	}
	docs, err := os.ReadFile(filepath.Join(repoRoot, secretDocs))
	if err != nil {
		t.Fatalf("%v", err)
	}
	created := secretsCreatedIn(string(docs))
	for ref, where := range refs {
		if !created[ref] {
			t.Errorf("%s: %s references Secret %s key %s, but %s shows no `kubectl create secret generic %s --from-literal=%s=...`", r.target, where[0], ref.name, ref.key, secretDocs, ref.name, ref.key)
		}
	}
}

// secretsCreatedIn finds the `kubectl create secret generic NAME
// --from-literal=KEY=...` commands of a Markdown page, including those
// continued over several lines with a trailing backslash.
func secretsCreatedIn(doc string) map[secretRef]bool {
	out := map[secretRef]bool{}
	var cmds []string
	var cur strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		line = strings.TrimSpace(line)
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		cmds = append(cmds, cur.String())
		cur.Reset()
	}
	for _, cmd := range cmds {
		f := strings.Fields(cmd)
		i := slices.Index(f, "generic")
		if i < 3 || f[i-1] != "secret" || f[i-2] != "create" || i+1 >= len(f) {
			continue
		}
		name := f[i+1]
		for _, a := range f[i+2:] {
			for _, p := range []string{"--from-literal=", "--from-file="} {
				if kv, ok := strings.CutPrefix(a, p); ok {
					if k, _, ok := strings.Cut(kv, "="); ok {
						out[secretRef{name, k}] = true
					}
				}
			}
		}
	}
	return out
}

func checkSecurity(t *testing.T, r *rendering) {
	uid := dockerfileUID(t)
	for _, name := range keys(r.statefulSets) {
		spec := r.statefulSets[name].Spec.Template.Spec
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("%s: StatefulSet %s: pod securityContext must set runAsNonRoot: true and a non-zero runAsUser", r.target, name)
		} else if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: StatefulSet %s: pod securityContext.seccompProfile must be RuntimeDefault", r.target, name)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: StatefulSet %s mounts a service account token; nothing in it calls the Kubernetes API", r.target, name)
		}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			sc := c.SecurityContext
			switch {
			case sc == nil:
				t.Errorf("%s: %s container %s has no securityContext", r.target, name, c.Name)
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Errorf("%s: %s container %s: allowPrivilegeEscalation must be false", r.target, name, c.Name)
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Errorf("%s: %s container %s: readOnlyRootFilesystem must be true (writable paths are volumes)", r.target, name, c.Name)
			case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
				t.Errorf("%s: %s container %s: capabilities must drop ALL and add none", r.target, name, c.Name)
			case sc.Privileged != nil && *sc.Privileged:
				t.Errorf("%s: %s container %s is privileged", r.target, name, c.Name)
			}
			if isLoomImage(c.Image) && psc != nil && psc.RunAsUser != nil && *psc.RunAsUser != uid {
				t.Errorf("%s: %s runs loom as uid %d; the image's USER is %d", r.target, name, *psc.RunAsUser, uid)
			}
			if c.ImagePullPolicy == "" || !strings.Contains(c.Image, ":") || strings.HasSuffix(c.Image, ":latest") {
				t.Errorf("%s: %s container %s image %q: pin a tag (not latest) and set imagePullPolicy", r.target, name, c.Name, c.Image)
			}
			if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
				t.Errorf("%s: %s container %s has no memory request", r.target, name, c.Name)
			}
		}
	}
}

func checkVolumes(t *testing.T, r *rendering, invs []*loomInvocation) {
	for _, name := range keys(r.statefulSets) {
		sts := r.statefulSets[name]
		spec := sts.Spec.Template.Spec
		have := map[string]bool{}
		for _, v := range spec.Volumes {
			have[v.Name] = true
		}
		for _, c := range sts.Spec.VolumeClaimTemplates {
			have[c.Name] = true
		}
		used := map[string]bool{}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			for _, m := range c.VolumeMounts {
				used[m.Name] = true
				if !have[m.Name] {
					t.Errorf("%s: %s container %s mounts %q, which is neither a volume nor a volumeClaimTemplate", r.target, name, c.Name, m.Name)
				}
			}
		}
		for v := range have {
			if !used[v] {
				t.Errorf("%s: %s defines volume %q that no container mounts", r.target, name, v)
			}
		}
	}
	// Every directory flag the loom binary writes to is on a volume (the root
	// filesystem is read-only).
	for _, inv := range invs {
		for _, f := range []string{"data-dir", "cache-dir"} {
			if v, ok := inv.flags[f]; ok && mountFor(inv.container, v) == nil {
				t.Errorf("%s: %s --%s=%s is not on a mounted volume; the root filesystem is read-only", r.target, inv.sts.Name, f, v)
			}
		}
		if mountFor(inv.container, "/tmp") == nil {
			t.Errorf("%s: %s has no writable /tmp", r.target, inv.sts.Name)
		}
	}
}

func checkNetworkPolicies(t *testing.T, r *rendering) {
	covered := map[string]map[string]bool{} // StatefulSet -> container port name -> allowed
	for _, name := range keys(r.netpols) {
		np := r.netpols[name]
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Errorf("%s: NetworkPolicy %s: %v", r.target, name, err)
			continue
		}
		var selected []*appsv1.StatefulSet
		for _, sts := range r.statefulSets {
			if sel.Matches(labels.Set(sts.Spec.Template.Labels)) {
				selected = append(selected, sts)
			}
		}
		if len(selected) == 0 || sel.Empty() {
			t.Errorf("%s: NetworkPolicy %s must select this deployment's pods (selects %d StatefulSets)", r.target, name, len(selected))
			continue
		}
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			t.Errorf("%s: NetworkPolicy %s does not restrict ingress", r.target, name)
		}
		for _, rule := range np.Spec.Ingress {
			if len(rule.Ports) == 0 {
				t.Errorf("%s: NetworkPolicy %s has an ingress rule that opens every port", r.target, name)
			}
			for _, peer := range rule.From {
				if peer.PodSelector == nil || peer.NamespaceSelector != nil || peer.IPBlock != nil {
					continue
				}
				ps, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
				if err != nil || !slices.ContainsFunc(keys(r.statefulSets), func(n string) bool {
					return ps.Matches(labels.Set(r.statefulSets[n].Spec.Template.Labels))
				}) {
					t.Errorf("%s: NetworkPolicy %s admits pods %v, which match no pod of the deployment", r.target, name, peer.PodSelector.MatchLabels)
				}
			}
			for _, p := range rule.Ports {
				if p.Port == nil {
					t.Errorf("%s: NetworkPolicy %s opens a protocol without a port", r.target, name)
					continue
				}
				for _, sts := range selected {
					found := false
					for _, c := range sts.Spec.Template.Spec.Containers {
						for _, cp := range c.Ports {
							if (p.Port.Type == intstr.String && p.Port.StrVal == cp.Name) || (p.Port.Type == intstr.Int && p.Port.IntVal == cp.ContainerPort) {
								found = true
								if covered[sts.Name] == nil {
									covered[sts.Name] = map[string]bool{}
								}
								covered[sts.Name][cp.Name] = true
							}
						}
					}
					if !found {
						t.Errorf("%s: NetworkPolicy %s opens port %s, which StatefulSet %s does not serve", r.target, name, p.Port.String(), sts.Name)
					}
				}
			}
		}
	}
	for _, name := range keys(r.statefulSets) {
		for _, c := range r.statefulSets[name].Spec.Template.Spec.Containers {
			for _, cp := range c.Ports {
				if !covered[name][cp.Name] {
					t.Errorf("%s: no NetworkPolicy admits traffic to StatefulSet %s port %s (%d)", r.target, name, cp.Name, cp.ContainerPort)
				}
			}
		}
	}
}

// checkAPIValidation repeats the API server's validation rules that a
// decoded object can still break: name syntax, port names and numbers,
// environment variable and ConfigMap key names, one handler per probe,
// requests not above limits, unique container and port names.
func checkAPIValidation(t *testing.T, r *rendering) {
	bad := func(what, value string, errs []string) {
		if len(errs) > 0 {
			t.Errorf("%s: %s %q: %s", r.target, what, value, strings.Join(errs, "; "))
		}
	}
	for _, name := range keys(r.services) {
		bad("Service name", name, validation.IsDNS1035Label(name))
		for _, p := range r.services[name].Spec.Ports {
			bad("Service "+name+" port name", p.Name, validation.IsValidPortName(p.Name))
			bad("Service "+name+" port", strconv.Itoa(int(p.Port)), validation.IsValidPortNum(int(p.Port)))
		}
	}
	for _, cm := range r.configMaps {
		bad("ConfigMap name", cm.Name, validation.IsDNS1123Subdomain(cm.Name))
		for k := range cm.Data {
			bad("ConfigMap "+cm.Name+" key", k, validation.IsConfigMapKey(k))
		}
	}
	for _, name := range keys(r.statefulSets) {
		// A StatefulSet's pods are named <name>-<ordinal> and carry a label
		// with that value, so the name must leave room for the ordinal.
		bad("StatefulSet name", name, validation.IsDNS1123Label(name+"-999"))
		sts := r.statefulSets[name]
		spec := sts.Spec.Template.Spec
		containers := map[string]bool{}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			where := "StatefulSet " + name + " container " + c.Name
			bad("container name", c.Name, validation.IsDNS1123Label(c.Name))
			if containers[c.Name] {
				t.Errorf("%s: %s: container name used twice", r.target, where)
			}
			containers[c.Name] = true
			ports := map[string]bool{}
			for _, p := range c.Ports {
				bad(where+" port name", p.Name, validation.IsValidPortName(p.Name))
				bad(where+" port", strconv.Itoa(int(p.ContainerPort)), validation.IsValidPortNum(int(p.ContainerPort)))
				if ports[p.Name] {
					t.Errorf("%s: %s: port name %s used twice", r.target, where, p.Name)
				}
				ports[p.Name] = true
			}
			defined := map[string]string{}
			for _, e := range c.Env {
				bad(where+" env", e.Name, validation.IsEnvVarName(e.Name))
				defined[e.Name] = ""
			}
			for _, a := range slices.Concat(c.Command, c.Args) {
				if _, undefined := expandVars(a, defined); len(undefined) > 0 {
					t.Errorf("%s: %s: %q references $(%s), which its env does not define (the kubelet would pass it literally)", r.target, where, a, strings.Join(undefined, "), $("))
				}
			}
			for _, pr := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
				if pr == nil {
					continue
				}
				n := 0
				for _, set := range []bool{pr.HTTPGet != nil, pr.TCPSocket != nil, pr.Exec != nil, pr.GRPC != nil} {
					if set {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%s: %s: a probe needs exactly one handler, has %d", r.target, where, n)
				}
				if pr.HTTPGet != nil && pr.HTTPGet.Port.Type == intstr.String && !ports[pr.HTTPGet.Port.StrVal] {
					t.Errorf("%s: %s: probe port %s is not a port of the container", r.target, where, pr.HTTPGet.Port.StrVal)
				}
				if pr.TCPSocket != nil && pr.TCPSocket.Port.Type == intstr.String && !ports[pr.TCPSocket.Port.StrVal] {
					t.Errorf("%s: %s: probe port %s is not a port of the container", r.target, where, pr.TCPSocket.Port.StrVal)
				}
			}
			for res, req := range c.Resources.Requests {
				if lim, ok := c.Resources.Limits[res]; ok && req.Cmp(lim) > 0 {
					t.Errorf("%s: %s: %s request %s exceeds its limit %s", r.target, where, res, req.String(), lim.String())
				}
			}
		}
	}
}

// checkEtcd checks the etcd StatefulSet of components/etcd, where rendered:
// flags that etcd of the go.mod version accepts, members advertising their
// DNS names, and the image matching the client library's version.
func checkEtcd(t *testing.T, r *rendering) {
	sts := r.statefulSets["loom-etcd"]
	if sts == nil {
		t.Skipf("%s does not include components/etcd", r.target)
	}
	checkHeadless(t, r, sts)
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("%s: etcd podManagementPolicy %q, want Parallel (members wait for a quorum before they are Ready)", r.target, sts.Spec.PodManagementPolicy)
	}
	c := sts.Spec.Template.Spec.Containers[0]
	version := goModVersion(t, "go.etcd.io/etcd/server/v3")
	if !strings.HasSuffix(c.Image, ":"+version) {
		t.Errorf("%s: etcd image %s; want the version of go.etcd.io/etcd/server/v3 in go.mod, %s", r.target, c.Image, version)
	}
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	embed.NewConfig().AddFlags(fs)
	// etcdmain (server/etcdmain/config.go) registers these on top of embed's.
	fs.String("initial-cluster-state", "new", "")
	fs.String("config-file", "", "")
	replicas := int(ptrOr(sts.Spec.Replicas, 1))
	domain := r.configValue(t, "CLUSTER_DOMAIN")
	var members []string
	for i := range replicas {
		pod := fmt.Sprintf("%s-%d", sts.Name, i)
		members = append(members, pod+"=http://"+podDNSName(pod, sts, r.namespace, domain)+":2380")
	}
	for i := range replicas {
		pod := fmt.Sprintf("%s-%d", sts.Name, i)
		env, err := r.podEnv(c, pod)
		if err != nil {
			t.Fatalf("%s: etcd: %v", r.target, err)
		}
		var args []string
		for _, a := range c.Args {
			v, undefined := expandVars(a, env)
			if len(undefined) > 0 {
				t.Errorf("%s: etcd arg %q references undefined $(%v)", r.target, a, undefined)
			}
			args = append(args, v)
		}
		fs.Init("etcd", flag.ContinueOnError)
		fs.SetOutput(&bytes.Buffer{})
		if err := fs.Parse(args); err != nil {
			t.Errorf("%s: etcd %s rejects its args: %v", r.target, version, err)
			continue
		}
		if fs.NArg() > 0 {
			t.Errorf("%s: etcd args have positional arguments %v", r.target, fs.Args())
		}
		want := map[string]string{
			"name":                        pod,
			"initial-advertise-peer-urls": "http://" + podDNSName(pod, sts, r.namespace, domain) + ":2380",
			"advertise-client-urls":       "http://" + podDNSName(pod, sts, r.namespace, domain) + ":2379",
			"initial-cluster":             strings.Join(members, ","),
		}
		for k, w := range want {
			if got := fs.Lookup(k).Value.String(); got != w {
				t.Errorf("%s: etcd pod %s --%s = %q, want %q", r.target, pod, k, got, w)
			}
		}
		dir := fs.Lookup("data-dir").Value.String()
		m := mountFor(c, dir)
		if m == nil || !slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(c corev1.PersistentVolumeClaim) bool { return c.Name == m.Name }) {
			t.Errorf("%s: etcd --data-dir=%q is not on a volumeClaimTemplate mount", r.target, dir)
		} else if dir == strings.TrimSuffix(m.MountPath, "/") {
			t.Errorf("%s: etcd --data-dir=%q is the volume's root, which fsGroup makes group-writable; etcd wants a 0700 directory it creates itself", r.target, dir)
		}
	}
}

// checkEndpoints checks that the addresses in loom-config that name
// something of this rendering reach the right port.
func checkEndpoints(t *testing.T, r *rendering) {
	insecure, scheme := r.configValue(t, "S3_INSECURE"), r.configValue(t, "S3_SCHEME")
	if !(insecure == "true" && scheme == "http" || insecure == "false" && scheme == "https") {
		t.Errorf("%s: loom-config S3_INSECURE=%s but S3_SCHEME=%s; the worker (--s3-insecure) and the coordinator (--s3-endpoint URL) would speak different protocols: want true/http or false/https", r.target, insecure, scheme)
	}
	want := map[string]string{ // config key -> container port name it must reach
		"LOOM_ETCD_ENDPOINTS": "client",
		"LOOM_S3_ENDPOINT":    "s3",
	}
	for key, port := range want {
		for _, ep := range strings.Split(r.configValue(t, key), ",") {
			ep = strings.TrimPrefix(strings.TrimPrefix(ep, "http://"), "https://")
			if !strings.Contains(ep, ":") {
				continue // a host with the scheme's default port: external
			}
			target, err := r.resolve(ep)
			if err == errExternal {
				continue
			}
			if err != nil {
				t.Errorf("%s: %s %q: %v", r.target, key, ep, err)
			} else if target.port.Name != port {
				t.Errorf("%s: %s %q reaches %s port %s, want port %s", r.target, key, ep, target.sts.Name, target.port.Name, port)
			}
		}
	}
}

func goModVersion(t *testing.T, module string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == module {
			return f[1]
		}
		if len(f) >= 3 && f[0] == "require" && f[1] == module {
			return f[2]
		}
	}
	t.Fatalf("go.mod does not require %s", module)
	return ""
}

// ---- Dockerfile ----------------------------------------------------------------

// dockerInstr is one instruction of a Dockerfile, continuation lines joined.
type dockerInstr struct {
	line int    // 1-based line of the instruction's first line
	op   string // upper case: FROM, RUN, ...
	args string
}

// parseDockerfile splits a Dockerfile into instructions: comments and
// parser directives dropped, backslash-continued lines joined.
func parseDockerfile(src string) ([]dockerInstr, error) {
	var out []dockerInstr
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(strings.NewReader(src))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		op, args, _ := strings.Cut(text, " ")
		if op == "" {
			continue
		}
		if strings.ContainsFunc(op, func(r rune) bool { return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z') }) {
			return nil, fmt.Errorf("line %d: %q is not an instruction", start, op)
		}
		out = append(out, dockerInstr{line: start, op: strings.ToUpper(op), args: strings.TrimSpace(args)})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("line %d: the file ends inside a continued instruction", start)
	}
	return out, nil
}

// dockerStage is one FROM ... [AS name] block.
type dockerStage struct {
	name, base string
	instrs     []dockerInstr
}

func dockerStages(instrs []dockerInstr) ([]dockerStage, error) {
	globalArgs := map[string]string{}
	var stages []dockerStage
	for _, in := range instrs {
		switch {
		case in.op == "ARG" && len(stages) == 0:
			k, v, _ := strings.Cut(in.args, "=")
			globalArgs[k] = v
		case in.op == "FROM":
			f := strings.Fields(in.args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--") })
			if len(f) != 1 && (len(f) != 3 || !strings.EqualFold(f[1], "AS")) {
				return nil, fmt.Errorf("line %d: FROM %s: want FROM image [AS name]", in.line, in.args)
			}
			st := dockerStage{base: os.Expand(f[0], func(k string) string { return globalArgs[k] })}
			if len(f) == 3 {
				st.name = f[2]
			}
			stages = append(stages, st)
		case len(stages) == 0:
			return nil, fmt.Errorf("line %d: %s before the first FROM", in.line, in.op)
		default:
			stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		}
	}
	return stages, nil
}

func readDockerfile(t *testing.T) []dockerStage {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	instrs, err := parseDockerfile(string(src))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	stages, err := dockerStages(instrs)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return stages
}

// dockerfileUID is the numeric uid of the USER of the Dockerfile's final
// stage.
func dockerfileUID(t *testing.T) int64 {
	t.Helper()
	stages := readDockerfile(t)
	final := stages[len(stages)-1]
	for _, in := range slices.Backward(final.instrs) {
		if in.op == "USER" {
			u, _, _ := strings.Cut(in.args, ":")
			uid, err := strconv.ParseInt(u, 10, 64)
			if err != nil {
				t.Fatalf("Dockerfile line %d: USER %s: want a numeric uid (Kubernetes checks runAsNonRoot against numbers)", in.line, in.args)
			}
			return uid
		}
	}
	t.Fatalf("Dockerfile: the final stage has no USER")
	return 0
}

func TestDockerfile(t *testing.T) {
	stages := readDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stage(s); want a multi-stage build (a Go toolchain stage, then a minimal runtime)", len(stages))
	}
	byName := map[string]dockerStage{}
	for i, s := range stages {
		byName[s.name] = s
		byName[strconv.Itoa(i)] = s
	}

	// Expected EXPOSE: the default ports of the long-running roles.
	wantPorts := map[int32]string{}
	for sub, ports := range loomPorts {
		cmd := subcommand(sub)
		for _, flagName := range ports {
			var def string
			switch {
			case cmd != nil:
				f := lookupFlag(cmd, flagName)
				if f == nil {
					t.Fatalf("`loom %s` has no --%s", sub, flagName)
				}
				def = f.def
			case sub == "worker":
				def = workerContract().Flags().Lookup(flagName).DefValue
				t.Logf("loom worker not built yet: using its contract default --%s=%s", flagName, def)
			default:
				t.Fatalf("`loom %s` is not in the command tree", sub)
			}
			p, err := portOf(def)
			if err != nil {
				t.Fatalf("`loom %s --%s` default %q: %v", sub, flagName, def, err)
			}
			wantPorts[p] = "loom " + sub + " --" + flagName
		}
	}
	goVersion := goModGoVersion(t)

	final := stages[len(stages)-1]
	if !strings.HasPrefix(final.base, "gcr.io/distroless/static") && final.base != "scratch" {
		t.Errorf("Dockerfile: the default (last) stage is FROM %s; want gcr.io/distroless/static...:nonroot or scratch (a static binary needs no more)", final.base)
	}
	images := 0
	for _, st := range stages {
		entry := lastInstr(st, "ENTRYPOINT")
		if entry == nil {
			continue // a build stage
		}
		images++
		where := fmt.Sprintf("Dockerfile stage FROM %s", st.base)
		if entry.args != `["/loom"]` {
			t.Errorf("%s line %d: ENTRYPOINT %s; want the exec form [\"/loom\"] (the manifests pass the subcommand as args)", where, entry.line, entry.args)
		}
		user := lastInstr(st, "USER")
		if user == nil {
			t.Errorf("%s: no USER; the image must not run as root", where)
		} else if u, _, _ := strings.Cut(user.args, ":"); u == "0" || u == "root" || strings.Trim(u, "0123456789") != "" {
			t.Errorf("%s line %d: USER %s; want a numeric non-root uid", where, user.line, user.args)
		}
		exposed := map[int32]bool{}
		for _, in := range st.instrs {
			if in.op != "EXPOSE" {
				continue
			}
			for _, p := range strings.Fields(in.args) {
				n, err := strconv.ParseUint(strings.TrimSuffix(p, "/tcp"), 10, 16)
				if err != nil {
					t.Errorf("%s line %d: EXPOSE %s: %v", where, in.line, p, err)
					continue
				}
				exposed[int32(n)] = true
			}
		}
		for p, what := range wantPorts {
			if !exposed[p] {
				t.Errorf("%s: does not EXPOSE %d, the default of %s", where, p, what)
			}
		}
		for p := range exposed {
			if _, ok := wantPorts[p]; !ok {
				t.Errorf("%s: EXPOSEs %d, which is no default port of loom coordinator or worker (%v)", where, p, wantPorts)
			}
		}
		// The binary comes from a build stage of this file that builds ./cmd/loom.
		var from string
		for _, in := range st.instrs {
			if in.op == "COPY" && strings.HasSuffix(in.args, " /loom") {
				for _, f := range strings.Fields(in.args) {
					if v, ok := strings.CutPrefix(f, "--from="); ok {
						from = v
					}
				}
			}
		}
		build, ok := byName[from]
		if !ok {
			t.Errorf("%s: /loom is not copied from a build stage of this Dockerfile (COPY --from=<stage> ... /loom)", where)
			continue
		}
		var run string
		for _, in := range build.instrs {
			if in.op == "RUN" && strings.Contains(in.args, "go build") {
				run = in.args
			}
		}
		if !strings.Contains(run, "./cmd/loom") || !strings.Contains(run, "-trimpath") {
			t.Errorf("%s: build stage %s: want `go build -trimpath ... ./cmd/loom`, got RUN %q", where, from, run)
		}
		if st.base == final.base {
			if !strings.Contains(run, "CGO_ENABLED=0") {
				t.Errorf("%s: build stage %s must build with CGO_ENABLED=0 for a static binary on %s; got RUN %q", where, from, final.base, run)
			}
			if !strings.HasPrefix(build.base, "golang:"+goVersion) {
				t.Errorf("%s: build stage is FROM %s; want golang:%s (the go directive of go.mod)", where, build.base, goVersion)
			}
		}
	}
	if images == 0 {
		t.Fatalf("Dockerfile: no stage has an ENTRYPOINT")
	}
	if lastInstr(final, "ENTRYPOINT") == nil {
		t.Errorf("Dockerfile: the default (last) stage has no ENTRYPOINT")
	}
	if _, err := os.Stat(filepath.Join(repoRoot, ".dockerignore")); err != nil {
		t.Errorf(".dockerignore: %v", err)
	}
}

func lastInstr(st dockerStage, op string) *dockerInstr {
	for i := len(st.instrs) - 1; i >= 0; i-- {
		if st.instrs[i].op == op {
			return &st.instrs[i]
		}
	}
	return nil
}

// goModGoVersion returns the major.minor of go.mod's go directive.
func goModGoVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "go "); ok {
			parts := strings.SplitN(v, ".", 3)
			if len(parts) >= 2 {
				return parts[0] + "." + parts[1]
			}
		}
	}
	t.Fatal("go.mod has no go directive")
	return ""
}

// ---- the checkers' own tests ------------------------------------------------------

func TestExpandVars(t *testing.T) {
	env := map[string]string{"POD_NAME": "loom-worker-1", "NS": "loom", "EMPTY": ""}
	for _, tc := range []struct {
		in, want  string
		undefined []string
	}{
		{"", "", nil},
		{"plain", "plain", nil},
		{"$(POD_NAME).svc", "loom-worker-1.svc", nil},
		{"$(POD_NAME).$(NS)", "loom-worker-1.loom", nil},
		{"$(EMPTY)x", "x", nil},
		{"$$(POD_NAME)", "$(POD_NAME)", nil},
		{"$(MISSING)-$(NS)", "$(MISSING)-loom", []string{"MISSING"}},
		{"cost $5", "cost $5", nil},
		{"$(unterminated", "$(unterminated", nil},
		{"trailing $", "trailing $", nil},
		{"$$$$", "$$", nil},
	} {
		got, undefined := expandVars(tc.in, env)
		if got != tc.want || fmt.Sprint(undefined) != fmt.Sprint(tc.undefined) {
			t.Errorf("expandVars(%q) = %q, undefined %v; want %q, undefined %v", tc.in, got, undefined, tc.want, tc.undefined)
		}
	}
}

// expandVarsNaive is the reference for expandVars: a rune-by-rune state
// machine written the way the kubelet's expansion package states its rules.
func expandVarsNaive(s string, env map[string]string) string {
	var out []byte
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$$"):
			out = append(out, '$')
			i += 2
		case strings.HasPrefix(s[i:], "$(") && strings.Contains(s[i+2:], ")"):
			j := i + 2 + strings.Index(s[i+2:], ")")
			if v, ok := env[s[i+2:j]]; ok {
				out = append(out, v...)
			} else {
				out = append(out, s[i:j+1]...)
			}
			i = j + 1
		default:
			out = append(out, s[i])
			i++
		}
	}
	return string(out)
}

func FuzzExpandVars(f *testing.F) {
	for _, s := range []string{"$(A)", "$$(A)", "$(A)$(B)", "$(", "$", "x$(A", "$()", "$$$(A)"} {
		f.Add(s)
	}
	env := map[string]string{"A": "alpha", "B": "$(A)", "": "empty"}
	f.Fuzz(func(t *testing.T, s string) {
		got, undefined := expandVars(s, env)
		if want := expandVarsNaive(s, env); got != want {
			t.Errorf("expandVars(%q) = %q; the reference gives %q", s, got, want)
		}
		for _, n := range undefined {
			if _, ok := env[n]; ok {
				t.Errorf("expandVars(%q) reports %q undefined, but env defines it", s, n)
			}
		}
		for _, n := range referencedVars(s) {
			if !strings.Contains(s, "$("+n+")") {
				t.Errorf("referencedVars(%q) returned %q, which s does not reference", s, n)
			}
		}
	})
}

func TestParseCLIArgs(t *testing.T) {
	isBool := func(n string) bool { return n == "s3-insecure" }
	for _, tc := range []struct {
		args    []string
		want    string
		wantErr string
	}{
		{[]string{"--id=a", "--listen", ":7300"}, "[{id a true} {listen :7300 true}]", ""},
		{[]string{"--s3-insecure", "--id=x"}, "[{s3-insecure  false} {id x true}]", ""},
		{[]string{"--s3-insecure=false"}, "[{s3-insecure false true}]", ""},
		{[]string{"--peers=a=b:1,c=d:2"}, "[{peers a=b:1,c=d:2 true}]", ""},
		{[]string{"--id"}, "", "has no value"},
		{[]string{"-v"}, "", "long flags only"},
		{[]string{"positional"}, "", "long flags only"},
		{[]string{"--"}, "", "long flags only"},
		{[]string{"--=x"}, "", "empty flag name"},
	} {
		got, err := parseCLIArgs(tc.args, isBool)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseCLIArgs(%q) error %v; want one containing %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("parseCLIArgs(%q) = %v, %v; want %s", tc.args, got, err, tc.want)
		}
	}
}

func FuzzParseCLIArgs(f *testing.F) {
	f.Add("--id=a\x00--listen\x00:7300")
	f.Add("--s3-insecure\x00--x")
	f.Add("--\x00-")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		got, err := parseCLIArgs(args, func(n string) bool { return strings.HasPrefix(n, "b") })
		if err != nil {
			return
		}
		// Re-joining the parsed flags as --name=value must parse to the same.
		var again []string
		for _, a := range got {
			if a.hasValue {
				again = append(again, "--"+a.name+"="+a.value)
			} else {
				again = append(again, "--"+a.name)
			}
		}
		got2, err := parseCLIArgs(again, func(n string) bool { return strings.HasPrefix(n, "b") })
		if err != nil || fmt.Sprint(got2) != fmt.Sprint(got) {
			t.Errorf("parseCLIArgs(%q) = %v, but its canonical form %q parses to %v, %v", args, got, again, got2, err)
		}
	})
}

func TestDecodeRenderingStrict(t *testing.T) {
	good := `apiVersion: v1
kind: ConfigMap
metadata:
  name: loom-config
data:
  A: b
---
apiVersion: v1
kind: Service
metadata:
  name: s
spec:
  clusterIP: None
`
	if r, err := decodeRendering("good", []byte(good)); err != nil || len(r.configMaps) != 1 || len(r.services) != 1 || r.namespace != "default" {
		t.Fatalf("decodeRendering(good) = %+v, %v; want one ConfigMap and one Service in default", r, err)
	}
	for _, tc := range []struct {
		name, doc, wantErr string
	}{
		{"misspelt field", "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  clusterIp: None\n", "unknown field"},
		{"field at wrong level", "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: s\nspec:\n  replicas: 1\n  containers: []\n", "unknown field"},
		{"wrong type", "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: s\nspec:\n  replicas: three\n", "StatefulSet"},
		{"secret", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  k: v\n", "kubectl create secret"},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n", "unexpected kind"},
		{"duplicate", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n", "twice"},
		{"two namespaces", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n  namespace: b\n", "several namespaces"},
		{"no name", "apiVersion: v1\nkind: ConfigMap\ndata: {}\n", "metadata.name"},
	} {
		if _, err := decodeRendering(tc.name, []byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("decodeRendering(%s) error %v; want one containing %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestSplitYAMLDocuments(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", 0},
		{"a: 1\n", 1},
		{"---\na: 1\n---\nb: 2\n", 2},
		{"a: 1\n---\n\n---\nb: |\n  ---x\n", 2},
		{"a: 1\r\n---\r\nb: 2\r\n", 2},
	} {
		if got := splitYAMLDocuments([]byte(tc.in)); len(got) != tc.want {
			t.Errorf("splitYAMLDocuments(%q) = %d documents %q; want %d", tc.in, len(got), got, tc.want)
		}
	}
}

func TestSecretsCreatedIn(t *testing.T) {
	doc := "```sh\nkubectl -n loom create secret generic loom-s3 \\\n  --from-literal=access-key=AK \\\n  --from-literal=secret-key=\"$SK\"\nkubectl create secret generic loom-token --from-file=token=./token.txt\nkubectl create secret tls other --cert=a --key=b\n```\n"
	got := secretsCreatedIn(doc)
	want := map[secretRef]bool{{"loom-s3", "access-key"}: true, {"loom-s3", "secret-key"}: true, {"loom-token", "token"}: true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("secretsCreatedIn(...) = %v; want %v", got, want)
	}
}

func TestIsLoomImage(t *testing.T) {
	for _, tc := range []struct {
		image string
		want  bool
	}{
		{"loom", true},
		{"loom:dev", true},
		{"registry.example.com:5000/team/loom:1.2", true},
		{"ghcr.io/loomtrain/loom@sha256:abc", true},
		{"loom-gpu:dev", false},
		{"gcr.io/etcd-development/etcd:v3.7.3", false},
		{"registry:5000/loomx", false},
	} {
		if got := isLoomImage(tc.image); got != tc.want {
			t.Errorf("isLoomImage(%q) = %v; want %v", tc.image, got, tc.want)
		}
	}
}

func TestParseDockerfile(t *testing.T) {
	src := "# syntax=docker/dockerfile:1\nARG V=1.26\nFROM golang:${V} AS build\nRUN a \\\n    b \\\n  c\n\nFROM scratch\nCOPY --from=build /out/loom /loom\nUSER 65532:65532\nENTRYPOINT [\"/loom\"]\n"
	instrs, err := parseDockerfile(src)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(instrs)
	want := `[{2 ARG V=1.26} {3 FROM golang:${V} AS build} {4 RUN a  b  c} {8 FROM scratch} {9 COPY --from=build /out/loom /loom} {10 USER 65532:65532} {11 ENTRYPOINT ["/loom"]}]`
	if got != want {
		t.Errorf("parseDockerfile(...) = %s\nwant %s", got, want)
	}
	stages, err := dockerStages(instrs)
	if err != nil || len(stages) != 2 || stages[0].name != "build" || stages[0].base != "golang:1.26" || stages[1].base != "scratch" {
		t.Errorf("dockerStages(...) = %+v, %v; want build FROM golang:1.26, then scratch", stages, err)
	}
	for _, bad := range []string{"RUN x \\\n", "FROM a AS\n", "RUN before from\n", "FR-OM x\n"} {
		instrs, err := parseDockerfile(bad)
		if err == nil {
			_, err = dockerStages(instrs)
		}
		if err == nil {
			t.Errorf("parseDockerfile+dockerStages(%q): no error", bad)
		}
	}
}

func FuzzParseDockerfile(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile")); err == nil {
		f.Add(string(b))
	}
	f.Add("FROM a\nRUN b \\\n c\n")
	f.Fuzz(func(t *testing.T, src string) {
		instrs, err := parseDockerfile(src)
		if err != nil {
			return
		}
		for _, in := range instrs {
			if in.op == "" || in.op != strings.ToUpper(in.op) || in.line < 1 {
				t.Errorf("parseDockerfile(%q): instruction %+v", src, in)
			}
		}
		_, _ = dockerStages(instrs)
	})
}

// ---- docs/deploy.md ------------------------------------------------------------

// plannedCommands are the user-facing commands of DESIGN.md that other work
// adds; docs/deploy.md may show them before they are in the tree.
var plannedCommands = []string{"data", "logs", "worker", "dev"}

// docCommands returns the shell commands in the ```sh blocks of a Markdown
// page, continuation lines joined, leading VAR=value assignments and a
// trailing & dropped.
func docCommands(doc string) []string {
	var out []string
	in := false
	var cur strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			in = !in && trimmed == "```sh"
			continue
		}
		if !in || trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(cur.String()), "&"))
		cur.Reset()
		if i := strings.Index(cmd, " #"); i >= 0 {
			cmd = strings.TrimSpace(cmd[:i])
		}
		f := strings.Fields(cmd)
		for len(f) > 0 && regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`).MatchString(f[0]) {
			f = f[1:]
		}
		if len(f) > 0 {
			out = append(out, strings.Join(f, " "))
		}
	}
	return out
}

func TestDocCommands(t *testing.T) {
	doc := "text\n```sh\nkubectl -n loom scale statefulset/loom-worker \\\n  --replicas=4\nLOOM_TOKEN=x loom status   # all jobs\nkubectl port-forward svc/a 1:1 &\n```\n```yaml\nnot: a command\n```\n"
	got := docCommands(doc)
	want := []string{"kubectl -n loom scale statefulset/loom-worker --replicas=4", "loom status", "kubectl port-forward svc/a 1:1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("docCommands(...) = %q; want %q", got, want)
	}
}

// TestDeployDocs checks the commands of docs/deploy.md: the loom commands
// and flags exist (or are planned), and the kubectl commands name
// kustomizations, objects and ports that the dev overlay renders.
func TestDeployDocs(t *testing.T) {
	kubectl := kubectlPath(t)
	b, err := os.ReadFile(filepath.Join(repoRoot, secretDocs))
	if err != nil {
		t.Fatal(err)
	}
	r := renderTarget(t, kubectl, "deploy/k8s/overlays/dev")
	cmds := docCommands(string(b))
	if len(cmds) < 10 {
		t.Fatalf("%s has %d shell commands; the walkthrough needs more", secretDocs, len(cmds))
	}
	for _, line := range cmds {
		f := strings.Fields(line)
		switch f[0] {
		case "loom":
			checkDocLoom(t, line, f[1:])
		case "kubectl":
			checkDocKubectl(t, r, line, f[1:])
		case "docker":
			if i := slices.Index(f, "--target"); i >= 0 && i+1 < len(f) {
				if !slices.ContainsFunc(readDockerfile(t), func(s dockerStage) bool { return s.name == f[i+1] }) {
					t.Errorf("%s: %q: the Dockerfile has no stage %s", secretDocs, line, f[i+1])
				}
			}
		case "kind", "minikube", "export", "umask", "head":
		default:
			t.Errorf("%s: %q: the walkthrough uses kubectl and loom only (and docker/kind/minikube to build and load the image, umask and head to write the token files, export for the token)", secretDocs, line)
		}
	}
}

func checkDocLoom(t *testing.T, line string, args []string) {
	var path []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			break
		}
		path = append(path, a)
	}
	cmd, rest, err := rootCmd.Find(path)
	if err != nil || cmd == rootCmd {
		if len(path) > 0 && slices.Contains(plannedCommands, path[0]) {
			t.Logf("%s: %q: `loom %s` is not built yet", secretDocs, line, path[0])
			return
		}
		t.Errorf("%s: %q: no such loom command (%v)", secretDocs, line, err)
		return
	}
	_ = rest
	for _, a := range args {
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		var ok bool
		if strings.HasPrefix(a, "--") {
			ok = lookupFlag(cmd, name) != nil
		} else {
			ok = cmd.Flags().ShorthandLookup(name) != nil || cmd.InheritedFlags().ShorthandLookup(name) != nil
		}
		if !ok {
			t.Errorf("%s: %q: `loom %s` has no flag %s", secretDocs, line, cmd.Name(), a)
		}
	}
}

func checkDocKubectl(t *testing.T, r *rendering, line string, args []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-n" && i+1 < len(args):
			if args[i+1] != r.namespace {
				t.Errorf("%s: %q: namespace %s, the overlays deploy to %s", secretDocs, line, args[i+1], r.namespace)
			}
			i++
		case a == "-k" && i+1 < len(args):
			if !slices.Contains(deployTargets, args[i+1]) {
				t.Errorf("%s: %q: %s is not one of the tested kustomizations %v", secretDocs, line, args[i+1], deployTargets)
			}
			i++
		case strings.HasPrefix(a, "statefulset/"):
			if r.statefulSets[strings.TrimPrefix(a, "statefulset/")] == nil {
				t.Errorf("%s: %q: the dev overlay has no StatefulSet %s", secretDocs, line, a)
			}
		case strings.HasPrefix(a, "svc/"):
			svc := r.services[strings.TrimPrefix(a, "svc/")]
			if svc == nil {
				t.Errorf("%s: %q: the dev overlay has no Service %s", secretDocs, line, a)
				continue
			}
			if slices.Contains(args, "port-forward") && i+1 < len(args) {
				_, remote, _ := strings.Cut(args[i+1], ":")
				if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == remote }) {
					t.Errorf("%s: %q: Service %s has no port %s", secretDocs, line, svc.Name, remote)
				}
			}
		case slices.Contains(args, "logs") && strings.HasPrefix(a, "loom-"):
			ok := false
			for _, sts := range r.statefulSets {
				if ord, found := strings.CutPrefix(a, sts.Name+"-"); found {
					n, err := strconv.Atoi(ord)
					ok = ok || err == nil && n < int(ptrOr(sts.Spec.Replicas, 1))
				}
			}
			if !ok {
				t.Errorf("%s: %q: no pod %s in the dev overlay", secretDocs, line, a)
			}
		}
	}
	if slices.Contains(args, "secret") && slices.Contains(args, "generic") && !slices.Contains(args, "create") {
		t.Errorf("%s: %q: want kubectl create secret generic", secretDocs, line)
	}
}

// TestDockerfileDefaultBinaryIsStatic builds ./cmd/loom as the default
// image's build stage does (its CGO_ENABLED and -tags) and checks that the
// binary has no ELF interpreter: distroless static has no dynamic loader,
// so a dynamically linked binary would not start there. The Vulkan
// backend (purego) makes a binary dynamic, which is why that stage builds
// with -tags novulkan.
func TestDockerfileDefaultBinaryIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	stages := readDockerfile(t)
	final := stages[len(stages)-1]
	var from string
	for _, in := range final.instrs {
		if in.op == "COPY" && strings.HasSuffix(in.args, " /loom") {
			for _, f := range strings.Fields(in.args) {
				if v, ok := strings.CutPrefix(f, "--from="); ok {
					from = v
				}
			}
		}
	}
	var run string
	for _, st := range stages {
		if st.name != from {
			continue
		}
		for _, in := range st.instrs {
			if in.op == "RUN" && strings.Contains(in.args, "go build") {
				run = in.args
			}
		}
	}
	if run == "" {
		t.Fatalf("Dockerfile: the default stage's binary comes from stage %q, which runs no go build", from)
	}
	args := []string{"build", "-o", filepath.Join(t.TempDir(), "loom")}
	fields := strings.Fields(run)
	for i, f := range fields {
		if f == "-tags" && i+1 < len(fields) {
			args = append(args, "-tags", fields[i+1])
		}
	}
	cmd := exec.Command("go", append(args, "./cmd/loom")...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, out)
	}
	f, err := elf.Open(args[2])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the default image's binary (go %s) is dynamically linked; it would not start on %s", strings.Join(args, " "), final.base)
		}
	}
}
