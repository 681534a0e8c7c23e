package webui

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loomtrain/loom/coordinator"
)

//go:embed static
var static embed.FS

// Raft is what the Cluster page needs from this node's consensus node
// (coordinator/consensus.Node has it).
type Raft interface {
	Leader() (id, addr string)
	IsLeader() bool
	Term() uint64
	State() string
	Configuration() ([]raft.Server, error)
}

// Config configures the UI of one coordinator node.
type Config struct {
	NodeID string
	FSM    *coordinator.FSM
	Raft   Raft
	// Tokens are the tokens that open the UI: the users' and the admins'.
	// None: the UI is open, unless CertsOnly.
	Tokens []string
	// CertsOnly is set when the coordinator authenticates by certificates
	// and has no tokens: the UI then refuses every request (its port has no
	// TLS to check a certificate with).
	CertsOnly bool
	// WorkerLogs, when set, returns the last lines of a worker's log (the
	// coordinator can read it, e.g. `loom dev`'s logs/ directory).
	WorkerLogs func(workerID string, lines int) ([]string, error)
	// LogsHint says where the workers' logs are when WorkerLogs is nil.
	LogsHint string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// DefaultLogsHint is shown when the coordinator cannot read worker logs.
const DefaultLogsHint = "The coordinator does not collect worker logs: each worker writes its log to its own standard error. " +
	"On Kubernetes: kubectl -n loom logs POD (the worker's pod). In loom dev: logs/WORKER.log in the data directory " +
	"(loom dev prints each path)."

// Handler serves the UI and its JSON endpoints.
type Handler struct {
	cfg    Config
	mux    *http.ServeMux
	assets http.Handler
}

// New returns the UI's handler; mount it at / next to /metrics.
func New(cfg Config) (*Handler, error) {
	if cfg.FSM == nil || cfg.Raft == nil {
		return nil, fmt.Errorf("webui: FSM and Raft are required")
	}
	for _, t := range cfg.Tokens {
		if t == "" {
			return nil, fmt.Errorf("webui: an empty token would open the UI to anyone; leave Tokens empty instead")
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LogsHint == "" {
		cfg.LogsHint = DefaultLogsHint
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), assets: http.FileServerFS(sub)}
	h.mux.HandleFunc("GET /{$}", h.page)
	h.mux.Handle("GET /ui/", http.StripPrefix("/ui/", h.assets))
	h.mux.HandleFunc("POST /login", h.login)
	h.mux.HandleFunc("GET /api/cluster", h.apiCluster)
	h.mux.HandleFunc("GET /api/jobs", h.apiJobs)
	h.mux.HandleFunc("GET /api/jobs/{job}", h.apiJob)
	h.mux.HandleFunc("GET /api/jobs/{job}/metrics", h.apiMetrics)
	return h, nil
}

// cookieName is the session cookie's name.
const cookieName = "loom_ui"

// session is the cookie value that a token opens: an HMAC of a fixed label
// under the token, so the cookie never holds the token itself.
func session(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("loom web ui session v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// authorized reports whether r proves one of the tokens (constant time in
// which one).
func (h *Handler) authorized(r *http.Request) bool {
	if len(h.cfg.Tokens) == 0 {
		return !h.cfg.CertsOnly
	}
	var bearer, cookie string
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		bearer = v
	}
	if c, err := r.Cookie(cookieName); err == nil {
		cookie = c.Value
	}
	ok := 0
	for _, t := range h.cfg.Tokens {
		if bearer != "" {
			ok |= subtle.ConstantTimeCompare([]byte(bearer), []byte(t))
		}
		if cookie != "" {
			ok |= subtle.ConstantTimeCompare([]byte(cookie), []byte(session(t)))
		}
	}
	return ok == 1
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	// Nothing but this origin: the UI works offline and loads no CDN.
	hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if r.Method == http.MethodPost && r.URL.Path == "/login" || h.authorized(r) {
		h.mux.ServeHTTP(w, r)
		return
	}
	switch {
	case h.cfg.CertsOnly:
		http.Error(w, "the web UI needs the users' token: this coordinator authenticates callers by certificate only, "+
			"which its plain-HTTP port cannot check; give it a --token-file (and the other roles' tokens) to use the UI", http.StatusForbidden)
	case strings.HasPrefix(r.URL.Path, "/api/"):
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong token: log in at / or send Authorization: Bearer TOKEN (the users' token, LOOM_TOKEN)"})
	case strings.HasPrefix(r.URL.Path, "/ui/"):
		h.mux.ServeHTTP(w, r) // the stylesheet and script hold no data; the login page uses them
	default:
		h.loginPage(w, http.StatusUnauthorized, "")
	}
}

func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	b, err := static.ReadFile("static/index.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

func (h *Handler) loginPage(w http.ResponseWriter, code int, msg string) {
	b, err := static.ReadFile("static/login.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	page := strings.Replace(string(b), "{{message}}", htmlEscape(msg), 1)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write([]byte(page))
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;").Replace(s)
}

// maxLoginBytes bounds a login form.
const maxLoginBytes = 4096

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBytes)
	if err := r.ParseForm(); err != nil {
		h.loginPage(w, http.StatusBadRequest, "the login form is malformed or too large")
		return
	}
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	if len(h.cfg.Tokens) == 0 {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	ok := 0
	for _, t := range h.cfg.Tokens {
		ok |= subtle.ConstantTimeCompare([]byte(tok), []byte(t))
	}
	if ok != 1 {
		h.loginPage(w, http.StatusUnauthorized, "That is not the users' (or admins') token of this coordinator.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: session(tok), Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(b)
}
