package hf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
)

// loadSequential is Load as it was before reads were pipelined: one
// tensor at a time, one range read each, decoded into a buffer and
// copied. The pipelined Load must give the same parameters.
func loadSequential(ctx context.Context, c *Checkpoint, m Mapping, p *nn.Params) error {
	pl, err := MakePlan(c, m, p)
	if err != nil {
		return err
	}
	for _, it := range pl.Items {
		e := m.Entries[it.entry]
		v, err := c.read(ctx, it.Tensor, nil)
		if err != nil {
			return err
		}
		if e.Convert != nil {
			if _, v, err = e.Convert(slices.Clone(it.Tensor.Shape), v); err != nil {
				return err
			}
		}
		if it.Split {
			at := 0
			for _, ln := range it.Loom {
				d := p.Get(ln)
				copy(d.Data, v[at:at+len(d.Data)])
				at += len(d.Data)
			}
			continue
		}
		for _, ln := range it.Loom {
			copy(p.Get(ln).Data, v)
		}
	}
	for _, z := range pl.Zeroed {
		clear(p.Get(z).Data)
	}
	return nil
}

// transpose2 is a Convert/Invert: [r, c] → [c, r].
func transpose2(shape []int, v []float32) ([]int, []float32, error) {
	if len(shape) != 2 {
		return nil, nil, fmt.Errorf("transpose of shape %v", shape)
	}
	r, c := shape[0], shape[1]
	if v == nil {
		return []int{c, r}, nil, nil
	}
	out := make([]float32, len(v))
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			out[j*r+i] = v[i*c+j]
		}
	}
	return []int{c, r}, out, nil
}

// pipeTree and pipeMapping cover every way an entry places a tensor:
// Split, PadRows, one tensor into two parameters, a Convert, a zeroed
// parameter, and each dtype; sizes are odd so chunks cut elements and
// Split parts unevenly.
func pipeTree() *nn.Params {
	p := nn.NewParams()
	rng := nn.Rng(3)
	p.Add("q", 7, 5).InitNormal(rng, 1)
	p.Add("k", 3, 5).InitNormal(rng, 1)
	p.Add("v", 9, 5).InitNormal(rng, 1)
	p.Add("emb", 13, 6).InitNormal(rng, 1)
	p.Add("ffn1", 11, 3).InitNormal(rng, 1)
	p.Add("ffn2", 11, 3).InitNormal(rng, 1)
	p.Add("conv", 17, 4).InitNormal(rng, 1)
	p.Add("norm", 29).InitNormal(rng, 1)
	p.Add("big", 301, 7).InitNormal(rng, 1)
	p.Add("bias", 5).InitNormal(rng, 1)
	return p
}

func pipeMapping() Mapping {
	return Mapping{Arch: "Pipe", Entries: []Entry{
		{HF: "qkv", Loom: []string{"q", "k", "v"}, Split: true},
		{HF: "emb", Loom: []string{"emb"}, PadRows: true},
		{HF: "ffn", Loom: []string{"ffn1", "ffn2"}},
		{HF: "conv", Loom: []string{"conv"}, Convert: transpose2, Invert: transpose2},
		{HF: "norm", Loom: []string{"norm"}},
		{HF: "big", Loom: []string{"big"}},
	}, Zero: []string{"bias"}}
}

// writePipeCheckpoint writes the fixture as two shards and an index.
func writePipeCheckpoint(t *testing.T) string {
	t.Helper()
	ts := [][]safetensors.Tensor{
		{
			safetensors.BF16Tensor("qkv", []int{19, 5}, values(95, 0.3)),
			f16Tensor("emb", []int{10, 6}, values(60, -2)),
			safetensors.F32Tensor("ffn", []int{11, 3}, values(33, 1)),
		},
		{
			{Name: "conv", DType: safetensors.F64, Shape: []int{4, 17}, Data: f64Bytes(values(68, 5))},
			safetensors.BF16Tensor("norm", []int{29}, values(29, -7)),
			safetensors.BF16Tensor("big", []int{301, 7}, values(2107, 0.01)),
		},
	}
	return writeShards(t, ts)
}

func f64Bytes(v []float32) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		u := math.Float64bits(float64(x))
		for k := 0; k < 8; k++ {
			b[8*i+k] = byte(u >> (8 * k))
		}
	}
	return b
}

// noInto hides a Source's ReadRangeInto, so Load allocates per read.
type noInto struct{ Source }

