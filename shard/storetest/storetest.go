package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/loomtrain/loom/shard"
)

// Options tunes the suite to what a store can afford in a unit test.
type Options struct {
	// LargeObject, when > 0, is the size in bytes of an object that is put
	// and read back end to end, compared byte for byte. Make it larger than
	// the store's multipart threshold (16 MiB for S3Store) to cover
	// multipart uploads.
	LargeObject int64
	// Prefix is prepended to every key, so that several runs can share a
	// bucket.
	Prefix string
}

// Run runs every contract of shard.ObjectStore against s.
func Run(t *testing.T, s shard.ObjectStore, opts Options) {
	t.Helper()
	key := func(t *testing.T, name string) string {
		return shard.JoinKey(opts.Prefix, "conformance", strings.ReplaceAll(t.Name(), "/", "_"), name)
	}
	ctx := context.Background()

	t.Run("PutGetRanges", func(t *testing.T) {
		k := key(t, "obj.bin")
		data := pattern(1000, 1)
		mustPut(t, s, k, data)
		cases := []struct {
			off, n int64
			want   []byte
		}{
			{0, -1, data},
			{0, 1000, data},
			{10, 20, data[10:30]},
			{999, 1, data[999:]},
			{500, -1, data[500:]},
			{1000, 0, []byte{}},
			{0, 0, []byte{}},
		}
		for _, c := range cases {
			got, err := s.GetRange(ctx, k, c.off, c.n)
			if err != nil {
				t.Errorf("GetRange(%q, %d, %d): error %v, want %d bytes", k, c.off, c.n, err, len(c.want))
				continue
			}
			if !bytes.Equal(got, c.want) {
				t.Errorf("GetRange(%q, %d, %d) = %d bytes (sha %x), want %d bytes (sha %x)", k, c.off, c.n, len(got), sum(got), len(c.want), sum(c.want))
			}
		}
	})

	t.Run("RangeBeyondEnd", func(t *testing.T) {
		k := key(t, "obj.bin")
		mustPut(t, s, k, pattern(100, 2))
		for _, c := range [][2]int64{{100, 1}, {90, 20}, {200, 5}} {
			got, err := s.GetRange(ctx, k, c[0], c[1])
			if err == nil {
				t.Errorf("GetRange(%q, %d, %d) = %d bytes, want an error", k, c[0], c[1], len(got))
			} else if !strings.Contains(err.Error(), k) {
				t.Errorf("GetRange(%q, %d, %d) error %q does not name the key", k, c[0], c[1], err)
			}
		}
	})

	t.Run("Missing", func(t *testing.T) {
		k := key(t, "nope")
		if _, err := s.GetRange(ctx, k, 0, -1); !errors.Is(err, shard.ErrNotFound) {
			t.Errorf("GetRange(missing %q) error = %v, want ErrNotFound", k, err)
		}
		if _, err := s.GetRange(ctx, k, 0, 10); !errors.Is(err, shard.ErrNotFound) {
			t.Errorf("GetRange(missing %q, 0, 10) error = %v, want ErrNotFound", k, err)
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, shard.ErrNotFound) {
			t.Errorf("Stat(missing %q) error = %v, want ErrNotFound", k, err)
		} else if !strings.Contains(err.Error(), k) {
			t.Errorf("Stat(missing %q) error %q does not name the key", k, err)
		}
		if err := s.Delete(ctx, k); err != nil {
			t.Errorf("Delete(missing %q) = %v, want nil", k, err)
		}
	})

	t.Run("StatAndOverwrite", func(t *testing.T) {
		k := key(t, "obj.bin")
		mustPut(t, s, k, pattern(300, 3))
		mustPut(t, s, k, pattern(123, 4))
		info, err := s.Stat(ctx, k)
		if err != nil || info.Size != 123 || info.Key != k {
			t.Fatalf("Stat(%q) = %+v, %v; want size 123 key %q", k, info, err, k)
		}
		got, err := s.GetRange(ctx, k, 0, -1)
		if err != nil || !bytes.Equal(got, pattern(123, 4)) {
			t.Fatalf("GetRange after overwrite: %d bytes, %v; want the new 123 bytes", len(got), err)
		}
	})

	t.Run("EmptyObject", func(t *testing.T) {
		k := key(t, "empty")
		mustPut(t, s, k, nil)
		info, err := s.Stat(ctx, k)
		if err != nil || info.Size != 0 {
			t.Fatalf("Stat(%q) = %+v, %v; want size 0", k, info, err)
		}
		got, err := s.GetRange(ctx, k, 0, 0)
		if err != nil || len(got) != 0 {
			t.Fatalf("GetRange(%q, 0, 0) = %d bytes, %v; want 0 bytes", k, len(got), err)
		}
	})

	t.Run("ShortBodyKeepsOld", func(t *testing.T) {
		k := key(t, "obj.bin")
		old := pattern(50, 5)
		mustPut(t, s, k, old)
		// A plain reader (not seekable) that ends early.
		err := s.Put(ctx, k, io.MultiReader(bytes.NewReader(pattern(10, 6))), 40)
		if err == nil {
			t.Fatalf("Put(%q) with 10 of 40 bytes succeeded, want an error", k)
		}
		got, gerr := s.GetRange(ctx, k, 0, -1)
		if gerr != nil || !bytes.Equal(got, old) {
			t.Fatalf("after failed Put: GetRange = %d bytes, %v; want the old 50 bytes", len(got), gerr)
		}
		err = s.Put(ctx, k, io.MultiReader(bytes.NewReader(pattern(60, 6))), 40)
		if err == nil {
			t.Fatalf("Put(%q) with 60 bytes declared as 40 succeeded, want an error", k)
		}
		got, gerr = s.GetRange(ctx, k, 0, -1)
		if gerr != nil || !bytes.Equal(got, old) {
			t.Fatalf("after failed Put: GetRange = %d bytes, %v; want the old 50 bytes", len(got), gerr)
		}
	})

	t.Run("List", func(t *testing.T) {
		base := key(t, "")
		names := []string{"b/2", "a", "b/1", "c/d/e", "bb"}
		for i, n := range names {
			mustPut(t, s, base+"/"+n, pattern(i+1, uint64(i)))
		}
		mustPut(t, s, base+"-sibling", pattern(3, 9))
		var got []string
		err := s.List(ctx, base+"/", func(in shard.ObjectInfo) error {
			got = append(got, strings.TrimPrefix(in.Key, base+"/")+fmt.Sprintf(":%d", in.Size))
			return nil
		})
		want := []string{"a:2", "b/1:3", "b/2:1", "bb:5", "c/d/e:4"}
		if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("List(%q) = %v, %v; want %v", base+"/", got, err, want)
		}
		got = nil
		_ = s.List(ctx, base+"/b", func(in shard.ObjectInfo) error { got = append(got, in.Key); return nil })
		if len(got) != 3 {
			t.Errorf("List(%q) = %v, want 3 keys (b/1, b/2, bb)", base+"/b", got)
		}
		stop := errors.New("stop")
		n := 0
		err = s.List(ctx, base+"/", func(shard.ObjectInfo) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Errorf("List with fn error: calls=%d err=%v; want 1 call and the fn's error", n, err)
		}
		n = 0
		err = s.List(ctx, base+"/zzz", func(shard.ObjectInfo) error { n++; return nil })
		if err != nil || n != 0 {
			t.Errorf("List(empty prefix match) = %d calls, %v; want 0, nil", n, err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		k := key(t, "obj.bin")
		mustPut(t, s, k, pattern(10, 7))
		if err := s.Delete(ctx, k); err != nil {
			t.Fatalf("Delete(%q) = %v", k, err)
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, shard.ErrNotFound) {
			t.Fatalf("Stat after Delete(%q) error = %v, want ErrNotFound", k, err)
		}
	})

	t.Run("InvalidKeys", func(t *testing.T) {
		for _, k := range []string{"", "/abs", "a//b", "a/../b", "./a"} {
			if err := s.Put(ctx, k, bytes.NewReader([]byte("x")), 1); err == nil {
				t.Errorf("Put(%q) succeeded, want an invalid-key error", k)
			}
		}
	})

	t.Run("ConcurrentRanges", func(t *testing.T) {
		k := key(t, "obj.bin")
		data := pattern(64<<10, 8)
		mustPut(t, s, k, data)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(g), 1))
				for i := 0; i < 8; i++ {
					off := r.Int64N(int64(len(data)) - 1)
					n := 1 + r.Int64N(int64(len(data))-off-1)
					got, err := s.GetRange(ctx, k, off, n)
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, data[off:off+n]) {
						errs <- fmt.Errorf("GetRange(%q, %d, %d): wrong bytes", k, off, n)
						return
					}
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	if opts.LargeObject > 0 {
		t.Run("LargeObjectEndToEnd", func(t *testing.T) {
			k := key(t, "large.bin")
			data := pattern(int(opts.LargeObject), 42)
			if err := s.Put(ctx, k, bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatalf("Put(%q, %d bytes) = %v", k, len(data), err)
			}
			info, err := s.Stat(ctx, k)
			if err != nil || info.Size != int64(len(data)) {
				t.Fatalf("Stat(%q) = %+v, %v; want size %d", k, info, err, len(data))
			}
			got, err := s.GetRange(ctx, k, 0, -1)
			if err != nil {
				t.Fatalf("GetRange(%q) = %v", k, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("GetRange(%q): %d bytes sha256 %x, want %d bytes sha256 %x (corrupted multipart upload?)", k, len(got), sum(got), len(data), sum(data))
			}
			mid := int64(len(data)) / 2
			got, err = s.GetRange(ctx, k, mid-100, 200)
			if err != nil || !bytes.Equal(got, data[mid-100:mid+100]) {
				t.Fatalf("GetRange(%q) across the middle: %v", k, err)
			}
			_ = s.Delete(ctx, k)
		})
	}
}

func mustPut(t *testing.T, s shard.ObjectStore, k string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), k, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q, %d bytes) = %v", k, len(data), err)
	}
}

// pattern returns n pseudo-random bytes determined by seed.
func pattern(n int, seed uint64) []byte {
	var key [32]byte
	for i := 0; i < 8; i++ {
		key[i] = byte(seed >> (8 * i))
	}
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

func sum(b []byte) []byte { h := sha256.Sum256(b); return h[:8] }
