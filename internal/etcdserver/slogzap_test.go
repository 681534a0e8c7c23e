package etcdserver

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestSlogCore(t *testing.T) {
	tests := []struct {
		name      string
		log       func(*zap.Logger)
		wantLevel string // "" = nothing written
		wantMsg   string
		wantAttrs map[string]any
	}{
		{"info filtered", func(l *zap.Logger) { l.Info("hello") }, "", "", nil},
		{"warn forwarded", func(l *zap.Logger) { l.Warn("slow fsync", zap.Duration("took", 2e9), zap.String("path", "/d")) },
			"WARN", "slow fsync", map[string]any{"component": "etcd", "path": "/d", "took": float64(2e9)}},
		{"error with With fields", func(l *zap.Logger) { l.With(zap.Int("member", 7)).Named("raft").Error("no leader") },
			"ERROR", "no leader", map[string]any{"component": "etcd", "logger": "raft", "member": float64(7)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			sl := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			tc.log(zap.New(newSlogCore(sl, zapcore.WarnLevel)))
			if tc.wantLevel == "" {
				if buf.Len() != 0 {
					t.Fatalf("got %q, want nothing", buf.String())
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("output %q is not one JSON line: %v", buf.String(), err)
			}
			if got["level"] != tc.wantLevel || got["msg"] != tc.wantMsg {
				t.Errorf("level, msg = %v, %v; want %v, %v", got["level"], got["msg"], tc.wantLevel, tc.wantMsg)
			}
			for k, v := range tc.wantAttrs {
				if got[k] != v {
					t.Errorf("attr %s = %v (%T), want %v", k, got[k], got[k], v)
				}
			}
		})
	}
}

func TestLevelMapping(t *testing.T) {
	for _, tc := range []struct {
		zap  zapcore.Level
		slog slog.Level
	}{
		{zapcore.DebugLevel, slog.LevelDebug}, {zapcore.InfoLevel, slog.LevelInfo},
		{zapcore.WarnLevel, slog.LevelWarn}, {zapcore.ErrorLevel, slog.LevelError},
		{zapcore.DPanicLevel, slog.LevelError}, {zapcore.FatalLevel, slog.LevelError},
	} {
		if got := slogLevel(tc.zap); got != tc.slog {
			t.Errorf("slogLevel(%v) = %v, want %v", tc.zap, got, tc.slog)
		}
	}
	for _, tc := range []struct {
		slog slog.Level
		zap  zapcore.Level
	}{
		{slog.LevelDebug, zapcore.DebugLevel}, {slog.LevelInfo, zapcore.InfoLevel},
		{slog.LevelWarn, zapcore.WarnLevel}, {slog.LevelError, zapcore.ErrorLevel},
	} {
		if got := zapLevel(tc.slog); got != tc.zap {
			t.Errorf("zapLevel(%v) = %v, want %v", tc.slog, got, tc.zap)
		}
	}
}
