package main

import (
	"strings"
	"testing"
)

// TestWorkerDeviceFlag: --device names a device no linked-in backend
// has, and the worker refuses to start, naming the flag and the device,
// before it registers anywhere.
func TestWorkerDeviceFlag(t *testing.T) {
	wc, _, err := rootCmd.Find([]string{"worker"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wc.Flags().Set("device", "host") }) // flags persist on rootCmd across tests
	_, err = run(t, "worker", "--coordinator", "127.0.0.1:1", "--etcd", "127.0.0.1:2", "--s3-bucket", "b", "--device", "cuda:0")
	if err == nil || !strings.Contains(err.Error(), "--device") || !strings.Contains(err.Error(), `"cuda:0"`) {
		t.Fatalf("loom worker --device cuda:0: %v, want an error naming --device and the device", err)
	}
	t.Log(err)
}
