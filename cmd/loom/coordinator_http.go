package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/loomtrain/loom/coordinator"
	"github.com/loomtrain/loom/coordinator/consensus"
	"github.com/loomtrain/loom/coordinator/webui"
)

// httpHandler is the coordinator's HTTP port: /healthz, /readyz and
// /metrics from the node, everything else the web UI.
func httpHandler(f coordinatorFlags, node *coordinator.Node, fsm *coordinator.FSM, rn *consensus.Node, auth *coordinator.Auth) (http.Handler, error) {
	cfg := webui.Config{NodeID: f.id, FSM: fsm, Raft: rn}
	for _, r := range []coordinator.Role{coordinator.RoleUser, coordinator.RoleAdmin} {
		if t := auth.Tokens[r]; t != "" {
			cfg.Tokens = append(cfg.Tokens, t)
		}
	}
	cfg.CertsOnly = auth.Certs && len(cfg.Tokens) == 0
	if f.workerLogs != "" {
		if st, err := os.Stat(f.workerLogs); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("--worker-logs %s: not a directory (%v)", f.workerLogs, err)
		}
		cfg.WorkerLogs = logTail(f.workerLogs)
	}
	ui, err := webui.New(cfg)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	nh := node.HTTPHandler()
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		mux.Handle(p, nh)
	}
	mux.Handle("/", ui)
	return mux, nil
}

// maxLogTail is how much of the end of a log file logTail reads.
const maxLogTail = 256 << 10

// logTail returns a WorkerLogs function reading DIR/ID.log (the caller
// checks that ID is a plain name).
func logTail(dir string) func(id string, n int) ([]string, error) {
	return func(id string, n int) ([]string, error) {
		path := filepath.Join(dir, id+".log")
		fh, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no log at %s", path)
		}
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		st, err := fh.Stat()
		if err != nil {
			return nil, err
		}
		off := max(st.Size()-maxLogTail, 0)
		b, err := io.ReadAll(io.NewSectionReader(fh, off, st.Size()-off))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if off > 0 {
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				b = b[i+1:] // a partial first line
			}
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) == 1 && lines[0] == "" {
			return []string{}, nil
		}
		return lines[max(0, len(lines)-n):], nil
	}
}
