package trainer

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/shard"
)

// shuffleWindow is the sampler's shuffle window (shard.Order): samples are
// shuffled within windows of this many positions, so reads stay local to a
// few shards (MosaicML Streaming's py1e, research/orchestration.md).
const shuffleWindow = 8192

// dataSource is the stage's mixture of datasets and their readers.
type dataSource struct {
	names   []string
	kinds   []shard.Kind
	readers []*shard.Reader
	sampler shard.MixedSampler
}

// stageDatasets returns the datasets a stage reads with their weights: the
// stage's own mixture when it names one (weight 0 leaves a dataset out),
// otherwise every dataset with its manifest weight.
func stageDatasets(m *api.Manifest, i int) ([]api.Dataset, []float64) {
	var ds []api.Dataset
	var ws []float64
	for _, d := range m.Datasets {
		w := d.Weight
		if sw := m.Stages[i].Datasets; len(sw) > 0 {
			var ok bool
			if w, ok = sw[d.Name]; !ok {
				continue
			}
		}
		if w > 0 {
			ds = append(ds, d)
			ws = append(ws, w)
		}
	}
	return ds, ws
}

func openData(ctx context.Context, j Job, st *Stage) (*dataSource, error) {
	ds, ws := stageDatasets(j.Manifest, st.Index)
	if len(ds) == 0 {
		return nil, fmt.Errorf("trainer: stage %q: stages[%d].datasets selects no dataset", st.Name, st.Index)
	}
	open := j.OpenDataset
	if open == nil {
		open = func(ctx context.Context, d api.Dataset) (shard.ObjectStore, string, error) {
			loc, err := shard.ParseLocation(d.URI)
			if err != nil {
				return nil, "", err
			}
			return loc.Open(shard.S3ConfigFromEnv(shard.S3Config{}))
		}
	}
	src := &dataSource{}
	var orders []*shard.Order
	for i, d := range ds {
		store, prefix, err := open(ctx, d)
		if err != nil {
			src.Close()
			return nil, fmt.Errorf("trainer: dataset %s (%s): %w", d.Name, d.URI, err)
		}
		rd, err := shard.OpenReader(ctx, store, prefix, shard.ReaderOptions{})
		if err != nil {
			src.Close()
			return nil, fmt.Errorf("trainer: dataset %s (%s): %w", d.Name, d.URI, err)
		}
		src.readers = append(src.readers, rd)
		kind := rd.Index().Kind
		if !slices.Contains(st.Spec.Kinds, kind) {
			src.Close()
			var ks []string
			for _, k := range st.Spec.Kinds {
				ks = append(ks, string(k))
			}
			return nil, fmt.Errorf("trainer: dataset %s (%s): kind %s, but stage %q of recipe %s reads %s",
				d.Name, d.URI, kind, st.Name, st.Recipe.Name, strings.Join(ks, ", "))
		}
		o, err := shard.NewOrder(rd.Index().ShardRows(), seed(j.Manifest)+uint64(i)*0x9e3779b97f4a7c15, shuffleWindow)
		if err != nil {
			src.Close()
			return nil, fmt.Errorf("trainer: dataset %s: %w", d.Name, err)
		}
		src.names = append(src.names, d.Name)
		src.kinds = append(src.kinds, kind)
		orders = append(orders, o)
	}
	mix, err := shard.NewMixture(ws, seed(j.Manifest)^uint64(st.Index), 0)
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("trainer: stage %q: mixture: %w", st.Name, err)
	}
	src.sampler = shard.MixedSampler{Mix: mix, Orders: orders, Batch: st.GlobalBatch}
	return src, nil
}

// rankRows reads rank's slice of the global batch that starts at stream
// position pos and turns it into rows. Row ids are "dataset/sample-id".
func (d *dataSource) rankRows(ctx context.Context, b *rowBuilder, pos int64, rank, world, batch int) ([]row, error) {
	locs := d.sampler.RankBatch(pos, rank, world)
	start, _ := shard.RankSlice(batch, rank, world)
	rows := make([]row, 0, len(locs))
	for i, l := range locs {
		s, err := d.readers[l.Source].Get(ctx, l.Shard, l.Row)
		if err != nil {
			return nil, fmt.Errorf("dataset %s: %w", d.names[l.Source], err)
		}
		rw, err := b.build(d.kinds[l.Source], s, pos+int64(start+i))
		if err != nil {
			return nil, fmt.Errorf("dataset %s shard %d row %d: %w", d.names[l.Source], l.Shard, l.Row, err)
		}
		rw.ID = d.names[l.Source] + "/" + s.ID
		rw.N = 1
		rows = append(rows, rw)
	}
	d.prefetch(ctx, pos+int64(batch), rank, world)
	return rows, nil
}

// prefetch queues the record batches of rank's slice of the global batch
// at pos for background fetching, so the next step's reads find them in
// the readers' caches while this step computes.
func (d *dataSource) prefetch(ctx context.Context, pos int64, rank, world int) {
	per := make([][]shard.Loc, len(d.readers))
	for _, l := range d.sampler.RankBatch(pos, rank, world) {
		per[l.Source] = append(per[l.Source], l.Loc)
	}
	for i, locs := range per {
		if len(locs) > 0 {
			d.readers[i].Prefetch(ctx, locs)
		}
	}
}

// Close releases the readers.
func (d *dataSource) Close() error {
	var first error
	for _, r := range d.readers {
		if err := r.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
