package depcheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDependencyDirection(t *testing.T) {
	root, err := ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := Check(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Errorf("dependency rule broken: %s", v)
	}
}

// TestCheckFindsViolations builds a small fake module in a temporary
// directory and checks that each kind of broken rule is reported, and that
// allowed imports and test files are not.
func TestCheckFindsViolations(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, src string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module "+Module+"\n")
	write("kernels/k.go", "package kernels\nimport _ \""+Module+"/models\"\n")
	write("kernels/sub/s.go", "package sub\nimport _ \""+Module+"/kernels\"\n")
	write("models/m.go", "package models\nimport _ \""+Module+"/kernels\"\nimport _ \""+Module+"/shard\"\n")
	write("shard/s.go", "package shard\nimport _ \""+Module+"/coordinator\"\n")
	write("trainer/t.go", "package trainer\nimport _ \""+Module+"/models\"\nimport _ \""+Module+"/internal/x\"\n")
	write("trainer/t_test.go", "package trainer\nimport _ \""+Module+"/worker\"\n")
	write("cmd/loom/main.go", "package main\nimport _ \""+Module+"/worker\"\n")
	write("cmd/loom/bench.go", "package main\nimport _ \""+Module+"/shard/storetest\"\n")
	write("shard/storetest/kit.go", "package storetest\nimport _ \"testing\"\nimport _ \""+Module+"/internal/logtest\"\n")
	write("internal/etcdserver/testing.go", "package etcdserver\nimport _ \"testing\"\n")
	vs, err := Check(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"cmd/loom/bench.go imports " + Module + "/shard/storetest: " + testKitRule,
		"internal/etcdserver/testing.go imports testing: " + testKitRule,
		"kernels/k.go imports " + Module + "/models: kernels imports nothing of ours",
		"models/m.go imports " + Module + "/shard: models may import only kernels",
		"shard/s.go imports " + Module + "/coordinator: nothing but cmd/ and tests imports coordinator",
	}
	if len(vs) != len(want) {
		t.Fatalf("Check(fake module) got %d violations %v, want %d %v", len(vs), vs, len(want), want)
	}
	for i := range want {
		if got := vs[i].String(); got != want[i] {
			t.Errorf("Check(fake module)[%d]\n got: %s\nwant: %s", i, got, want[i])
		}
	}
}

// loomTestingImporters lists the packages in the loom binary's import graph
// that import "testing". hashicorp/raft is the one allowed: its testing.go
// (MakeCluster and friends) is not a _test.go file, so every program that
// uses raft has testing in its graph; the linker keeps only testing's init.
func loomTestingImporters(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./cmd/loom")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/loom: %v", err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if slices.Contains(f[1:], "testing") {
			got = append(got, f[0])
		}
	}
	return got
}

// TestLoomBinaryLinksNoTestKit checks the loom binary's import graph (go list
// -deps ./cmd/loom): no package of ours in it imports "testing" or is a test
// kit, and the only importer of "testing" is hashicorp/raft.
func TestLoomBinaryLinksNoTestKit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list; -short")
	}
	root, err := ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	got := loomTestingImporters(t, root)
	if want := []string{"github.com/hashicorp/raft"}; !slices.Equal(got, want) {
		t.Errorf("packages in the loom binary importing testing = %v, want %v", got, want)
	}
	cmd := exec.Command("go", "list", "-deps", "./cmd/loom")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/loom: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, Module+"/") && IsTestKit(p) {
			t.Errorf("the loom binary links test kit %s", p)
		}
	}
}
