package shard

import (
	"context"
	"fmt"
	"io"
)

// RankPositions returns the global sample positions rank takes, in order,
// starting at global position from (a multiple of batch: batches done ×
// batch): for each global batch, the rank's RankSlice of it. The i-th
// position is returned by the function; there is no end.
func RankPositions(batch, rank, world int, from int64) func(i int64) int64 {
	start, n := RankSlice(batch, rank, world)
	return func(i int64) int64 {
		if n == 0 {
			return -1
		}
		return from + (i/int64(n))*int64(batch) + int64(start) + i%int64(n)
	}
}

// MixStream reads a mixture of datasets in the order of a MixedSampler:
// source s is read through readers[s]. Like Stream, it keeps the batches of
// the next Ahead samples (of all sources) fetched or in flight.
type MixStream struct {
	ctx     context.Context
	s       MixedSampler
	readers []*Reader
	pos     func(i int64) int64 // i-th global position to read
	count   int64               // positions to read (< 0: endless)
	ahead   int64
	next    int64
	sched   int64
}

// Stream returns a MixStream over count positions (count < 0: endless)
// given by pos, e.g. RankPositions(...). ahead <= 0 means 256.
func (s MixedSampler) Stream(ctx context.Context, readers []*Reader, pos func(i int64) int64, count int64, ahead int) (*MixStream, error) {
	if len(readers) != len(s.Orders) {
		return nil, fmt.Errorf("mixture of %d sources read through %d readers", len(s.Orders), len(readers))
	}
	for i, r := range readers {
		if r.index.Rows != s.Orders[i].Len() {
			return nil, fmt.Errorf("source %d: reader has %d rows, its order %d", i, r.index.Rows, s.Orders[i].Len())
		}
	}
	if ahead <= 0 {
		ahead = 256
	}
	return &MixStream{ctx: ctx, s: s, readers: readers, pos: pos, count: count, ahead: int64(ahead)}, nil
}

// Next returns the next sample and where it came from, or io.EOF after
// count samples.
func (m *MixStream) Next() (Sample, MixLoc, error) {
	if m.count >= 0 && m.next >= m.count {
		return Sample{}, MixLoc{}, io.EOF
	}
	if m.sched < m.next {
		m.sched = m.next
	}
	if m.sched <= m.next+m.ahead-m.ahead/4 {
		per := make([][]Loc, len(m.readers))
		for ; m.sched <= m.next+m.ahead && (m.count < 0 || m.sched < m.count); m.sched++ {
			l := m.s.Global(m.pos(m.sched))
			per[l.Source] = append(per[l.Source], l.Loc)
		}
		for src, locs := range per {
			if len(locs) > 0 {
				m.readers[src].prefetch(m.ctx, locs)
			}
		}
	}
	l := m.s.Global(m.pos(m.next))
	smp, err := m.readers[l.Source].Get(m.ctx, l.Shard, l.Row)
	if err != nil {
		return Sample{}, l, fmt.Errorf("source %d: %w", l.Source, err)
	}
	m.next++
	return smp, l, nil
}
