package hfbench

import (
	"context"
	"strings"
	"testing"

	"github.com/loomtrain/loom/internal/s3server"
	"github.com/loomtrain/loom/shard"
)

func TestLlamaLikeSize(t *testing.T) {
	m := LlamaLike(2_000_000_000)
	if b := 2 * m.Numel(); m.Layers != 20 || b < 1_900_000_000 || b > 2_100_000_000 {
		t.Fatalf("LlamaLike(2 GB): %d layers, %d bytes", m.Layers, b)
	}
	if LlamaLike(1).Layers != 1 {
		t.Fatal("at least one layer")
	}
}

// Every pass runs against an embedded S3 server on a tiny model: the
// load is checked against the generated values, the bytes add up, and
// the ratios and bounds are filled in.
func TestRunTiny(t *testing.T) {
	srv, err := s3server.Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.CreateBucket("bench"); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	m := Model{Layers: 3, Hidden: 64, Intermediate: 172, KVHidden: 16, Vocab: 100}
	res, err := Run(context.Background(), Options{
		Model: m, ShardBytes: 40_000, Repeat: 2, Log: &log,
		S3: shard.S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Bucket: "bench"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Shards < 3 || res.Params != m.Numel() || res.CheckpointBytes < 2*m.Numel() {
		t.Fatalf("checkpoint: %d shards, %d params, %d bytes", res.Shards, res.Params, res.CheckpointBytes)
	}
	for _, k := range []string{RawGet, Load, LoadInto, RawPut, Export} {
		ps := res.Passes[k]
		if len(ps) != 2 {
			t.Fatalf("%s: %d passes", k, len(ps))
		}
		for _, p := range ps {
			if p.Bytes != res.CheckpointBytes || p.Seconds <= 0 {
				t.Fatalf("%s: %+v, checkpoint %d bytes", k, p, res.CheckpointBytes)
			}
		}
	}
	if len(res.Compare) != 3 || res.Compare[0].Ratio <= 0 || res.Memory[0].Bound != 4*m.Numel()+res.LargestShard {
		t.Fatalf("compare %+v memory %+v", res.Compare, res.Memory)
	}
	if !strings.Contains(log.String(), "round 2 raw-get") {
		t.Fatalf("log:\n%s", log.String())
	}
}

func TestRunSomePasses(t *testing.T) {
	srv, err := s3server.Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.CreateBucket("bench"); err != nil {
		t.Fatal(err)
	}
	o := Options{Model: Model{Layers: 1, Hidden: 64, Intermediate: 172, KVHidden: 16, Vocab: 100}, ShardBytes: 40_000, Repeat: 1,
		S3:     shard.S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Bucket: "bench"},
		Passes: []string{Load, RawGet}}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Compare) != 1 || res.Compare[0].Case != Load || len(res.Memory) != 2 || len(res.Passes[Export]) != 0 {
		t.Fatalf("compare %+v memory %+v", res.Compare, res.Memory)
	}
	o.Passes = []string{"nope"}
	if _, err := Run(context.Background(), o); err == nil {
		t.Fatal("an unknown pass must fail")
	}
}
