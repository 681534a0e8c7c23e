package depcheck

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Module is the module path of this repository.
const Module = "github.com/loomtrain/loom"

// Rule says which of our packages a top-level package may import. Paths are
// relative to the module root; a top-level package may always import its own
// subpackages.
type Rule struct {
	Pkg   string   // top-level directory, e.g. "models"
	May   []string // top-level directories it may import
	Why   string   // the sentence of the design behind the rule
	NoAny bool     // may import nothing of ours (not even internal/)
}

// Rules is the dependency table of DESIGN.md. internal/ may be imported by
// every package whose rule does not set NoAny.
var Rules = []Rule{
	{Pkg: "api", NoAny: true, Why: "api holds protobuf and manifest types and imports nothing of ours"},
	{Pkg: "kernels", NoAny: true, Why: "kernels imports nothing of ours"},
	{Pkg: "models", May: []string{"kernels"}, NoAny: true, Why: "models may import only kernels"},
	{Pkg: "shard", Why: "shard imports only Arrow and minio-go, nothing of ours but internal/"},
	{Pkg: "collective", May: []string{"kernels"}, Why: "collective may import only kernels"},
	{Pkg: "trainer", May: []string{"models", "shard", "collective", "kernels", "api"}, Why: "trainer may import models, shard, collective (and their kernels) and api"},
	{Pkg: "coordinator", May: []string{"api"}, Why: "coordinator may import only api"},
	{Pkg: "worker", May: []string{"trainer", "shard", "collective", "api", "models", "kernels"}, Why: "worker may import trainer, shard, collective and api"},
}

// testKitRule keeps test kits out of the binary: only _test.go files and
// other test kits import "testing" or a test kit.
const testKitRule = "only tests and …test packages import testing or a …test package"

// IsTestKit reports whether the package at path (an import path or a
// directory relative to the module root) is a test kit: its last element
// ends in "test" (registrytest, etcdservertest, logtest).
func IsTestKit(p string) bool { return strings.HasSuffix(path.Base(p), "test") }

// Violation is one import that breaks a rule.
type Violation struct {
	File   string // path of the importing file, relative to the module root
	Import string // the imported package path
	Rule   string // why it is not allowed
}

func (v Violation) String() string {
	return fmt.Sprintf("%s imports %s: %s", v.File, v.Import, v.Rule)
}

// Check walks the non-test Go files under root (the module root) and returns
// every import that breaks Rules, the rule that only cmd/ imports worker
// and coordinator, or the rule that only test kits import "testing" or a
// test kit.
func Check(root string) ([]Violation, error) {
	rules := map[string]Rule{}
	for _, r := range Rules {
		rules[r.Pkg] = r
	}
	var out []Violation
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return fmt.Errorf("depcheck: %s: %w", rel, err)
		}
		top := strings.SplitN(rel, "/", 2)[0]
		kit := IsTestKit(path.Dir(rel))
		for _, is := range f.Imports {
			ip, _ := strconv.Unquote(is.Path.Value)
			if !kit && (ip == "testing" || IsTestKit(ip) && strings.HasPrefix(ip, Module+"/")) {
				out = append(out, Violation{rel, ip, testKitRule})
				continue
			}
			if ip != Module && !strings.HasPrefix(ip, Module+"/") {
				continue
			}
			dep := strings.TrimPrefix(strings.TrimPrefix(ip, Module), "/")
			depTop := strings.SplitN(dep, "/", 2)[0]
			if depTop == top {
				continue
			}
			if (depTop == "worker" || depTop == "coordinator") && top != "cmd" {
				out = append(out, Violation{rel, ip, "nothing but cmd/ and tests imports " + depTop})
				continue
			}
			r, ok := rules[top]
			if !ok {
				continue
			}
			allowed := depTop == "internal" && !r.NoAny
			for _, m := range r.May {
				if m == depTop {
					allowed = true
				}
			}
			if !allowed {
				out = append(out, Violation{rel, ip, r.Why})
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, err
}

// ModuleRoot finds the directory holding go.mod, starting at dir and going up.
func ModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("depcheck: no go.mod above %s", dir)
		}
	}
}
