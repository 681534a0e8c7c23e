package depcheck

import (
	"os"
	"path/filepath"
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
	vs, err := Check(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
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
