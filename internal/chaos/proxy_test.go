package chaos

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line over c and reads it back.
func roundTrip(c net.Conn, r *bufio.Reader, line string) error {
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err == nil && got != line+"\n" {
		return io.ErrUnexpectedEOF
	}
	return err
}

func TestProxyForwardsPartitionsAndHeals(t *testing.T) {
	p, err := NewProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if err := roundTrip(c, r, "hello"); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.Partition(true)
	if err := roundTrip(c, r, "cut"); err == nil {
		t.Error("an open connection still answers after Partition(true)")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err == nil {
		if err := roundTrip(c2, bufio.NewReader(c2), "refused"); err == nil {
			t.Error("a new connection answers during a partition")
		}
		c2.Close()
	}
	if p.Cut.Load() == 0 {
		t.Error("Cut = 0 after a partition cut connections")
	}
	p.Partition(false)
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := roundTrip(c3, bufio.NewReader(c3), "healed"); err != nil {
		t.Errorf("after Partition(false): %v", err)
	}
}

func TestProxyDelay(t *testing.T) {
	p, err := NewProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	p.SetDelay(100 * time.Millisecond)
	start := time.Now()
	if err := roundTrip(c, r, "slow"); err != nil {
		t.Fatal(err)
	}
	// One chunk each way: at least twice the delay.
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("round trip with a 100ms delay took %s, want at least 200ms", d)
	}
	p.SetDelay(0)
	if err := roundTrip(c, r, "fast"); err != nil {
		t.Fatal(err)
	}
}

func s3Backend(t *testing.T) (string, *string) {
	t.Helper()
	var host string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host = r.Host
		io.WriteString(w, "object:"+r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &host
}

func TestS3ProxyFaults(t *testing.T) {
	url, host := s3Backend(t)
	p, err := NewS3Proxy(url, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() (int, string, error) {
		resp, err := cl.Get(p.Endpoint() + "/b/k")
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	code, body, err := get()
	if err != nil || code != 200 || body != "object:/b/k" {
		t.Fatalf("plain GET through the proxy: %d %q %v", code, body, err)
	}
	if *host != p.Addr() {
		t.Errorf("server saw Host %q, want the proxy's %q (SigV4 signs it)", *host, p.Addr())
	}

	p.SetFaults(S3Faults{Error5xx: 1})
	code, body, err = get()
	if err != nil || (code != 500 && code != 503) || !strings.Contains(body, "<Code>") {
		t.Errorf("GET with Error5xx 1: %d %q %v; want a 5xx S3 error", code, body, err)
	}
	p.SetFaults(S3Faults{Reset: 1})
	if _, _, err := get(); err == nil {
		t.Error("GET with Reset 1: no error")
	}
	p.SetFaults(S3Faults{Slow: 1, SlowBy: 200 * time.Millisecond})
	start := time.Now()
	if code, _, err := get(); err != nil || code != 200 {
		t.Errorf("slow GET: %d %v", code, err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("slow GET took %s, want at least 200ms", d)
	}
	p.SetFaults(S3Faults{})
	if code, _, err := get(); err != nil || code != 200 {
		t.Errorf("GET after SetFaults({}): %d %v", code, err)
	}
	if p.Errors.Load() != 1 || p.Resets.Load() != 1 || p.Slowed.Load() != 1 || p.Requests.Load() != 5 {
		t.Errorf("counters: %d requests, %d errors, %d resets, %d slowed; want 5, 1, 1, 1",
			p.Requests.Load(), p.Errors.Load(), p.Resets.Load(), p.Slowed.Load())
	}
}

// The outcomes of a seed are reproducible.
func TestS3ProxyDrawsAreSeeded(t *testing.T) {
	seq := func() []outcome {
		p, err := NewS3Proxy("http://127.0.0.1:1", 9)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		p.SetFaults(S3Faults{Error5xx: 0.2, Reset: 0.1, Slow: 0.2})
		var out []outcome
		for range 50 {
			o, _, _ := p.draw()
			out = append(out, o)
		}
		return out
	}
	a, b := seq(), seq()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("draw %d: %v then %v with the same seed", i, a[i], b[i])
		}
	}
}
