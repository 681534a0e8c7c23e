package collective

import "fmt"

// This file is the pure part of the ring: which slice of which chunk every
// rank sends to its successor and receives from its predecessor, step by
// step, and which earlier transfer each one waits for. No goroutines, no I/O;
// Comm executes plans over a Transport and SimulatePlans executes them in
// memory for the tests.

// Range is a half-open element range [Off, Off+Len) of a buffer.
type Range struct{ Off, Len int }

// Partition cuts n elements into parts contiguous ranges whose lengths
// differ by at most one; the first n%parts ranges are the longer ones
// (baidu-allreduce's rule). parts must be ≥ 1.
func Partition(n, parts int) []Range {
	out := make([]Range, parts)
	partition(n, parts, out)
	return out
}

func partition(n, parts int, out []Range) {
	q, rem := n/parts, n%parts
	off := 0
	for i := range parts {
		l := q
		if i < rem {
			l++
		}
		out[i] = Range{off, l}
		off += l
	}
}

// ChunkRange is the range of a world-rank buffer of n elements that rank
// owns after ReduceScatter and contributes to AllGather.
func ChunkRange(n, world, rank int) Range {
	return Partition(n, world)[rank]
}

// SendStep is one message a rank sends to its successor.
type SendStep struct {
	Range
	Step, Slice uint32
	// AfterRecv is the index in Plan.Recvs of the receive that must complete
	// before this send may start (the data it forwards), or -1.
	AfterRecv int
}

// RecvStep is one message a rank receives from its predecessor.
type RecvStep struct {
	Range
	Step, Slice uint32
	Reduce      bool // add the payload into the range (reduce-scatter) instead of copying it
	Scale       bool // after reducing, multiply the range by 1/world (mean)
	// AfterSend is the index in Plan.Sends of the send that must complete
	// before this receive may overwrite the range, or -1.
	AfterSend int
}

// Plan is one rank's schedule on one channel. Sends run in order, receives
// run in order, and the two sequences are tied only by AfterRecv/AfterSend.
type Plan struct {
	Sends []SendStep
	Recvs []RecvStep
}

// PlanKind selects the collective a plan implements.
type PlanKind uint8

// The plan kinds.
const (
	PlanAllReduce PlanKind = iota
	PlanReduceScatter
	PlanAllGather
	PlanBroadcast
)

// PlanSpec describes one rank's share of a collective on one channel.
type PlanSpec struct {
	Kind       PlanKind
	World      int
	Rank       int
	Len        int  // buffer length in elements
	Channel    int  // this channel, in [0, Channels)
	Channels   int  // number of channels the buffer is split over
	SliceElems int  // largest slice, in elements (≥ 1)
	Mean       bool // all-reduce / reduce-scatter: scale the reduced chunk by 1/World
	Root       int  // broadcast: the rank whose buffer is copied
}

func mod(a, n int) int { return ((a % n) + n) % n }

// MakePlan builds the plan for spec. Chunk k of the buffer (Partition(Len,
// World)[k]) is owned by rank k; channel c carries sub-range c of every
// chunk (Partition(chunk, Channels)[c]), cut into the same number of slices
// on every rank, so that message sizes agree across the ring.
func MakePlan(spec PlanSpec) (Plan, error) {
	n, r := spec.World, spec.Rank
	if n < 1 || r < 0 || r >= n {
		return Plan{}, fmt.Errorf("collective: plan: rank %d of world %d", r, n)
	}
	if spec.Channels < 1 || spec.Channel < 0 || spec.Channel >= spec.Channels {
		return Plan{}, fmt.Errorf("collective: plan: channel %d of %d", spec.Channel, spec.Channels)
	}
	if spec.SliceElems < 1 || spec.Len < 0 {
		return Plan{}, fmt.Errorf("collective: plan: slice %d elements, length %d", spec.SliceElems, spec.Len)
	}
	if n == 1 {
		return Plan{}, nil
	}
	if spec.Kind == PlanBroadcast {
		return broadcastPlan(spec)
	}
	// This channel's part of each chunk.
	parts := make([]Range, n)
	maxLen := 0
	for k, ch := range Partition(spec.Len, n) {
		sub := Partition(ch.Len, spec.Channels)[spec.Channel]
		parts[k] = Range{ch.Off + sub.Off, sub.Len}
		maxLen = max(maxLen, sub.Len)
	}
	S := max(1, (maxLen+spec.SliceElems-1)/spec.SliceElems)
	slice := func(chunk, j int) Range {
		p := parts[mod(chunk, n)]
		sr := Partition(p.Len, S)[j]
		return Range{p.Off + sr.Off, sr.Len}
	}
	var pl Plan
	rs := spec.Kind == PlanAllReduce || spec.Kind == PlanReduceScatter
	ag := spec.Kind == PlanAllReduce || spec.Kind == PlanAllGather
	step := 0
	if rs {
		// Reduce-scatter: at step t send chunk r-1-t (own data at t=0, the
		// partial sum received at t-1 afterwards) and add chunk r-2-t into
		// the buffer. After n-1 steps chunk r holds the full sum.
		for t := 0; t < n-1; t++ {
			for j := range S {
				after := -1
				if t > 0 {
					after = (t-1)*S + j
				}
				pl.Sends = append(pl.Sends, SendStep{slice(r-1-t, j), uint32(step), uint32(j), after})
				pl.Recvs = append(pl.Recvs, RecvStep{Range: slice(r-2-t, j), Step: uint32(step), Slice: uint32(j),
					Reduce: true, Scale: spec.Mean && t == n-2, AfterSend: -1})
			}
			step++
		}
	}
	if ag {
		// All-gather: at step s send chunk r-s (own fully reduced chunk at
		// s=0, the one received at s-1 afterwards) and copy chunk r-s-1.
		// Chunk r-s-1 left this rank at reduce-scatter step s; it is
		// overwritten only after that send has completed.
		for s := 0; s < n-1; s++ {
			for j := range S {
				after := -1
				if step > 0 {
					after = (step-1)*S + j
				}
				waitSend := -1
				if rs {
					waitSend = s*S + j
				}
				pl.Sends = append(pl.Sends, SendStep{slice(r-s, j), uint32(step), uint32(j), after})
				pl.Recvs = append(pl.Recvs, RecvStep{Range: slice(r-s-1, j), Step: uint32(step), Slice: uint32(j), AfterSend: waitSend})
			}
			step++
		}
	}
	return pl, nil
}

