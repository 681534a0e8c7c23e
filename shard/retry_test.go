package shard_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loomtrain/loom/internal/s3server"
	"github.com/loomtrain/loom/shard"
)

func TestBackoffSchedule(t *testing.T) {
	p := shard.RetryPolicy{Attempts: 10, Base: 100 * time.Millisecond, Max: time.Second, Budget: time.Minute}
	cases := []struct {
		n    int
		u    float64
		want time.Duration
	}{
		{1, 0.999999, 99999900 * time.Nanosecond},
		{1, 0.5, 50 * time.Millisecond},
		{2, 0.5, 100 * time.Millisecond},
		{3, 0.5, 200 * time.Millisecond},
		{4, 1, 800 * time.Millisecond},
		{5, 1, time.Second},
		{30, 1, time.Second},
		{3, 0, 0},
	}
	for _, c := range cases {
		if got := p.Backoff(c.n, c.u); got != c.want {
			t.Errorf("Backoff(%d, %v) = %v, want %v", c.n, c.u, got, c.want)
		}
	}
}

// faultProxy sits between the S3 client and the embedded server and injects
// faults into requests whose path contains a marker.
type faultProxy struct {
	mu       sync.Mutex
	fail     map[string]int // path substring -> remaining 503s
	reset    map[string]int // path substring -> remaining connection resets
	slow     map[string]int // path substring -> remaining requests answered after 2 s
	cut      map[string]int // path substring -> remaining GETs whose body is cut after half
	forbid   string         // path substring answered with 403
	requests map[string]int
	next     http.Handler
}

func (f *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests[r.URL.Path]++
	action := ""
	for sub, n := range f.fail {
		if n > 0 && strings.Contains(r.URL.Path, sub) {
			f.fail[sub]--
			action = "503"
		}
	}
	for sub, n := range f.reset {
		if n > 0 && strings.Contains(r.URL.Path, sub) {
			f.reset[sub]--
			action = "reset"
		}
	}
	for sub, n := range f.slow {
		if n > 0 && strings.Contains(r.URL.Path, sub) {
			f.slow[sub]--
			action = "slow"
		}
	}
	for sub, n := range f.cut {
		if n > 0 && strings.Contains(r.URL.Path, sub) && r.Method == http.MethodGet {
			f.cut[sub]--
			action = "cut"
		}
	}
	if f.forbid != "" && strings.Contains(r.URL.Path, f.forbid) {
		action = "403"
	}
	f.mu.Unlock()
	switch action {
	case "503":
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>`)
	case "403":
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>injected</Message></Error>`)
	case "slow":
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	case "cut":
		// Send the whole response's headers and half its body, then drop
		// the connection: the client sees a body shorter than announced.
		rec := httptest.NewRecorder()
		f.next.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		body := rec.Body.Bytes()
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	case "reset":
		hj, _ := w.(http.Hijacker)
		conn, _, err := hj.Hijack()
		if err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			conn.Close()
		}
	default:
		f.next.ServeHTTP(w, r)
	}
}

func (f *faultProxy) count(sub string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for p, c := range f.requests {
		if strings.Contains(p, sub) {
			n += c
		}
	}
	return n
}

