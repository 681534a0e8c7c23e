package inproc

import (
	"context"
	"fmt"
	"sync"

	"github.com/loomtrain/loom/collective"
)

// Depth is how many messages may wait on one (sender, receiver, channel)
// lane before Send blocks, like a transport's flow-control window.
const Depth = 64

type message struct {
	h    collective.Header
	data []float32
}

// Network is a set of connected in-process transports.
type Network struct {
	world, channels int
	lanes           [][][]chan message // [from][to][ch]
	closed          []chan struct{}    // closed[r] is closed when rank r closes
	once            []sync.Once
}

// NewNetwork connects world ranks with channels lanes between every pair.
func NewNetwork(world, channels int) *Network {
	if world < 1 || channels < 1 {
		panic(fmt.Sprintf("inproc: NewNetwork(%d, %d): want world and channels ≥ 1", world, channels))
	}
	n := &Network{world: world, channels: channels,
		lanes: make([][][]chan message, world), closed: make([]chan struct{}, world), once: make([]sync.Once, world)}
	for f := range world {
		n.closed[f] = make(chan struct{})
		n.lanes[f] = make([][]chan message, world)
		for t := range world {
			n.lanes[f][t] = make([]chan message, channels)
			for c := range channels {
				n.lanes[f][t][c] = make(chan message, Depth)
			}
		}
	}
	return n
}

// Transport returns rank's endpoint. Calling it twice for one rank returns
// two handles on the same endpoint.
func (n *Network) Transport(rank int) *Transport {
	if rank < 0 || rank >= n.world {
		panic(fmt.Sprintf("inproc: Transport(%d): world is %d", rank, n.world))
	}
	return &Transport{n: n, rank: rank}
}

// Transports returns every rank's endpoint, indexed by rank.
func (n *Network) Transports() []collective.Transport {
	out := make([]collective.Transport, n.world)
	for r := range out {
		out[r] = n.Transport(r)
	}
	return out
}

// Transport is one rank's endpoint of a Network.
type Transport struct {
	n    *Network
	rank int
}

var _ collective.Transport = (*Transport)(nil)

// Rank implements collective.Transport.
func (t *Transport) Rank() int { return t.rank }

// World implements collective.Transport.
func (t *Transport) World() int { return t.n.world }

// Channels implements collective.Transport.
func (t *Transport) Channels() int { return t.n.channels }

func (t *Transport) check(peer, ch int) error {
	if peer < 0 || peer >= t.n.world || peer == t.rank || ch < 0 || ch >= t.n.channels {
		return fmt.Errorf("inproc: rank %d: peer %d channel %d out of range (world %d, %d channels)", t.rank, peer, ch, t.n.world, t.n.channels)
	}
	return nil
}

// Send implements collective.Transport; it copies payload.
func (t *Transport) Send(ctx context.Context, to, ch int, h collective.Header, payload []float32) error {
	if err := t.check(to, ch); err != nil {
		return err
	}
	select {
	case <-t.n.closed[t.rank]:
		return collective.ErrClosed
	case <-t.n.closed[to]:
		return collective.ErrPeerClosed
	default:
	}
	h.Len = uint32(len(payload))
	m := message{h: h, data: append([]float32(nil), payload...)}
	select {
	case t.n.lanes[t.rank][to][ch] <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.n.closed[t.rank]:
		return collective.ErrClosed
	case <-t.n.closed[to]:
		return collective.ErrPeerClosed
	}
}

// Recv implements collective.Transport.
func (t *Transport) Recv(ctx context.Context, from, ch int, dst []float32) (collective.Header, error) {
	if err := t.check(from, ch); err != nil {
		return collective.Header{}, err
	}
	lane := t.n.lanes[from][t.rank][ch]
	var m message
	select {
	case <-t.n.closed[t.rank]:
		return collective.Header{}, collective.ErrClosed
	default:
	}
	select {
	case m = <-lane:
	default:
		select {
		case m = <-lane:
		case <-ctx.Done():
			return collective.Header{}, ctx.Err()
		case <-t.n.closed[t.rank]:
			return collective.Header{}, collective.ErrClosed
		case <-t.n.closed[from]:
			// Deliver what the peer sent before it closed.
			select {
			case m = <-lane:
			default:
				return collective.Header{}, collective.ErrPeerClosed
			}
		}
	}
	if len(m.data) > len(dst) {
		return collective.Header{}, fmt.Errorf("inproc: rank %d from %d channel %d: %d elements into %d: %w",
			t.rank, from, ch, len(m.data), len(dst), collective.ErrTooLarge)
	}
	copy(dst, m.data)
	return m.h, nil
}

// Close implements collective.Transport.
func (t *Transport) Close() error {
	t.n.once[t.rank].Do(func() { close(t.n.closed[t.rank]) })
	return nil
}