func TestLoadPipelinedMatchesSequential(t *testing.T) {
	ctx := context.Background()
	dir := writePipeCheckpoint(t)
	ck, err := Open(ctx, Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	want := pipeTree()
	if err := loadSequential(ctx, ck, pipeMapping(), want); err != nil {
		t.Fatal(err)
	}
	for _, src := range []Source{Dir(dir), noInto{Dir(dir)}} {
		ck, err := Open(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range []loadOptions{{1, 1 << 20}, {1, 6}, {3, 10}, {4, 64}, {8, 2}, defaultLoad} {
			got := pipeTree()
			pl, err := MakePlan(ck, pipeMapping(), got)
			if err != nil {
				t.Fatal(err)
			}
			if err := ck.load(ctx, pl, pipeMapping(), got, o); err != nil {
				t.Fatalf("%T %+v: %v", src, o, err)
			}
			for _, z := range pl.Zeroed {
				clear(got.Get(z).Data)
			}
			for _, n := range want.Names() {
				if !slices.Equal(got.Get(n).Data, want.Get(n).Data) {
					t.Fatalf("%T %+v: %s = %v, sequential load gives %v", src, o, n, got.Get(n).Data, want.Get(n).Data)
				}
			}
		}
	}
	// And through Load itself.
	got := pipeTree()
	if _, err := Load(ctx, ck, pipeMapping(), got); err != nil {
		t.Fatal(err)
	}
	for _, n := range want.Names() {
		if !slices.Equal(got.Get(n).Data, want.Get(n).Data) {
			t.Fatalf("Load: %s differs from the sequential load", n)
		}
	}
}

// failingSource fails the reads of one file after it has served ok of
// them.
type failingSource struct {
	Source
	file  string
	ok    int64
	reads atomic.Int64
}

var errInjected = errors.New("injected read failure")

func (f *failingSource) ReadRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	if name == f.file && off > 8 && f.reads.Add(1) > f.ok {
		return nil, errInjected
	}
	return f.Source.ReadRange(ctx, name, off, n)
}

// failingInto is failingSource with ReadRangeInto, the path Load takes
// for a Source that reads into its buffers.
type failingInto struct{ *failingSource }

func (f failingInto) ReadRangeInto(ctx context.Context, name string, off int64, buf []byte) error {
	if name == f.file && off > 8 && f.reads.Add(1) > f.ok {
		return errInjected
	}
	return Dir(f.Source.String()).ReadRangeInto(ctx, name, off, buf)
}

func TestLoadReadErrorPropagates(t *testing.T) {
	ctx := context.Background()
	dir := writePipeCheckpoint(t)
	for _, c := range []struct {
		o  loadOptions
		ok int64 // good reads of the second shard before the failure
	}{
		{defaultLoad, 0}, {defaultLoad, 2}, {loadOptions{1, 4}, 0}, {loadOptions{1, 4}, 30},
		{loadOptions{4, 4}, 3}, {loadOptions{4, 4}, 100}, {loadOptions{8, 64}, 5},
	} {
		fs := &failingSource{Source: Dir(dir), file: "model-00002-of-00002.safetensors", ok: c.ok}
		for _, src := range []Source{fs, failingInto{fs}} {
			ck, err := Open(ctx, src)
			if err != nil {
				t.Fatal(err)
			}
			fs.reads.Store(0)
			p := pipeTree()
			pl, err := MakePlan(ck, pipeMapping(), p)
			if err != nil {
				t.Fatal(err)
			}
			err = ck.load(ctx, pl, pipeMapping(), p, c.o)
			if !errors.Is(err, errInjected) {
				t.Fatalf("%T %+v after %d good reads: error %v, want the injected one", src, c.o, c.ok, err)
			}
			if !strings.Contains(err.Error(), "model-00002-of-00002.safetensors: tensor ") {
				t.Fatalf("error %v does not name the file and tensor", err)
			}
		}
	}
	fs := &failingSource{Source: Dir(dir), file: "model-00002-of-00002.safetensors"}
	ck, err := Open(ctx, fs)
	if err != nil {
		t.Fatal(err)
	}
	fs.reads.Store(0)
	if _, err := Load(ctx, ck, pipeMapping(), pipeTree()); !errors.Is(err, errInjected) {
		t.Fatalf("Load: error %v, want the injected one", err)
	}
}

// blockingSource serves the first reads and then blocks every read until
// its context ends.
type blockingSource struct {
	Source
	started chan struct{}
	open    atomic.Int64
	served  atomic.Int64
}

func (b *blockingSource) ReadRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	if off <= 8 || b.served.Add(1) <= 2 {
		return b.Source.ReadRange(ctx, name, off, n)
	}
	b.open.Add(1)
	defer b.open.Add(-1)
	select {
	case b.started <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestLoadCancelStopsReads(t *testing.T) {
	dir := writePipeCheckpoint(t)
	src := &blockingSource{Source: Dir(dir), started: make(chan struct{}, 1)}
	ck, err := Open(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Load(ctx, ck, pipeMapping(), pipeTree())
		done <- err
	}()
	<-src.started
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Load did not return after its context was cancelled")
	}
	if n := src.open.Load(); n != 0 {
		t.Fatalf("%d reads still open after Load returned", n)
	}
}

// A bad dtype anywhere fails Load before any tensor is read or written.
func TestLoadDTypeFailsBeforeWriting(t *testing.T) {
	ctx := context.Background()
	dir := writeDir(t, []safetensors.Tensor{
		safetensors.F32Tensor("model.qkv.weight", []int{12, 3}, values(36, 0)),
		safetensors.F32Tensor("model.embed.weight", []int{6, 3}, values(18, 0)),
		{Name: "model.queries", DType: safetensors.I32, Shape: []int{1, 2, 3}, Data: make([]byte, 24)},
	})
	ck, err := Open(ctx, Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	p, ref := tinyTree(1), tinyTree(1)
	if _, err := Load(ctx, ck, tinyMapping(), p); err == nil || !strings.Contains(err.Error(), "has dtype I32") {
		t.Fatalf("error %v", err)
	}
	for _, n := range ref.Names() {
		if !slices.Equal(p.Get(n).Data, ref.Get(n).Data) {
			t.Fatalf("%s was written before the dtype error", n)
		}
	}
}

// writeShards writes each group of tensors as a shard, with an index.
func writeShards(t *testing.T, shards [][]safetensors.Tensor) string {
	t.Helper()
	dir := t.TempDir()
	wm := map[string]string{}
	for i, ts := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		if err := safetensors.WriteFile(filepath.Join(dir, name), ts, nil); err != nil {
			t.Fatal(err)
		}
		for _, x := range ts {
			wm[x.Name] = name
		}
	}
	b, err := json.Marshal(map[string]any{"weight_map": wm})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, IndexFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// decode's fast paths give the bits safetensors.Decode gives, at every
// alignment and length (NaNs, infinities and subnormals included).
func TestDecodeMatchesSafetensors(t *testing.T) {
	raw := make([]byte, 4*203+8)
	x := uint32(12345)
	for i := range raw {
		x = x*1664525 + 1013904223
		raw[i] = byte(x >> 24)
	}
	copy(raw[16:], []byte{0x80, 0x7f, 0xc0, 0x7f, 0x80, 0xff, 0x01, 0x00}) // bf16 inf, NaN, -inf, subnormal
	for _, dt := range []safetensors.DType{safetensors.F32, safetensors.BF16, safetensors.F16, safetensors.F64} {
		for off := 0; off < 8; off++ {
			for _, n := range []int{0, 1, 3, 4, 5, 8, 9, 97, 100} {
				b := raw[off : off+n*dt.Size()]
				// Outputs at an 8-aligned and a 4-only-aligned address.
				for _, oo := range []int{0, 1} {
					got, want := make([]float32, n+oo)[oo:], make([]float32, n)
					if err := decode(dt, b, got); err != nil {
						t.Fatal(err)
					}
					if err := safetensors.Decode(dt, b, want); err != nil {
						t.Fatal(err)
					}
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%s off %d n %d out+%d: [%d] = %#x, want %#x", dt, off, n, oo, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
						}
					}
				}
			}
		}
	}
	if err := decode(safetensors.BF16, make([]byte, 3), make([]float32, 2)); err == nil {
		t.Fatal("a short buffer must fail")
	}
}

func BenchmarkDecodeBF16(b *testing.B) {
	raw := make([]byte, 2<<20)
	out := make([]float32, 1<<20)
	for _, c := range []struct {
		name string
		f    func(safetensors.DType, []byte, []float32) error
	}{{"safetensors", safetensors.Decode}, {"hf", decode}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			for i := 0; i < b.N; i++ {
				if err := c.f(safetensors.BF16, raw, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