func faultyStore(t *testing.T, attempts int) (*shard.S3Store, *faultProxy) {
	srv, err := s3server.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.CreateBucket("loom"); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.Endpoint)
	fp := &faultProxy{fail: map[string]int{}, reset: map[string]int{}, slow: map[string]int{}, cut: map[string]int{}, requests: map[string]int{}, next: httputil.NewSingleHostReverseProxy(u)}
	ts := httptest.NewServer(fp)
	t.Cleanup(ts.Close)
	s, err := shard.NewS3Store(shard.S3Config{
		Endpoint: ts.URL, Bucket: "loom", AccessKey: "k", SecretKey: "s",
		Retry:          shard.RetryPolicy{Attempts: attempts, Base: time.Millisecond, Max: 4 * time.Millisecond, Budget: time.Second},
		RequestTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, fp
}

func TestS3RetriesTransientErrors(t *testing.T) {
	ctx := context.Background()
	s, fp := faultyStore(t, 5)
	data := []byte("hello, shards")
	fp.mu.Lock()
	fp.fail["obj-a"] = 2
	fp.reset["obj-b"] = 2
	fp.mu.Unlock()
	for _, k := range []string{"obj-a", "obj-b"} {
		if err := s.Put(ctx, k, strings.NewReader(string(data)), int64(len(data))); err != nil {
			t.Fatalf("Put(%q) with 2 injected faults = %v, want success after retries", k, err)
		}
		if n := fp.count(k); n != 3 {
			t.Errorf("Put(%q): %d requests reached the proxy, want 3 (2 faults + 1 success)", k, n)
		}
	}
	fp.mu.Lock()
	fp.fail["obj-a"] = 3
	fp.mu.Unlock()
	got, err := s.GetRange(ctx, "obj-a", 7, 6)
	if err != nil || string(got) != "shards" {
		t.Fatalf("GetRange(obj-a) with 3 injected 503s = %q, %v; want \"shards\"", got, err)
	}
}

func TestS3RetriesTimeouts(t *testing.T) {
	ctx := context.Background()
	s, fp := faultyStore(t, 5)
	data := "slow but fine"
	if err := s.Put(ctx, "obj-s", strings.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	fp.mu.Lock()
	fp.slow["obj-s"] = 2
	fp.mu.Unlock()
	got, err := s.GetRange(ctx, "obj-s", 0, -1)
	if err != nil || string(got) != data {
		t.Fatalf("GetRange with 2 requests hanging past the 200ms attempt timeout = %q, %v; want success on the 3rd", got, err)
	}
	if n := fp.count("obj-s"); n != 4 {
		t.Errorf("%d requests reached the proxy, want 4 (put, 2 timeouts, success)", n)
	}
	// A caller's own deadline is not retried.
	fp.mu.Lock()
	fp.slow["obj-s"] = 1
	fp.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.GetRange(cctx, "obj-s", 0, -1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GetRange past the caller's deadline = %v, want context.DeadlineExceeded", err)
	}
}

func TestS3GivesUpAfterAttempts(t *testing.T) {
	ctx := context.Background()
	s, fp := faultyStore(t, 3)
	fp.mu.Lock()
	fp.fail["obj-c"] = 100
	fp.mu.Unlock()
	_, err := s.Stat(ctx, "obj-c")
	if err == nil || !strings.Contains(err.Error(), "obj-c") || !strings.Contains(err.Error(), "3 attempts") {
		t.Fatalf("Stat with endless 503s = %v; want an error naming obj-c after 3 attempts", err)
	}
	if n := fp.count("obj-c"); n != 3 {
		t.Errorf("Stat with endless 503s made %d requests, want 3", n)
	}
}

func TestS3ClientErrorsFailAtOnce(t *testing.T) {
	ctx := context.Background()
	s, fp := faultyStore(t, 5)
	fp.mu.Lock()
	fp.forbid = "secret-obj"
	fp.mu.Unlock()
	_, err := s.GetRange(ctx, "data/secret-obj", 0, 10)
	if err == nil || !strings.Contains(err.Error(), "data/secret-obj") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("GetRange on a 403 = %v; want an error naming the key and 403", err)
	}
	if n := fp.count("secret-obj"); n != 1 {
		t.Errorf("a 403 was tried %d times, want 1", n)
	}
	_, err = s.Stat(ctx, "missing-obj")
	if !errors.Is(err, shard.ErrNotFound) {
		t.Errorf("Stat(missing) = %v, want ErrNotFound", err)
	}
	if n := fp.count("missing-obj"); n != 1 {
		t.Errorf("a 404 was tried %d times, want 1", n)
	}
}

func TestS3ConfigRedactsSecret(t *testing.T) {
	c := shard.S3Config{Endpoint: "h:1", Bucket: "b", AccessKey: "AK", SecretKey: "topsecret"}
	for _, s := range []string{c.String(), fmt.Sprint(c), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c)} {
		if strings.Contains(s, "topsecret") {
			t.Errorf("formatted S3Config %q contains the secret key", s)
		}
	}
}
