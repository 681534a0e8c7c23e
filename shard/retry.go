package shard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
)

// RetryPolicy bounds how transient storage errors are retried: exponential
// backoff with full jitter between Base and Max, at most Attempts tries in
// total and at most Budget of time spent sleeping. Permanent errors (4xx,
// missing objects, cancelled contexts) are never retried.
type RetryPolicy struct {
	Attempts int           // total tries, >= 1
	Base     time.Duration // first backoff ceiling
	Max      time.Duration // cap of one backoff
	Budget   time.Duration // cap of the total time slept across retries
}

// DefaultRetryPolicy is what S3Store uses unless told otherwise.
var DefaultRetryPolicy = RetryPolicy{Attempts: 6, Base: 100 * time.Millisecond, Max: 2 * time.Second, Budget: 10 * time.Second}

// Backoff returns the sleep before retry number n (n = 1 for the first
// retry), given a uniform random number u in [0, 1). It is a pure function
// so that the schedule can be tested without a clock.
func (p RetryPolicy) Backoff(n int, u float64) time.Duration {
	ceil := p.Base
	for i := 1; i < n && ceil < p.Max; i++ {
		ceil *= 2
	}
	if ceil > p.Max {
		ceil = p.Max
	}
	return time.Duration(u * float64(ceil))
}

// IsTransient reports whether err is worth retrying: HTTP 5xx, 408 and 429
// responses, S3 throttling codes, timeouts, connection resets and truncated
// bodies. 4xx responses, ErrNotFound and context cancellation are not.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNotFound) {
		return false
	}
	var perm *permanentError
	if errors.As(err, &perm) {
		return false
	}
	var at *attemptTimeout
	if errors.As(err, &at) {
		return true
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) && er.StatusCode != 0 {
		switch {
		case er.StatusCode >= 500, er.StatusCode == 408, er.StatusCode == 429:
			return true
		}
		switch er.Code {
		case "SlowDown", "Throttling", "RequestTimeout", "InternalError", "ServiceUnavailable":
			return true
		}
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return true
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errShortBody)
}

var errShortBody = errors.New("response body shorter than the requested range")

// attemptTimeout is one attempt that ran past the per-attempt timeout while
// the caller's context was still live: transient.
type attemptTimeout struct {
	after time.Duration
	err   error
}

func (a *attemptTimeout) Error() string {
	return fmt.Sprintf("attempt timed out after %v: %v", a.after, a.err)
}

// attempt runs op once under the per-attempt timeout.
func (r *retrier) attempt(ctx context.Context, op func(ctx context.Context) error) error {
	if r.timeout <= 0 {
		return op(ctx)
	}
	actx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	err := op(actx)
	if err != nil && ctx.Err() == nil && actx.Err() != nil {
		return &attemptTimeout{after: r.timeout, err: err}
	}
	return err
}

// permanentError marks an error that must not be retried even though its
// cause would look transient.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// retrier runs operations under a RetryPolicy with an injectable sleep and
// random source, so tests run without waiting.
type retrier struct {
	policy  RetryPolicy
	timeout time.Duration // per attempt; 0: none
	sleep   func(ctx context.Context, d time.Duration) error
	rand    func() float64
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func newRetrier(p RetryPolicy) *retrier {
	if p.Attempts < 1 {
		p.Attempts = 1
	}
	return &retrier{policy: p, sleep: sleepCtx, rand: rand.Float64}
}

// do runs op until it succeeds, fails permanently, or the attempts or the
// sleep budget run out. what names the operation and key for the error.
func (r *retrier) do(ctx context.Context, what string, op func(ctx context.Context) error) error {
	var slept time.Duration
	for attempt := 1; ; attempt++ {
		err := r.attempt(ctx, op)
		if err == nil {
			return nil
		}
		if !IsTransient(err) {
			return err
		}
		if attempt >= r.policy.Attempts {
			return fmt.Errorf("%s: giving up after %d attempts: %w", what, attempt, err)
		}
		d := r.policy.Backoff(attempt, r.rand())
		if slept+d > r.policy.Budget {
			return fmt.Errorf("%s: retry budget %v exhausted after %d attempts: %w", what, r.policy.Budget, attempt, err)
		}
		if serr := r.sleep(ctx, d); serr != nil {
			return fmt.Errorf("%s: %w (last error: %v)", what, serr, err)
		}
		slept += d
	}
}
