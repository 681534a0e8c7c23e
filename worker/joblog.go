package worker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/loomtrain/loom/shard"
)

// LogKeyFormat is where a generation's log segments go under the job's
// checkpoint prefix: PREFIX/logs/gen-GENERATION/rank-RANK/SEQ.jsonl, one
// JSON log record (slog's JSON form, level info and up) per line. `loom
// logs` reads them.
const LogKeyFormat = "logs/gen-%06d/rank-%04d/%06d.jsonl"

// jobLog collects a generation's log records and uploads them in
// segments next to the job's checkpoints, so that `loom logs` shows every
// rank's log without access to the worker machines.
type jobLog struct {
	store      shard.ObjectStore
	prefix     string // the job's checkpoint prefix
	gen, rank  int64
	warn       *slog.Logger // the agent's own logger, for upload errors
	every      time.Duration
	maxPending int

	mu      sync.Mutex
	buf     bytes.Buffer
	seq     int
	failed  bool
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

func newJobLog(store shard.ObjectStore, prefix string, gen, rank int64, warn *slog.Logger) *jobLog {
	l := &jobLog{store: store, prefix: prefix, gen: gen, rank: rank, warn: warn, every: 5 * time.Second, maxPending: 1 << 20,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	go l.run()
	return l
}

// Write takes one JSON record from slog's JSON handler.
func (l *jobLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	full := l.buf.Len() >= l.maxPending
	l.mu.Unlock()
	if full {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

func (l *jobLog) run() {
	defer close(l.stopped)
	t := time.NewTicker(l.every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			l.flush()
			return
		case <-t.C:
		case <-l.wake:
		}
		l.flush()
	}
}

// flush uploads what was written since the last segment as the next one.
func (l *jobLog) flush() {
	l.mu.Lock()
	if l.buf.Len() == 0 {
		l.mu.Unlock()
		return
	}
	data := bytes.Clone(l.buf.Bytes())
	l.buf.Reset()
	key := shard.JoinKey(l.prefix, fmt.Sprintf(LogKeyFormat, l.gen, l.rank, l.seq))
	l.seq++
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := l.store.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil && !l.failed {
		l.failed = true // once per generation is enough
		l.warn.Warn("job log segment not uploaded (loom logs will miss it)", "key", key, "err", err)
	}
}

// close uploads the last segment.
func (l *jobLog) close() {
	close(l.stop)
	<-l.stopped
}

// teeHandler sends every record to the agent's handler and, at info level
// and up, to the job log.
type teeHandler struct {
	a, b slog.Handler
}

func (l *jobLog) tee(h slog.Handler) slog.Handler {
	return teeHandler{a: h, b: slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo})}
}

func (t teeHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return t.a.Enabled(ctx, lv) || t.b.Enabled(ctx, lv)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if t.a.Enabled(ctx, r.Level) {
		err = t.a.Handle(ctx, r.Clone())
	}
	if t.b.Enabled(ctx, r.Level) {
		t.b.Handle(ctx, r)
	}
	return err
}

func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{a: t.a.WithAttrs(as), b: t.b.WithAttrs(as)}
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{a: t.a.WithGroup(name), b: t.b.WithGroup(name)}
}