// broadcastPlan pipelines the root's buffer along the ring root → root+1 →
// … → root-1, slice by slice: each rank forwards slice j as soon as it has
// received it.
func broadcastPlan(spec PlanSpec) (Plan, error) {
	n, r := spec.World, spec.Rank
	if spec.Root < 0 || spec.Root >= n {
		return Plan{}, fmt.Errorf("collective: plan: broadcast root %d of world %d", spec.Root, n)
	}
	region := Partition(spec.Len, spec.Channels)[spec.Channel]
	S := max(1, (region.Len+spec.SliceElems-1)/spec.SliceElems)
	pos := mod(r-spec.Root, n)
	var pl Plan
	for j, sr := range Partition(region.Len, S) {
		rg := Range{region.Off + sr.Off, sr.Len}
		if pos > 0 {
			pl.Recvs = append(pl.Recvs, RecvStep{Range: rg, Slice: uint32(j), AfterSend: -1})
		}
		if pos < n-1 {
			after := -1
			if pos > 0 {
				after = j
			}
			pl.Sends = append(pl.Sends, SendStep{Range: rg, Slice: uint32(j), AfterRecv: after})
		}
	}
	return pl, nil
}

// applyRecv folds a received payload into buf as the step says. The
// addition order (buf + payload, element by element) is fixed, which is what
// makes every rank's result bit-identical.
func applyRecv(buf, payload []float32, st RecvStep, world int) {
	dst := buf[st.Off : st.Off+st.Len]
	if !st.Reduce {
		copy(dst, payload)
		return
	}
	addTo(dst, payload[:len(dst)])
	if st.Scale {
		scaleBy(dst, 1/float32(world))
	}
}

func addTo(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}

func scaleBy(dst []float32, s float32) {
	for i := range dst {
		dst[i] *= s
	}
}

// SimulatePlans executes one plan per rank (index = rank) in memory, with
// no concurrency: a message queue per rank, and a loop that lets any rank
// make progress until none can. It is the socket-free reference for the
// ring schedule: it reports a deadlock (a rank waiting forever), a message
// whose step, slice or length differs from what the receiver expects, and
// otherwise leaves in bufs what the collective must produce.
func SimulatePlans(plans []Plan, bufs [][]float32) error {
	n := len(plans)
	type msg struct {
		step, slice uint32
		data        []float32
	}
	queues := make([][]msg, n) // queues[r]: messages in flight to r
	ns, nr := make([]int, n), make([]int, n)
	for {
		progress := false
		for r := range n {
			p := plans[r]
			if i := ns[r]; i < len(p.Sends) && (p.Sends[i].AfterRecv < 0 || p.Sends[i].AfterRecv < nr[r]) {
				s := p.Sends[i]
				next := (r + 1) % n
				queues[next] = append(queues[next], msg{s.Step, s.Slice, append([]float32(nil), bufs[r][s.Off:s.Off+s.Len]...)})
				ns[r]++
				progress = true
			}
			if i := nr[r]; i < len(p.Recvs) && len(queues[r]) > 0 && (p.Recvs[i].AfterSend < 0 || p.Recvs[i].AfterSend < ns[r]) {
				st := p.Recvs[i]
				m := queues[r][0]
				queues[r] = queues[r][1:]
				if m.step != st.Step || m.slice != st.Slice || len(m.data) != st.Len {
					return fmt.Errorf("collective: simulate: rank %d recv %d: got step %d slice %d len %d, want step %d slice %d len %d",
						r, i, m.step, m.slice, len(m.data), st.Step, st.Slice, st.Len)
				}
				applyRecv(bufs[r], m.data, st, n)
				nr[r]++
				progress = true
			}
		}
		if !progress {
			break
		}
	}
	for r := range n {
		if ns[r] != len(plans[r].Sends) || nr[r] != len(plans[r].Recvs) {
			return fmt.Errorf("collective: simulate: deadlock: rank %d stopped at send %d/%d, recv %d/%d",
				r, ns[r], len(plans[r].Sends), nr[r], len(plans[r].Recvs))
		}
		if len(queues[r]) != 0 {
			return fmt.Errorf("collective: simulate: %d messages to rank %d never received", len(queues[r]), r)
		}
	}
	return nil
}
