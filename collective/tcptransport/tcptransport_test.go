package tcptransport_test

import (
	"net"
	"runtime"
	"testing"

	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/collective/tcptransport"
	"github.com/loomtrain/loom/collective/transporttest"
)

func TestConformance(t *testing.T) {
	fds := transporttest.OpenFDs()
	before := runtime.NumGoroutine()
	transporttest.Run(t, func(t *testing.T, world, channels int) []collective.Transport {
		lis := make([]net.Listener, world)
		addrs := make([]string, world)
		for r := range lis {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			lis[r], addrs[r] = l, l.Addr().String()
		}
		out := make([]collective.Transport, world)
		for r := range out {
			tr, err := tcptransport.New(tcptransport.Options{Rank: r, Addrs: addrs, Listener: lis[r], Channels: channels})
			if err != nil {
				t.Fatal(err)
			}
			out[r] = tr
		}
		return out
	})
	transporttest.CheckNoFDLeaks(t, fds)
	transporttest.CheckNoLeaks(t, before)
}
