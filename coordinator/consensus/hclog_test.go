package consensus

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"io"
)

type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, nil }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Debug("hidden")
	if buf.Len() != 0 {
		t.Fatalf("Debug at info level wrote %q", buf.String())
	}
	if l.IsDebug() || !l.IsInfo() || l.GetLevel() != hclog.Info {
		t.Errorf("IsDebug, IsInfo, GetLevel = %v, %v, %v; want false, true, info", l.IsDebug(), l.IsInfo(), l.GetLevel())
	}
	l.Named("raft").With("peer", "n1").Warn("heartbeat timeout", "last", 3)
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	want := map[string]any{"level": "WARN", "msg": "heartbeat timeout", "logger": "raft", "peer": "n1", "last": float64(3)}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Warn: %s = %v, want %v (line %s)", k, got[k], v, buf.String())
		}
	}
	buf.Reset()
	l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Print("[ERR] disk full")
	got = nil
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	if got["level"] != "ERROR" || got["msg"] != "disk full" {
		t.Errorf("StandardLogger(InferLevels).Print(\"[ERR] disk full\") logged %v, want level ERROR msg \"disk full\"", got)
	}
}
