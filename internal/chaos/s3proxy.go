package chaos

import (
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// S3Faults are the shares of requests an S3Proxy disturbs; each request
// draws one outcome: an error, a reset, a slow answer or a plain one.
type S3Faults struct {
	Error5xx float64       // answered 500 InternalError or 503 SlowDown without reaching the server
	Reset    float64       // connection reset (RST) before any answer
	Slow     float64       // forwarded after waiting SlowBy
	SlowBy   time.Duration // how long a slow request waits
}

// S3Proxy is an HTTP reverse proxy in front of an S3 server. It forwards
// the Host header as the client sent it, so SigV4 signatures made for the
// proxy's address still verify at the server. SetFaults turns fault
// injection on and off; the counters say what it injected.
type S3Proxy struct {
	srv *http.Server
	ln  net.Listener
	rp  *httputil.ReverseProxy

	mu     sync.Mutex
	faults S3Faults
	rng    *rand.Rand

	Requests, Errors, Resets, Slowed atomic.Int64
}

// NewS3Proxy listens on a free 127.0.0.1 port and forwards to endpoint
// (http://host:port). seed makes the sequence of outcomes reproducible.
func NewS3Proxy(endpoint string, seed uint64) (*S3Proxy, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &S3Proxy{ln: ln, rng: rand.New(rand.NewPCG(seed, 0x53335333))}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // the signed host
		},
		ErrorLog: log.New(io.Discard, "", 0), // a client gone mid-answer is routine here
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
	return p, nil
}

// Endpoint is the proxy's URL, http://127.0.0.1:PORT.
func (p *S3Proxy) Endpoint() string { return "http://" + p.ln.Addr().String() }

// Addr is the proxy's host:port.
func (p *S3Proxy) Addr() string { return p.ln.Addr().String() }

// SetFaults sets the shares of disturbed requests (the zero value: none).
func (p *S3Proxy) SetFaults(f S3Faults) {
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
}

// Reseed restarts the sequence of outcomes from seed.
func (p *S3Proxy) Reseed(seed uint64) {
	p.mu.Lock()
	p.rng = rand.New(rand.NewPCG(seed, 0x53335333))
	p.mu.Unlock()
}

// Close stops the proxy.
func (p *S3Proxy) Close() error { return p.srv.Close() }

type outcome int

const (
	pass outcome = iota
	fail5xx
	reset
	slow
)

func (p *S3Proxy) draw() (outcome, S3Faults, float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.faults
	x := p.rng.Float64()
	y := p.rng.Float64()
	switch {
	case x < f.Error5xx:
		return fail5xx, f, y
	case x < f.Error5xx+f.Reset:
		return reset, f, y
	case x < f.Error5xx+f.Reset+f.Slow:
		return slow, f, y
	}
	return pass, f, y
}

func (p *S3Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.Requests.Add(1)
	o, f, y := p.draw()
	switch o {
	case fail5xx:
		p.Errors.Add(1)
		code, name := http.StatusInternalServerError, "InternalError"
		if y < 0.5 {
			code, name = http.StatusServiceUnavailable, "SlowDown"
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(code)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected by the chaos proxy</Message><Resource>%s</Resource></Error>`, name, r.URL.Path)
		return
	case reset:
		p.Resets.Add(1)
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic(http.ErrAbortHandler)
		}
		c, _, err := hj.Hijack()
		if err != nil {
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // close sends RST
		}
		c.Close()
		return
	case slow:
		p.Slowed.Add(1)
		select {
		case <-time.After(f.SlowBy):
		case <-r.Context().Done():
			return
		}
	}
	p.rp.ServeHTTP(w, r)
}
