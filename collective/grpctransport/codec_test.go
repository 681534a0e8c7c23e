package grpctransport

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"google.golang.org/grpc/mem"

	"github.com/loomtrain/loom/collective"
)

// TestFrameAddToMatchesNaive checks the piece-wise add (with elements split
// across pieces) against the naive reference: join the bytes, decode, add.
func TestFrameAddToMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for trial := range 200 {
		n := rng.IntN(300)
		h := collective.Header{Job: "job", Seq: uint64(trial), Len: uint32(n)}
		msg := collective.AppendHeader(nil, h)
		msg = append(msg, make([]byte, padLen(len(msg)))...)
		want := make([]float32, n)
		dst := make([]float32, n)
		for i := range n {
			v := float32(rng.NormFloat64())
			msg = binary.LittleEndian.AppendUint32(msg, math.Float32bits(v))
			dst[i] = float32(rng.NormFloat64())
			want[i] = dst[i] + v
		}
		// Cut the message into random pieces, as gRPC's frames would (and
		// in some trials into 4-byte-aligned ones, the fast path).
		var data mem.BufferSlice
		rest := msg
		if trial%2 == 0 {
			hl := len(msg) - 4*n
			data = append(data, mem.SliceBuffer(append([]byte(nil), msg[:hl]...)))
			rest = msg[hl:]
		}
		for len(rest) > 0 {
			k := 1 + rng.IntN(min(len(rest), 37))
			if trial%2 == 0 {
				k = min(len(rest), 4*(1+rng.IntN(16)))
			}
			data = append(data, mem.SliceBuffer(append([]byte(nil), rest[:k]...)))
			rest = rest[k:]
		}
		var f inFrame
		if err := (rawCodec{}).Unmarshal(data, &f); err != nil {
			t.Fatalf("trial %d: Unmarshal: %v", trial, err)
		}
		f.addTo(dst)
		copied := make([]float32, n)
		f.copyTo(copied)
		f.free()
		for i := range n {
			if math.Float32bits(dst[i]) != math.Float32bits(want[i]) {
				t.Fatalf("trial %d (%d pieces): addTo element %d = %v, want %v", trial, len(data), i, dst[i], want[i])
			}
			if math.Float32bits(copied[i]) != binary.LittleEndian.Uint32(msg[len(msg)-4*n+4*i:]) {
				t.Fatalf("trial %d: copyTo element %d = %v", trial, i, copied[i])
			}
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add(collective.AppendHeader(nil, collective.Header{Job: "j", Len: 1}), []byte{0, 0, 128, 63})
	f.Add([]byte{1, 2, 3}, []byte{})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var fr inFrame
		data := mem.BufferSlice{mem.SliceBuffer(a), mem.SliceBuffer(b)}
		if err := (rawCodec{}).Unmarshal(data, &fr); err != nil {
			return
		}
		dst := make([]float32, fr.h.Len)
		fr.addTo(dst)
		fr.copyTo(dst)
		fr.free()
	})
}

func TestDirtyPool(t *testing.T) {
	var p dirtyPool
	for _, n := range []int{0, 1, 255, 256, 257, 16384, 16385, 1 << 24, 1<<24 + 1} {
		b := p.Get(n)
		if len(*b) != n {
			t.Fatalf("Get(%d): len %d", n, len(*b))
		}
		if n <= 1<<24 && (cap(*b)&(cap(*b)-1) != 0 || cap(*b) < n) {
			t.Fatalf("Get(%d): cap %d, want a power of two ≥ %d", n, cap(*b), n)
		}
		p.Put(b)
	}
	foreign := make([]byte, 300)
	p.Put(&foreign) // not a power of two: dropped, not returned by Get
	if b := p.Get(300); cap(*b) != 512 {
		t.Fatalf("Get(300) after Put of a 300-byte buffer: cap %d, want 512", cap(*b))
	}
}
