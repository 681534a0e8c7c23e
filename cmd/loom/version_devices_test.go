package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestVersionDevices checks that loom version lists the host and a line
// per Vulkan device (or the reason there is none), as text and as JSON.
func TestVersionDevices(t *testing.T) {
	out, err := run(t, "version", "--json=false") // flags persist on rootCmd across tests
	if err != nil {
		t.Fatalf("loom version: %v", err)
	}
	if !strings.Contains(out, "devices:  host: the CPU (reference)") || !strings.Contains(out, "vulkan: ") {
		t.Errorf("loom version lists no devices:\n%s", out)
	}
	out, err = run(t, "version", "--json")
	if err != nil {
		t.Fatalf("loom version --json: %v", err)
	}
	var v struct {
		Module  string   `json:"module"`
		Devices []string `json:"devices"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Module == "" || len(v.Devices) < 2 {
		t.Fatalf("loom version --json: %v, devices %q:\n%s", err, v.Devices, out)
	}
	t.Log(strings.Join(v.Devices, "\n"))
}
