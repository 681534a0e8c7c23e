package hf

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
)

// tinyTree is a parameter tree with a fused-projection layout, a padded
// vocabulary and a squeezed leading dimension.
func tinyTree(seed uint64) *nn.Params {
	p := nn.NewParams()
	rng := nn.Rng(seed)
	p.Add("enc.q.weight", 4, 3).InitNormal(rng, 1)
	p.Add("enc.k.weight", 4, 3).InitNormal(rng, 1)
	p.Add("enc.v.weight", 4, 3).InitNormal(rng, 1)
	p.Add("enc.k.bias", 4)
	p.Add("emb.weight", 6, 3).InitNormal(rng, 1)
	p.Add("queries", 2, 3).InitNormal(rng, 1)
	p.Add("fresh.weight", 3).InitNormal(rng, 1)
	return p
}

func tinyMapping() Mapping {
	return Mapping{
		Arch: "Tiny",
		Entries: []Entry{
			{HF: "model.qkv.weight", Loom: []string{"enc.q.weight", "enc.k.weight", "enc.v.weight"}, Split: true},
			{HF: "model.embed.weight", Loom: []string{"emb.weight"}, PadRows: true},
			{HF: "model.queries", Loom: []string{"queries"}, HFShape: []int{1, 2, 3}},
		},
		Zero:   []string{"enc.k.bias"},
		Ignore: []string{"model.rotary.inv_freq"},
	}
}

func values(n int, seed float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = seed + float32(i)/8
	}
	return v
}

