package etcdserver

import (
	"context"
	"log/slog"
	"sort"
	"sync/atomic"

	"go.uber.org/zap/zapcore"
)

// slogCore is a zapcore.Core that forwards entries at or above min to a
// slog.Logger. etcd's fields are flattened through zap's map encoder and
// passed as slog attributes in key order.
type slogCore struct {
	log    *slog.Logger
	min    zapcore.Level
	fields []zapcore.Field // from With, prepended to each entry's fields
	// closing is set by Server.Close: etcd logs its listeners' shutdown at
	// error level ("mux: server closed"), which is no news once Close runs.
	// Shared by the cores With derives.
	closing *atomic.Bool
}

func newSlogCore(l *slog.Logger, min zapcore.Level) *slogCore {
	return &slogCore{log: l, min: min, closing: new(atomic.Bool)}
}

func (c *slogCore) Enabled(l zapcore.Level) bool { return l >= c.min && !c.closing.Load() }

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	nc := *c
	nc.fields = append(append([]zapcore.Field(nil), c.fields...), fields...)
	return &nc
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys)+2)
	attrs = append(attrs, slog.String("component", "etcd"))
	if e.LoggerName != "" {
		attrs = append(attrs, slog.String("logger", e.LoggerName))
	}
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	c.log.LogAttrs(context.Background(), slogLevel(e.Level), e.Message, attrs...)
	return nil
}

func (c *slogCore) Sync() error { return nil }

// slogLevel maps zap's levels onto slog's four.
func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l < zapcore.InfoLevel:
		return slog.LevelDebug
	case l < zapcore.WarnLevel:
		return slog.LevelInfo
	case l < zapcore.ErrorLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}
