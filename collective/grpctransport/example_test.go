package grpctransport_test

import (
	"context"
	"fmt"
	"net"

	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/collective/grpctransport"
)

// Two ranks on loopback: rank 0 sends a buffer to rank 1. DataPath picks
// how frames reach the socket; "" (the default, DataPathReadv) batches
// DATA frames into writev and reads each frame with one readv.
func ExampleNew() {
	lis := make([]net.Listener, 2)
	addrs := make([]string, 2)
	for r := range lis {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Println(err)
			return
		}
		lis[r], addrs[r] = l, l.Addr().String()
	}
	trs := make([]*grpctransport.Transport, 2)
	for r := range trs {
		tr, err := grpctransport.New(grpctransport.Options{Rank: r, Addrs: addrs, Listener: lis[r], DataPath: grpctransport.DataPathReadv})
		if err != nil {
			fmt.Println(err)
			return
		}
		defer tr.Close()
		trs[r] = tr
	}
	ctx := context.Background()
	go trs[0].Send(ctx, 1, 0, collective.Header{Job: "example", Seq: 1}, []float32{1, 2, 3})
	dst := make([]float32, 3)
	h, err := trs[1].Recv(ctx, 0, 0, dst)
	fmt.Println(h.Job, h.Seq, dst, err)
	// Output: example 1 [1 2 3] <nil>
}