func writeDir(t *testing.T, ts []safetensors.Tensor) string {
	t.Helper()
	dir := t.TempDir()
	if err := safetensors.WriteFile(filepath.Join(dir, SingleFile), ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"model_type":"tiny"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadSplitsPadsAndConverts(t *testing.T) {
	ctx := context.Background()
	qkv := values(36, 0)
	emb := values(12, 10) // 4 of the model's 6 rows
	dir := writeDir(t, []safetensors.Tensor{
		safetensors.BF16Tensor("model.qkv.weight", []int{12, 3}, qkv),
		safetensors.F32Tensor("model.embed.weight", []int{4, 3}, emb),
		f16Tensor("model.queries", []int{1, 2, 3}, values(6, -1)),
		safetensors.F32Tensor("model.rotary.inv_freq", []int{2}, []float32{1, 2}),
	})
	ck, err := Open(ctx, Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	p := tinyTree(1)
	p.Get("enc.k.bias").Data[0] = 5
	before := slices.Clone(p.Get("emb.weight").Data)
	pl, err := Load(ctx, ck, tinyMapping(), p)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"enc.q.weight", "enc.k.weight", "enc.v.weight"} {
		for j, v := range p.Get(name).Data {
			if want := safetensors.FromBF16(safetensors.ToBF16(qkv[12*i+j])); v != want {
				t.Fatalf("%s[%d] = %v, want %v (bf16 of the fused row)", name, j, v, want)
			}
		}
	}
	e := p.Get("emb.weight").Data
	if !slices.Equal(e[:12], emb) || !slices.Equal(e[12:], before[12:]) {
		t.Fatalf("padded embedding: %v", e)
	}
	if q := p.Get("queries").Data; q[5] != -1+5.0/8 {
		t.Fatalf("queries from f16: %v", q)
	}
	if p.Get("enc.k.bias").Data[0] != 0 {
		t.Fatal("zero parameter not zeroed")
	}
	if !slices.Equal(pl.RandomInit, []string{"emb.weight rows 4..5", "fresh.weight"}) || !slices.Equal(pl.Ignored, []string{"model.rotary.inv_freq"}) {
		t.Fatalf("plan random %v ignored %v", pl.RandomInit, pl.Ignored)
	}
	if pl.Bytes != 36*2+12*4+6*2 {
		t.Fatalf("plan bytes %d", pl.Bytes)
	}
}

func TestErrorsNameFileAndTensor(t *testing.T) {
	ctx := context.Background()
	good := []safetensors.Tensor{
		safetensors.F32Tensor("model.qkv.weight", []int{12, 3}, values(36, 0)),
		safetensors.F32Tensor("model.embed.weight", []int{6, 3}, values(18, 0)),
		safetensors.F32Tensor("model.queries", []int{1, 2, 3}, values(6, 0)),
	}
	for _, c := range []struct {
		name string
		ts   []safetensors.Tensor
		want string
	}{
		{"missing", good[1:], `Tiny: missing tensor "model.qkv.weight", needed for enc.q.weight, enc.k.weight, enc.v.weight`},
		{"unexpected", append(slices.Clone(good), safetensors.F32Tensor("model.extra", []int{1}, []float32{0})),
			`model.safetensors: unexpected tensor "model.extra": Tiny has no place for it`},
		{"split shape", append([]safetensors.Tensor{safetensors.F32Tensor("model.qkv.weight", []int{11, 3}, values(33, 0))}, good[1:]...),
			`model.safetensors: tensor "model.qkv.weight" (Tiny): shape [11 3]: dim 0 is 11, the parameters enc.q.weight, enc.k.weight, enc.v.weight take 12 rows`},
		{"shape", []safetensors.Tensor{good[0], safetensors.F32Tensor("model.embed.weight", []int{6, 4}, values(24, 0)), good[2]},
			`tensor "model.embed.weight" (Tiny): shape [6 4], but emb.weight is [6 3]`},
		{"too many rows", []safetensors.Tensor{good[0], safetensors.F32Tensor("model.embed.weight", []int{7, 3}, values(21, 0)), good[2]},
			`shape [7 3], but emb.weight is [6 3]`},
		{"dtype", []safetensors.Tensor{good[0], good[1], {Name: "model.queries", DType: safetensors.I32, Shape: []int{1, 2, 3}, Data: make([]byte, 24)}},
			`tensor "model.queries" has dtype I32; want F32, F16, BF16 or F64`},
	} {
		dir := writeDir(t, c.ts)
		ck, err := Open(ctx, Dir(dir))
		if err == nil {
			_, err = Load(ctx, ck, tinyMapping(), tinyTree(1))
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		} else if !strings.Contains(err.Error(), dir) {
			t.Errorf("%s: error %v does not name the directory", c.name, err)
		}
	}
}

// Export then import is bit-identical, through shards and an index when
// the model is larger than a shard; the index lists every tensor once.
func TestExportImportRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, shardBytes := range []int64{0, 64} {
		dir := t.TempDir()
		src := tinyTree(3)
		res, err := Export(ctx, Dir(dir), tinyMapping(), src, ExportOptions{ShardBytes: shardBytes,
			Files: map[string][]byte{ConfigFile: []byte(`{"model_type":"tiny"}`), "tokenizer.json": []byte("{}")}})
		if err != nil {
			t.Fatal(err)
		}
		if shardBytes > 0 && len(res.Shards) < 2 {
			t.Fatalf("%d-byte shards: wrote %v", shardBytes, res.Shards)
		}
		ck, err := Open(ctx, Dir(dir))
		if err != nil {
			t.Fatal(err)
		}
		if info, _ := ck.Info("model.queries"); !slices.Equal(info.Shape, []int{1, 2, 3}) {
			t.Fatalf("exported HF shape %v", info.Shape)
		}
		dst := tinyTree(9)
		if _, err := Load(ctx, ck, tinyMapping(), dst); err != nil {
			t.Fatal(err)
		}
		for _, n := range src.Names() {
			if n == "enc.k.bias" || n == "fresh.weight" {
				continue // zeroed by the layout / not in it
			}
			if !slices.Equal(src.Get(n).Data, dst.Get(n).Data) {
				t.Errorf("shards %d: %s differs after the round trip", shardBytes, n)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "tokenizer.json")); string(b) != "{}" {
			t.Errorf("tokenizer file not written")
		}
	}
}

func TestToF16(t *testing.T) {
	for _, f := range []float32{0, 1, -2.5, 65504, 1e-5, 6e-8, 3.14159, -0.0001, 70000} {
		h := safetensors.ToF16(f)
		back := safetensors.FromF16(h)
		want := float32(math.Inf(1))
		if f < 65520 {
			// The nearest half, found by search over all halves.
			best := float32(math.Inf(1))
			for x := 0; x < 0x7c00; x++ {
				c := safetensors.FromF16(uint16(x))
				if f < 0 {
					c = -c
				}
				if d := float32(math.Abs(float64(c - f))); d < best || (d == best && x%2 == 0) {
					best, want = d, c
				}
			}
		}
		if back != want {
			t.Errorf("ToF16(%v) = %v, want %v", f, back, want)
		}
	}
}

func TestIndexMustMatchShards(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := Export(ctx, Dir(dir), tinyMapping(), tinyTree(3), ExportOptions{ShardBytes: 64}); err != nil {
		t.Fatal(err)
	}
	idx := filepath.Join(dir, IndexFile)
	b, _ := os.ReadFile(idx)
	bad := strings.Replace(string(b), `"model.queries": "model-00001`, `"model.queries": "model-00002`, 1)
	bad = strings.Replace(bad, `"model.queries": "model-00003`, `"model.queries": "model-00002`, 1)
	if bad == string(b) {
		t.Skipf("index layout changed: %s", b)
	}
	os.WriteFile(idx, []byte(bad), 0o644)
	_, err := Open(ctx, Dir(dir))
	if err == nil || !strings.Contains(err.Error(), `tensor "model.queries"`) {
		t.Fatalf("Open with a wrong index = %v, want an error naming model.queries", err)
	}
	os.WriteFile(idx, []byte(`{"weight_map": {"a": "../etc/passwd"}}`), 0o644)
	if _, err := Open(ctx, Dir(dir)); err == nil || !strings.Contains(err.Error(), "must be a file in the directory") {
		t.Fatalf("Open with a path in the index = %v", err)
	}
}
