package consensus_test

import (
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/loomtrain/loom/coordinator/consensus"
	"github.com/loomtrain/loom/coordinator/consensus/localraft"
)

// A single voter: bootstrap on first start, wait for leadership, apply.
func Example() {
	dir, err := os.MkdirTemp("", "raft-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	fsm := localraft.NewKV()
	node, err := consensus.Open(consensus.Config{
		ID:        "coord-0",
		DataDir:   dir,
		BindAddr:  "127.0.0.1:0",
		Bootstrap: []consensus.Peer{{ID: "coord-0"}}, // Addr filled in with the node's own
		Logger:    slog.New(slog.DiscardHandler),
		Tuning:    localraft.FastTuning(),
	}, fsm)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	if !<-node.LeaderCh() {
		log.Fatal("lost leadership")
	}
	if err := node.Barrier(5 * time.Second); err != nil {
		log.Fatal(err)
	}
	if _, err := node.Apply(localraft.Set("job/1", "running"), 5*time.Second); err != nil {
		log.Fatal(err)
	}
	prev, err := node.Apply(localraft.Set("job/1", "done"), 5*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	v, _ := fsm.Get("job/1")
	fmt.Printf("previous %q, now %q\n", prev, v)
	// Output: previous "running", now "done"
}
