package registry

import (
	"context"
	"testing"
	"time"
)

// The Fake rounds a TTL up to whole seconds, as etcd does, and expires an
// orphaned lease exactly when that much clock time has passed.
func TestFakeTTLRounding(t *testing.T) {
	tests := []struct {
		ttl       time.Duration
		aliveAt   time.Duration // still listed after this much time
		goneAfter time.Duration // removed once this much has passed
	}{
		{time.Second, 999 * time.Millisecond, time.Second},
		{1500 * time.Millisecond, 1999 * time.Millisecond, 2 * time.Second},
		{10 * time.Second, 9 * time.Second, 10 * time.Second},
	}
	for _, tc := range tests {
		clock := NewManualClock(time.Unix(0, 0))
		f := NewFake(clock)
		r, err := f.Register(context.Background(), worker("a"), tc.ttl)
		if err != nil {
			t.Fatalf("Register(ttl %v): %v", tc.ttl, err)
		}
		r.Orphan()
		clock.Advance(tc.aliveAt)
		f.Expire()
		if n := len(f.Workers()); n != 1 {
			t.Errorf("ttl %v: %v after Orphan: %d workers, want 1", tc.ttl, tc.aliveAt, n)
		}
		clock.Advance(tc.goneAfter - tc.aliveAt)
		f.Expire()
		if n := len(f.Workers()); n != 0 {
			t.Errorf("ttl %v: %v after Orphan: %d workers, want 0", tc.ttl, tc.goneAfter, n)
		}
	}
}

// A live registration is never expired by the clock.
func TestFakeLiveLeaseSurvivesTime(t *testing.T) {
	clock := NewManualClock(time.Unix(0, 0))
	f := NewFake(clock)
	r, err := f.Register(context.Background(), worker("a"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	clock.Advance(time.Hour)
	f.Expire()
	if n := len(f.Workers()); n != 1 {
		t.Fatalf("live registration: %d workers after an hour, want 1", n)
	}
}

func TestKey(t *testing.T) {
	for _, tc := range []struct{ prefix, id, want string }{
		{"/loom/workers", "w1", "/loom/workers/w1"},
		{"/loom/workers/", "w1", "/loom/workers/w1"},
		{"/loom/workers//", "w1", "/loom/workers/w1"},
	} {
		if got := Key(tc.prefix, tc.id); got != tc.want {
			t.Errorf("Key(%q, %q) = %q, want %q", tc.prefix, tc.id, got, tc.want)
		}
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		key, val string
		ok       bool
	}{
		{"/p/w1", `{"id":"w1","addr":"a:1","host":"h","gpus":2}`, true},
		{"/p/w1", `{"id":"w2"}`, false},
		{"/p/w1", `{"id":"w1","gpus":"two"}`, false},
		{"/p/w1", `[]`, false},
		{"/p/w1", ``, false},
	}
	for _, tc := range tests {
		w, err := decode(tc.key, []byte(tc.val))
		if (err == nil) != tc.ok {
			t.Errorf("decode(%q, %q) = %+v, %v; want ok=%v", tc.key, tc.val, w, err, tc.ok)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("/loom/workers/w1", []byte(`{"id":"w1","addr":"a:1","host":"h","gpus":2,"labels":{"z":"a"},"version":"v"}`))
	f.Add("/loom/workers/w1", []byte(`{"id":"w1"`))
	f.Add("w1", []byte(`{"id":"w1"}`))
	f.Add("/", []byte(`{"id":""}`))
	f.Fuzz(func(t *testing.T, key string, val []byte) {
		w, err := decode(key, val)
		if err != nil {
			return
		}
		b, err := encode(w)
		if err != nil {
			t.Fatalf("encode(%+v) after a successful decode: %v", w, err)
		}
		w2, err := decode(key, b)
		if err != nil || !w2.Equal(w) {
			t.Fatalf("round trip of %+v: got %+v, %v", w, w2, err)
		}
	})
}
